//! f64 reference of the linear learned optimizer: φ = [w0, w1, b]; u = w0·g + w1·θ + b.

/// Linear optimizer update u = w0·g + w1·θ + b, with `phi = [w0, w1, b]`.
///
/// # Panics
/// If `phi.len() != 3`.
pub fn linear_step(phi: &[f64], g: f64, theta: f64) -> f64 {
    assert_eq!(phi.len(), 3, "linear φ length");
    phi[0] * g + phi[1] * theta + phi[2]
}

/// Cotangents returned by [`linear_step_vjp`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearVjp {
    /// Cotangent of g.
    pub g_bar: f64,
    /// Cotangent of θ through the θ input of u only (not the identity path of θ' = θ + u).
    pub theta_bar: f64,
    /// Cotangent of φ = [w0, w1, b].
    pub phi_bar: [f64; 3],
}

/// Exact VJP of [`linear_step`] with respect to (g, θ, φ), given the cotangent `u_bar` of u.
///
/// # Panics
/// If `phi.len() != 3`.
pub fn linear_step_vjp(phi: &[f64], g: f64, theta: f64, u_bar: f64) -> LinearVjp {
    assert_eq!(phi.len(), 3, "linear φ length");
    LinearVjp {
        g_bar: u_bar * phi[0],
        theta_bar: u_bar * phi[1],
        phi_bar: [u_bar * g, u_bar * theta, u_bar],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const H: f64 = 1e-6;
    const TOL: f64 = 1e-6;

    fn uniform(rng: &mut StdRng, n: usize, k: f64) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-k..k)).collect()
    }

    #[test]
    fn linear_step_and_vjp() {
        for seed in 0..4 {
            let mut rng = StdRng::seed_from_u64(600 + seed);
            let phi = uniform(&mut rng, 3, 1.0);
            let (g, theta, u_bar) = (
                rng.random_range(-2.0..2.0),
                rng.random_range(-2.0..2.0),
                rng.random_range(-1.0..1.0),
            );
            assert_eq!(
                linear_step(&phi, g, theta),
                phi[0] * g + phi[1] * theta + phi[2]
            );
            let vjp = linear_step_vjp(&phi, g, theta, u_bar);
            // Inputs laid out as [g, θ, w0, w1, b].
            let x = [g, theta, phi[0], phi[1], phi[2]];
            let fd = central_diff(|x| u_bar * linear_step(&x[2..], x[0], x[1]), &x, H);
            let got = [
                vjp.g_bar,
                vjp.theta_bar,
                vjp.phi_bar[0],
                vjp.phi_bar[1],
                vjp.phi_bar[2],
            ];
            let e = rel_err(&got, &fd);
            assert!(e < TOL, "seed {seed}: {e}");
        }
    }
}
