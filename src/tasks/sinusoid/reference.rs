//! f64 reference of the sinusoid task: the family's functions y = A·sin(x − φ), and the
//! squared-error loss (1/K) Σ_b (f(x_b) − y_b)² of the MLP on K points with its gradient and
//! Hessian-vector product. The model's own equations and their reference are the MLP's
//! ([`crate::tasks::mlp::reference`]); this file only says what the sinusoid task asks of it.

use crate::params::ParamLayout;
use crate::tasks::mlp::reference::{self as mlp, Targets};
use crate::tasks::mlp::MlpSpec;
use crate::Result;

/// y = A·sin(x − φ).
pub fn wave(amplitude: f32, phase: f32, x: f32) -> f64 {
    f64::from(amplitude) * (f64::from(x) - f64::from(phase)).sin()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// Loss and gradient of the model `spec` at `theta` on the points (`x`, `y`).
pub fn loss_grad(
    (spec, layout): (&MlpSpec, &ParamLayout),
    theta: &[f64],
    (x, y): (&[f32], &[f32]),
) -> Result<(f64, Vec<f64>)> {
    let (x, y) = (widen(x), widen(y));
    mlp::loss_grad_targets(spec, layout, theta, &x, Targets::Values(&y), x.len())
}

/// Hessian-vector product of the same loss along `v`.
pub fn hvp(
    (spec, layout): (&MlpSpec, &ParamLayout),
    theta: &[f64],
    v: &[f64],
    (x, y): (&[f32], &[f32]),
) -> Result<Vec<f64>> {
    let (x, y) = (widen(x), widen(y));
    mlp::hvp_targets(spec, layout, theta, v, &x, Targets::Values(&y), x.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::Activation;
    use crate::reference::{central_diff, directional_diff, rel_err};

    #[test]
    fn waves_are_shifted_scaled_sines() {
        assert_eq!(wave(2.0, 0.0, 0.0), 0.0);
        let quarter = std::f32::consts::FRAC_PI_2;
        assert!((wave(3.0, 0.0, quarter) - 3.0).abs() < 1e-6);
        assert!((wave(1.5, quarter, quarter)).abs() < 1e-12);
    }

    #[test]
    fn the_regression_loss_matches_finite_differences() {
        let spec = MlpSpec::new(&[1, 5, 1], Activation::Tanh)
            .unwrap()
            .with_loss(crate::tasks::mlp::Loss::Mse);
        let layout = spec.layout().unwrap();
        let theta: Vec<f64> = (0..layout.size())
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 9.0)
            .collect();
        let x = [-2.0f32, -0.5, 1.0, 3.5];
        let y: Vec<f32> = x.iter().map(|&x| wave(1.7, 0.4, x) as f32).collect();
        let (_, g) = loss_grad((&spec, &layout), &theta, (&x, &y)).unwrap();
        let fd = central_diff(
            |t| loss_grad((&spec, &layout), t, (&x, &y)).unwrap().0,
            &theta,
            1e-6,
        );
        assert!(rel_err(&g, &fd) < 1e-6, "{}", rel_err(&g, &fd));
        let v: Vec<f64> = (0..theta.len())
            .map(|i| ((i % 3) as f64 - 1.0) / 2.0)
            .collect();
        let hv = hvp((&spec, &layout), &theta, &v, (&x, &y)).unwrap();
        let grad = |t: &[f64]| loss_grad((&spec, &layout), t, (&x, &y)).unwrap().1;
        let fd_hv = directional_diff(grad, &theta, &v, 1e-5);
        assert!(rel_err(&hv, &fd_hv) < 1e-6, "{}", rel_err(&hv, &fd_hv));
    }
}
