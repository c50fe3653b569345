//! f64 reference of the learned schedule: u = −lr_t·g, lr_t = e^{φ0}(H − t)/H + e^{φ1}·t/H.

/// The rate lr_t and its derivatives (∂lr/∂φ0, ∂lr/∂φ1).
fn rate(phi: &[f64], h: f64, t: usize) -> (f64, [f64; 2]) {
    let (a, b) = ((h - t as f64) / h, t as f64 / h);
    let d = [phi[0].exp() * a, phi[1].exp() * b];
    (d[0] + d[1], d)
}

/// The update u = −lr_t·g.
pub fn schedule_step(phi: &[f64], h: f64, t: usize, g: f64) -> f64 {
    -rate(phi, h, t).0 * g
}

/// Cotangents returned by [`schedule_step_vjp`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleVjp {
    /// Of g.
    pub g_bar: f64,
    /// Of φ = (φ0, φ1).
    pub phi_bar: [f64; 2],
}

/// Exact VJP of [`schedule_step`] with respect to (g, φ), given the cotangent `u_bar` of u.
pub fn schedule_step_vjp(phi: &[f64], h: f64, t: usize, g: f64, u_bar: f64) -> ScheduleVjp {
    let (lr, d) = rate(phi, h, t);
    ScheduleVjp {
        g_bar: -lr * u_bar,
        phi_bar: [-u_bar * g * d[0], -u_bar * g * d[1]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn schedule_vjp_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(rand::random());
        for _ in 0..8 {
            let h = rng.random_range(5.0..200.0);
            let t = rng.random_range(0..h as usize);
            let phi = [rng.random_range(-5.0..1.0), rng.random_range(-5.0..1.0)];
            let (g, u_bar) = (rng.random_range(-2.0..2.0), rng.random_range(-1.0..1.0));
            let v = schedule_step_vjp(&phi, h, t, g, u_bar);
            // Inputs laid out as [g, φ0, φ1].
            let fd = central_diff(
                |x| u_bar * schedule_step(&x[1..], h, t, x[0]),
                &[g, phi[0], phi[1]],
                1e-6,
            );
            let e = rel_err(&[v.g_bar, v.phi_bar[0], v.phi_bar[1]], &fd);
            assert!(e < 1e-6, "h {h} t {t} φ {phi:?}: {e}");
        }
    }
}
