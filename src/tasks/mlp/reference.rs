//! f64 reference of the MLP and its losses (see [`super::spec`] for the equations).

use super::spec::{Loss, MlpSpec};
use crate::params::ParamLayout;
use crate::reference::{activate, activate_grad, activate_grad2, matmul, mse, softmax_xent};
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
        scatter_weight(spec, layout, l, &dw, &mut grad)?;
        scatter_bias(spec, layout, l, batch, &dz, &mut grad)?;
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

/// Add the bias gradient of layer `l`, the column sums of `dz` ([batch, w_{l+1}]), into `out`.
fn scatter_bias(
    spec: &MlpSpec,
    layout: &ParamLayout,
    l: usize,
    batch: usize,
    dz: &[f64],
    out: &mut [f64],
) -> Result<()> {
    let width = spec.widths[l + 1];
    let be = layout.require(&MlpSpec::bias(l))?;
    for r in 0..batch {
        for j in 0..width {
            out[be.offset + j] += dz[r * width + j];
        }
    }
    Ok(())
}

/// Scatter the logical weight-shaped `dw` ([w_l, w_{l+1}]) of layer `l` into its storage in
/// `out` (added, in the storage's orientation).
fn scatter_weight(
    spec: &MlpSpec,
    layout: &ParamLayout,
    l: usize,
    dw: &[f64],
    out: &mut [f64],
) -> Result<()> {
    let w = &spec.widths;
    let e = layout.require(&MlpSpec::weight(l))?;
    for i in 0..w[l] {
        for j in 0..w[l + 1] {
            let s = if e.transposed {
                j * w[l] + i
            } else {
                i * w[l + 1] + j
            };
            out[e.offset + s] += dw[i * w[l + 1] + j];
        }
    }
    Ok(())
}

