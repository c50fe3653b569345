//! f64 reference of the MLP and its losses (see [`crate::models::mlp`] for the equations).

use super::{activate, activate_grad, matmul, mse, softmax_xent};
use crate::models::mlp::{Loss, MlpSpec};
use crate::params::ParamLayout;
use crate::{Error, Result};

/// The targets of one instance's rows, matching the spec's [`Loss`].
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class label per row (cross-entropy).
    Labels(&'a [u32]),
    /// `batch × w_L` target values (squared error).
    Values(&'a [f64]),
}

/// Pre-activations Z_l of every layer (the last is the logits) for one instance.
/// `theta` is the instance's block, `x` its `batch × w_0` inputs.
pub fn forward(
    spec: &MlpSpec,
    layout: &ParamLayout,
    theta: &[f64],
    x: &[f64],
    batch: usize,
) -> Result<Vec<Vec<f64>>> {
    let w = &spec.widths;
    let mut h = x.to_vec();
    let mut zs = Vec::new();
    for l in 0..spec.layers() {
        let wl = layout.read(theta, &MlpSpec::weight(l))?;
        let bl = layout.read(theta, &MlpSpec::bias(l))?;
        let mut z = matmul(batch, w[l + 1], w[l], &h, false, &wl, false);
        for (i, v) in z.iter_mut().enumerate() {
            *v += bl[i % w[l + 1]];
        }
        let act = spec.activation_of(l);
        h = z.iter().map(|&v| activate(v, act)).collect();
        zs.push(z);
    }
    Ok(zs)
}

/// Loss (mean cross-entropy, for a spec with [`Loss::CrossEntropy`]) and gradient with respect
/// to the instance's storage block. See [`loss_grad_targets`].
pub fn loss_grad(
    spec: &MlpSpec,
    layout: &ParamLayout,
    theta: &[f64],
    x: &[f64],
    labels: &[u32],
    batch: usize,
) -> Result<(f64, Vec<f64>)> {
    loss_grad_targets(spec, layout, theta, x, Targets::Labels(labels), batch)
}

/// Loss (the spec's [`Loss`]) and gradient with respect to the instance's storage block.
/// Tied names add their gradient (in the storage's orientation) into the shared storage.
pub fn loss_grad_targets(
    spec: &MlpSpec,
    layout: &ParamLayout,
    theta: &[f64],
    x: &[f64],
    targets: Targets,
    batch: usize,
) -> Result<(f64, Vec<f64>)> {
    let w = &spec.widths;
    let c = spec.outputs();
    let last = spec.layers() - 1;
    let zs = forward(spec, layout, theta, x, batch)?;
    let (loss, mut dz) = match (spec.loss, targets) {
        (Loss::CrossEntropy, Targets::Labels(y)) if y.len() >= batch => {
            softmax_xent(batch, c, &zs[last], y)
        }
        (Loss::Mse, Targets::Values(y)) if y.len() >= batch * c => mse(batch, c, &zs[last], y),
        (loss, _) => {
            return Err(Error::invalid(format!(
                "reference MLP: the {} loss needs {} per row for {batch} rows",
                loss.name(),
                match loss {
                    Loss::CrossEntropy => "one u32 label".to_string(),
                    Loss::Mse => format!("{c} f64 targets"),
                }
            )))
        }
    };
    let mut grad = vec![0.0; layout.size()];
    for l in (0..spec.layers()).rev() {
        let h: Vec<f64> = if l == 0 {
            x.to_vec()
        } else {
            let act = spec.activation_of(l - 1);
            zs[l - 1].iter().map(|&v| activate(v, act)).collect()
        };
        // Logical dW = Hᵀ dZ ([w_l, w_{l+1}]); scatter into storage.
        let dw = matmul(w[l], w[l + 1], batch, &h, true, &dz, false);
        let e = layout.require(&MlpSpec::weight(l))?;
        for i in 0..w[l] {
            for j in 0..w[l + 1] {
                let s = if e.transposed {
                    j * w[l] + i
                } else {
                    i * w[l + 1] + j
                };
                grad[e.offset + s] += dw[i * w[l + 1] + j];
            }
        }
        let be = layout.require(&MlpSpec::bias(l))?;
        for r in 0..batch {
            for j in 0..w[l + 1] {
                grad[be.offset + j] += dz[r * w[l + 1] + j];
            }
        }
        if l > 0 {
            let wl = layout.read(theta, &MlpSpec::weight(l))?;
            let dh = matmul(batch, w[l], w[l + 1], &dz, false, &wl, true);
            let act = spec.activation_of(l - 1);
            dz = dh
                .iter()
                .zip(&zs[l - 1])
                .map(|(g, &z)| g * activate_grad(z, act))
                .collect();
        }
    }
    Ok((loss, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::Activation;
    use crate::reference::{central_diff, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Random inputs and targets of `batch` rows for the spec's loss.
    fn data(spec: &MlpSpec, batch: usize, rng: &mut StdRng) -> (Vec<f64>, Vec<u32>, Vec<f64>) {
        let x: Vec<f64> = (0..batch * spec.inputs())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let labels: Vec<u32> = (0..batch)
            .map(|_| rng.random_range(0..spec.classes() as u32))
            .collect();
        let values: Vec<f64> = (0..batch * spec.outputs())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        (x, labels, values)
    }

    fn targets<'a>(spec: &MlpSpec, labels: &'a [u32], values: &'a [f64]) -> Targets<'a> {
        match spec.loss {
            Loss::CrossEntropy => Targets::Labels(labels),
            Loss::Mse => Targets::Values(values),
        }
    }

    fn check(spec: &MlpSpec, batch: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let layout = spec.layout().expect("layout");
        let theta: Vec<f64> = (0..layout.size())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (x, labels, values) = data(spec, batch, &mut rng);
        let y = targets(spec, &labels, &values);
        let (_, g) = loss_grad_targets(spec, &layout, &theta, &x, y, batch).expect("grad");
        let f = |t: &[f64]| {
            loss_grad_targets(spec, &layout, t, &x, y, batch)
                .expect("loss")
                .0
        };
        let fd = central_diff(f, &theta, 1e-5);
        let e = rel_err(&g, &fd);
        assert!(e < 1e-6, "{spec:?}: relative error {e}");
    }

    #[test]
    fn gradient_matches_finite_differences_for_every_activation() {
        for (i, act) in [
            Activation::Sigmoid,
            Activation::Relu,
            Activation::Tanh,
            Activation::Identity,
        ]
        .into_iter()
        .enumerate()
        {
            for loss in [Loss::CrossEntropy, Loss::Mse] {
                let spec = MlpSpec::new(&[5, 4, 3, 3], act)
                    .expect("spec")
                    .with_loss(loss);
                check(&spec, 6, i as u64);
            }
        }
    }

    #[test]
    fn tied_gradient_matches_finite_differences() {
        // 6 → 4 → 6 autoencoder-shaped model whose second weight is the first transposed.
        for loss in [Loss::CrossEntropy, Loss::Mse] {
            let spec = MlpSpec::new(&[6, 4, 6], Activation::Tanh)
                .and_then(|s| s.with_tied(1, 0))
                .expect("spec")
                .with_loss(loss);
            check(&spec, 5, 11);
        }
    }

    /// The tied storage's gradient is the sum of the gradients of its two uses in the same model
    /// with the tie undone (decoder weight a copy of the encoder weight, transposed).
    #[test]
    fn tied_gradient_is_the_sum_of_both_uses() {
        let mut rng = StdRng::seed_from_u64(12);
        let (d, h, batch) = (6, 4, 5);
        let untied = MlpSpec::new(&[d, h, d], Activation::Sigmoid)
            .expect("spec")
            .with_loss(Loss::Mse);
        let tied = untied.clone().with_tied(1, 0).expect("tie");
        let (lu, lt) = (
            untied.layout().expect("layout"),
            tied.layout().expect("layout"),
        );
        let theta: Vec<f64> = (0..lt.size())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let w0 = lt.read(&theta, "l0.w").expect("l0.w");
        let mut theta_u = vec![0.0; lu.size()];
        for name in ["l0.w", "l0.b", "l1.b"] {
            let v = lt.read(&theta, name).expect("read");
            let e = lu.require(name).expect("entry");
            theta_u[e.offset..e.offset + e.len()].copy_from_slice(&v);
        }
        let e1 = lu.require("l1.w").expect("l1.w");
        for i in 0..h {
            for j in 0..d {
                theta_u[e1.offset + i * d + j] = w0[j * h + i];
            }
        }
        let (x, _, _) = data(&tied, batch, &mut rng);
        let y = Targets::Values(&x); // reconstruct the input
        let (l_t, g_t) = loss_grad_targets(&tied, &lt, &theta, &x, y, batch).expect("tied");
        let (l_u, g_u) = loss_grad_targets(&untied, &lu, &theta_u, &x, y, batch).expect("untied");
        assert!((l_t - l_u).abs() <= 1e-12 * l_u.abs(), "{l_t} vs {l_u}");
        let e0t = lt.require("l0.w").expect("l0.w");
        let e0u = lu.require("l0.w").expect("l0.w");
        let want: Vec<f64> = (0..d * h)
            .map(|k| {
                let (j, i) = (k / h, k % h);
                g_u[e0u.offset + k] + g_u[e1.offset + i * d + j]
            })
            .collect();
        let got = &g_t[e0t.offset..e0t.offset + d * h];
        assert!(rel_err(got, &want) < 1e-12, "{}", rel_err(got, &want));
        for name in ["l0.b", "l1.b"] {
            let (a, b) = (lt.require(name).expect("t"), lu.require(name).expect("u"));
            let e = rel_err(
                &g_t[a.offset..a.offset + a.len()],
                &g_u[b.offset..b.offset + b.len()],
            );
            assert!(e < 1e-12, "{name}: {e}");
        }
    }

    #[test]
    fn mismatched_targets_are_refused() {
        let spec = MlpSpec::new(&[3, 2], Activation::Identity)
            .expect("spec")
            .with_loss(Loss::Mse);
        let layout = spec.layout().expect("layout");
        let theta = vec![0.1; layout.size()];
        let r = loss_grad_targets(
            &spec,
            &layout,
            &theta,
            &[0.0; 6],
            Targets::Labels(&[0, 1]),
            2,
        );
        assert!(r.is_err());
    }
}
