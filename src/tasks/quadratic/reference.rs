//! f64 reference of the L2L quadratic f(θ) = ‖Wθ − y‖².

/// Loss and gradient of one instance: `w` is d×d row-major, `y` and `theta` have d entries.
pub fn loss_grad(d: usize, w: &[f64], y: &[f64], theta: &[f64]) -> (f64, Vec<f64>) {
    let r: Vec<f64> = (0..d)
        .map(|i| (0..d).map(|j| w[i * d + j] * theta[j]).sum::<f64>() - y[i])
        .collect();
    let loss = r.iter().map(|v| v * v).sum();
    let grad = (0..d)
        .map(|j| 2.0 * (0..d).map(|i| w[i * d + j] * r[i]).sum::<f64>())
        .collect();
    (loss, grad)
}

/// Hessian-vector product of one instance: H·v = 2 Wᵀ (W v) (the Hessian is constant).
pub fn hvp(d: usize, w: &[f64], v: &[f64]) -> Vec<f64> {
    let wv: Vec<f64> = (0..d)
        .map(|i| (0..d).map(|j| w[i * d + j] * v[j]).sum::<f64>())
        .collect();
    (0..d)
        .map(|j| 2.0 * (0..d).map(|i| w[i * d + j] * wv[i]).sum::<f64>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, directional_diff, rel_err};
    use rand::{Rng, SeedableRng};

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for d in [1, 3, 10] {
            let w: Vec<f64> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let y: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let th: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (_, g) = loss_grad(d, &w, &y, &th);
            let fd = central_diff(|t| loss_grad(d, &w, &y, t).0, &th, 1e-5);
            assert!(rel_err(&g, &fd) < 1e-8, "d={d}: {}", rel_err(&g, &fd));
        }
    }

    #[test]
    fn hvp_matches_finite_differences_of_the_gradient() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for d in [1, 4] {
            let w: Vec<f64> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let y: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let th: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let v: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let fd = directional_diff(|t| loss_grad(d, &w, &y, t).1, &th, &v, 1e-5);
            let hv = hvp(d, &w, &v);
            assert!(rel_err(&hv, &fd) < 1e-8, "d={d}: {}", rel_err(&hv, &fd));
        }
    }
}