/// Exact Hessian-vector product H·v of the loss (the spec's [`Loss`]) with respect to the
/// instance's storage block, by the R-operator (Pearlmutter 1994): R(·) is the directional
/// derivative along v, pushed forward through the forward pass and the loss gradient and then
/// back through the backward pass:
///
/// - R-forward: R(Z_l) = R(H_l)·W_l + H_l·V_l + v_b,l, R(H_{l+1}) = act'(Z_l) ⊙ R(Z_l), R(H_0) = 0
/// - loss: R(dZ) = 2·R(Z)/B (squared error), R(dZ) = s ⊙ (R(z) − ⟨s, R(z)⟩)/B per row, s =
///   softmax(z) (cross-entropy)
/// - R-backward: R(dW_l) = R(H_l)ᵀ·dZ_l + H_lᵀ·R(dZ_l), R(db_l) = Σ_rows R(dZ_l),
///   R(dH_l) = R(dZ_l)·W_lᵀ + dZ_l·V_lᵀ,
///   R(dZ_{l−1}) = R(dH_l) ⊙ act'(Z_{l−1}) + dH_l ⊙ act''(Z_{l−1}) ⊙ R(Z_{l−1})
///
/// Tied names read v through the same tie as θ and add into the shared storage.
pub fn hvp_targets(
    spec: &MlpSpec,
    layout: &ParamLayout,
    theta: &[f64],
    v: &[f64],
    x: &[f64],
    targets: Targets,
    batch: usize,
) -> Result<Vec<f64>> {
    let w = &spec.widths;
    let c = spec.outputs();
    let layers = spec.layers();
    let last = layers - 1;
    let zs = forward(spec, layout, theta, x, batch)?;
    // H_l for l = 0 … L−1 (H_0 = x) and R(Z_l), R(H_l).
    let mut hs = vec![x.to_vec()];
    let mut rhs = vec![vec![0.0; x.len()]];
    let mut rzs = Vec::with_capacity(layers);
    for l in 0..layers {
        let wl = layout.read(theta, &MlpSpec::weight(l))?;
        let vl = layout.read(v, &MlpSpec::weight(l))?;
        let vb = layout.read(v, &MlpSpec::bias(l))?;
        let a = matmul(batch, w[l + 1], w[l], &rhs[l], false, &wl, false);
        let b = matmul(batch, w[l + 1], w[l], &hs[l], false, &vl, false);
        let rz: Vec<f64> = (0..a.len())
            .map(|i| a[i] + b[i] + vb[i % w[l + 1]])
            .collect();
        let act = spec.activation_of(l);
        hs.push(zs[l].iter().map(|&z| activate(z, act)).collect());
        rhs.push(
            zs[l]
                .iter()
                .zip(&rz)
                .map(|(&z, r)| activate_grad(z, act) * r)
                .collect(),
        );
        rzs.push(rz);
    }
    let inv_b = 1.0 / batch as f64;
    let (mut dz, mut rdz) = match (spec.loss, targets) {
        (Loss::CrossEntropy, Targets::Labels(y)) if y.len() >= batch => {
            let (_, dz) = softmax_xent(batch, c, &zs[last], y);
            let mut rdz = vec![0.0; batch * c];
            for r in 0..batch {
                let zr = &zs[last][r * c..(r + 1) * c];
                let m = zr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = zr.iter().map(|z| (z - m).exp()).collect();
                let se: f64 = e.iter().sum();
                let rz = &rzs[last][r * c..(r + 1) * c];
                let dot: f64 = e.iter().zip(rz).map(|(a, b)| a / se * b).sum();
                for k in 0..c {
                    rdz[r * c + k] = e[k] / se * (rz[k] - dot) * inv_b;
                }
            }
            (dz, rdz)
        }
        (Loss::Mse, Targets::Values(y)) if y.len() >= batch * c => {
            let (_, dz) = mse(batch, c, &zs[last], y);
            let rdz = rzs[last].iter().map(|r| 2.0 * r * inv_b).collect();
            (dz, rdz)
        }
        (loss, _) => {
            return Err(Error::invalid(format!(
                "reference MLP Hessian-vector product: targets do not match the {} loss",
                loss.name()
            )))
        }
    };
    let mut out = vec![0.0; layout.size()];
    for l in (0..layers).rev() {
        let mut dw = matmul(w[l], w[l + 1], batch, &rhs[l], true, &dz, false);
        let dw2 = matmul(w[l], w[l + 1], batch, &hs[l], true, &rdz, false);
        for (a, b) in dw.iter_mut().zip(&dw2) {
            *a += b;
        }
        scatter_weight(spec, layout, l, &dw, &mut out)?;
        scatter_bias(spec, layout, l, batch, &rdz, &mut out)?;
        if l > 0 {
            let wl = layout.read(theta, &MlpSpec::weight(l))?;
            let vl = layout.read(v, &MlpSpec::weight(l))?;
            let dh = matmul(batch, w[l], w[l + 1], &dz, false, &wl, true);
            let mut rdh = matmul(batch, w[l], w[l + 1], &rdz, false, &wl, true);
            let rdh2 = matmul(batch, w[l], w[l + 1], &dz, false, &vl, true);
            for (a, b) in rdh.iter_mut().zip(&rdh2) {
                *a += b;
            }
            let act = spec.activation_of(l - 1);
            let (z, rz) = (&zs[l - 1], &rzs[l - 1]);
            rdz = (0..dh.len())
                .map(|i| {
                    rdh[i] * activate_grad(z[i], act) + dh[i] * activate_grad2(z[i], act) * rz[i]
                })
                .collect();
            dz = (0..dh.len())
                .map(|i| dh[i] * activate_grad(z[i], act))
                .collect();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::Activation;
    use crate::reference::{central_diff, directional_diff, rel_err};
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

    /// `f(spec, i)` for a 5-4-3-3 MLP of every activation (the i-th) and loss.
    fn each_activation_and_loss(mut f: impl FnMut(MlpSpec, u64)) {
        for (i, act) in Activation::ALL.into_iter().enumerate() {
            for loss in [Loss::CrossEntropy, Loss::Mse] {
                let spec = MlpSpec::new(&[5, 4, 3, 3], act).expect("spec");
                f(spec.with_loss(loss), i as u64);
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences_for_every_activation() {
        each_activation_and_loss(|spec, i| check(&spec, 6, i));
    }

    fn check_hvp(spec: &MlpSpec, batch: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let layout = spec.layout().expect("layout");
        let theta: Vec<f64> = (0..layout.size())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let v: Vec<f64> = (0..layout.size())
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (x, labels, values) = data(spec, batch, &mut rng);
        let y = targets(spec, &labels, &values);
        let hv = hvp_targets(spec, &layout, &theta, &v, &x, y, batch).expect("hvp");
        let grad = |t: &[f64]| {
            loss_grad_targets(spec, &layout, t, &x, y, batch)
                .expect("grad")
                .1
        };
        let fd = directional_diff(grad, &theta, &v, 1e-5);
        let e = rel_err(&hv, &fd);
        assert!(
            e < 1e-6,
            "{spec:?}: Hessian-vector product relative error {e}"
        );
    }

    #[test]
    fn hvp_matches_finite_differences_of_the_gradient() {
        each_activation_and_loss(|spec, i| {
            check_hvp(&spec, 6, 20 + i);
            let tied = MlpSpec::new(&[6, 4, 6], spec.activation_of(0))
                .and_then(|s| s.with_tied(1, 0))
                .expect("spec")
                .with_loss(spec.loss);
            check_hvp(&tied, 5, 30 + i);
        });
        // One layer: the Hessian of a linear model's loss.
        let spec = MlpSpec::new(&[4, 3], Activation::Tanh).expect("spec");
        check_hvp(&spec, 3, 40);
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
