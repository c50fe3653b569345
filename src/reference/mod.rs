//! f64 CPU references of the generic kernels (matrix product, activations, losses) and of the
//! meta-gradient ([`meta`]): the test oracle of the GPU. The reference of each task family and
//! each optimizer lives in its folder (`tasks/<family>/reference.rs`, `optim/<family>/`).
//!
//! Written for clarity, not speed: dense row-major matrices, one instance at a time, no
//! sharing of code paths with the GPU decomposition (the MLP reference differentiates through
//! logical weights and scatters into tied storage itself). Each function is checked against
//! central finite differences in its unit tests.

pub mod meta;

use crate::kernels::matmul::Activation;

/// C (m×n) = op(A)·op(B) in f64. `a` is stored m×k (or k×m when `ta`), `b` k×n (or n×k when `tb`).
pub fn matmul(m: usize, n: usize, k: usize, a: &[f64], ta: bool, b: &[f64], tb: bool) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for l in 0..k {
                let av = if ta { a[l * m + i] } else { a[i * k + l] };
                let bv = if tb { b[j * k + l] } else { b[l * n + j] };
                s += av * bv;
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// The activation function.
pub fn activate(x: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity => x,
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
    }
}

/// Derivative of the activation at pre-activation `x`.
pub fn activate_grad(x: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Sigmoid => {
            let s = activate(x, act);
            s * (1.0 - s)
        }
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Tanh => 1.0 - x.tanh().powi(2),
    }
}

/// Second derivative of the activation at pre-activation `x` (0 for relu, also at the kink).
pub fn activate_grad2(x: f64, act: Activation) -> f64 {
    match act {
        Activation::Identity | Activation::Relu => 0.0,
        Activation::Sigmoid => {
            let s = activate(x, act);
            s * (1.0 - s) * (1.0 - 2.0 * s)
        }
        Activation::Tanh => {
            let t = x.tanh();
            -2.0 * t * (1.0 - t * t)
        }
    }
}

/// Mean softmax cross-entropy of `rows` rows of `classes` logits, and its gradient.
pub fn softmax_xent(rows: usize, classes: usize, z: &[f64], labels: &[u32]) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut dz = vec![0.0; rows * classes];
    for b in 0..rows {
        let zr = &z[b * classes..(b + 1) * classes];
        let m = zr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + zr.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let y = labels[b] as usize;
        loss += lse - zr[y];
        for k in 0..classes {
            let onehot = if k == y { 1.0 } else { 0.0 };
            dz[b * classes + k] = ((zr[k] - lse).exp() - onehot) / rows as f64;
        }
    }
    (loss / rows as f64, dz)
}

/// Squared error summed over the `outputs` values of each row, mean over the `rows` rows:
/// (1/B) Σ_b Σ_k (z_bk − y_bk)², and its gradient 2 (z − y) / B.
pub fn mse(rows: usize, outputs: usize, z: &[f64], y: &[f64]) -> (f64, Vec<f64>) {
    let inv_b = 1.0 / rows as f64;
    let n = rows * outputs;
    let loss = z[..n]
        .iter()
        .zip(&y[..n])
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        * inv_b;
    let dz = z[..n]
        .iter()
        .zip(&y[..n])
        .map(|(a, b)| 2.0 * (a - b) * inv_b)
        .collect();
    (loss, dz)
}

/// Central finite differences of `f` at `x` with step `h`.
pub fn central_diff(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + h;
            let fp = f(&xp);
            xp[i] = x[i] - h;
            let fm = f(&xp);
            xp[i] = x[i];
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

/// Central difference of the vector function `f` at `x` along `v`: (f(x + hv) − f(x − hv)) / 2h
/// (a Hessian-vector product when `f` is a gradient).
pub fn directional_diff(f: impl Fn(&[f64]) -> Vec<f64>, x: &[f64], v: &[f64], h: f64) -> Vec<f64> {
    let at = |s: f64| {
        let t: Vec<f64> = x.iter().zip(v).map(|(a, b)| a + s * b).collect();
        f(&t)
    };
    at(h)
        .iter()
        .zip(at(-h))
        .map(|(a, b)| (a - b) / (2.0 * h))
        .collect()
}

/// max |a − b| / max |b|, infinite if any value of `a` is not finite or the lengths differ.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn softmax_xent_gradient_matches_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (rows, classes) = (5, 7);
        let z: Vec<f64> = (0..rows * classes)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect();
        let labels: Vec<u32> = (0..rows)
            .map(|_| rng.random_range(0..classes as u32))
            .collect();
        let (_, dz) = softmax_xent(rows, classes, &z, &labels);
        let fd = central_diff(|z| softmax_xent(rows, classes, z, &labels).0, &z, 1e-5);
        assert!(rel_err(&dz, &fd) < 1e-7, "{}", rel_err(&dz, &fd));
    }

    #[test]
    fn mse_gradient_matches_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let (rows, outputs) = (4, 3);
        let z: Vec<f64> = (0..rows * outputs)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect();
        let y: Vec<f64> = (0..rows * outputs)
            .map(|_| rng.random_range(-3.0..3.0))
            .collect();
        let (l, dz) = mse(rows, outputs, &z, &y);
        let direct: f64 = (0..rows)
            .map(|b| {
                (0..outputs)
                    .map(|k| (z[b * outputs + k] - y[b * outputs + k]).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / rows as f64;
        assert!((l - direct).abs() < 1e-12, "{l} vs {direct}");
        let fd = central_diff(|z| mse(rows, outputs, z, &y).0, &z, 1e-5);
        assert!(rel_err(&dz, &fd) < 1e-7, "{}", rel_err(&dz, &fd));
    }

    /// `df` is the derivative of `f` (central differences) for every activation.
    fn check_derivative(f: fn(f64, Activation) -> f64, df: fn(f64, Activation) -> f64, tol: f64) {
        for act in Activation::ALL {
            for x in [-2.3, -0.4, 0.7, 3.1] {
                let fd = (f(x + 1e-6, act) - f(x - 1e-6, act)) / 2e-6;
                assert!((df(x, act) - fd).abs() < tol, "{act:?} at {x}");
            }
        }
    }

    #[test]
    fn activation_derivatives_match_finite_differences() {
        check_derivative(activate, activate_grad, 1e-8);
    }

    #[test]
    fn activation_second_derivatives_match_finite_differences() {
        check_derivative(activate_grad, activate_grad2, 1e-7);
    }

    #[test]
    fn matmul_forms_agree_with_transposed_storage() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
        let b = [1.0, 0.0, -1.0, 2.0, 0.5, 1.0]; // 3×2
        let c = matmul(2, 2, 3, &a, false, &b, false);
        assert_eq!(
            c,
            vec![1.0 - 2.0 + 1.5, 4.0 + 3.0, 4.0 - 5.0 + 3.0, 10.0 + 6.0]
        );
        let at = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]; // aᵀ stored 3×2
        let bt = [1.0, -1.0, 0.5, 0.0, 2.0, 1.0]; // bᵀ stored 2×3
        assert_eq!(matmul(2, 2, 3, &at, true, &bt, true), c);
    }
}
