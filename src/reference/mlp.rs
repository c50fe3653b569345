//! f64 reference of the MLP classifier (see [`crate::models::mlp`] for the equations).

use super::{activate, activate_grad, matmul, softmax_xent};
use crate::models::mlp::MlpSpec;
use crate::params::ParamLayout;
use crate::Result;

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

/// Loss (mean cross-entropy) and gradient with respect to the instance's storage block.
/// Tied names add their gradient (in the storage's orientation) into the shared storage.
pub fn loss_grad(
    spec: &MlpSpec,
    layout: &ParamLayout,
    theta: &[f64],
    x: &[f64],
    labels: &[u32],
    batch: usize,
) -> Result<(f64, Vec<f64>)> {
    let w = &spec.widths;
    let zs = forward(spec, layout, theta, x, batch)?;
    let last = spec.layers() - 1;
    let (loss, mut dz) = softmax_xent(batch, spec.classes(), &zs[last], labels);
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
    use rand::{Rng, SeedableRng};

    fn check(spec: &MlpSpec, batch: usize, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let layout = spec.layout().expect("layout");
        let theta: Vec<f64> = (0..layout.size())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let x: Vec<f64> = (0..batch * spec.inputs())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let labels: Vec<u32> = (0..batch)
            .map(|_| rng.random_range(0..spec.classes() as u32))
            .collect();
        let (_, g) = loss_grad(spec, &layout, &theta, &x, &labels, batch).expect("grad");
        let f = |t: &[f64]| {
            loss_grad(spec, &layout, t, &x, &labels, batch)
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
            let spec = MlpSpec::new(&[5, 4, 3, 3], act).expect("spec");
            check(&spec, 6, i as u64);
        }
    }

    #[test]
    fn tied_gradient_matches_finite_differences() {
        // 6 → 4 → 6 autoencoder-shaped classifier whose second weight is the first transposed.
        let spec = MlpSpec::new(&[6, 4, 6], Activation::Tanh)
            .and_then(|s| s.with_tied(1, 0))
            .expect("spec");
        check(&spec, 5, 11);
    }
}
