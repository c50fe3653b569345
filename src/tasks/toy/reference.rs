//! f64 reference of the PES toy (`toy.wgsl`): f(x), ∇f(x) and ∇²f(x)·v.

/// f(x) = √(x0² + 5) − √5 + sin²(x1)·e^{−5x0²} + ¼|x1 − 100|.
pub fn loss(x: &[f64]) -> f64 {
    (x[0] * x[0] + 5.0).sqrt() - 5f64.sqrt()
        + x[1].sin().powi(2) * (-5.0 * x[0] * x[0]).exp()
        + 0.25 * (x[1] - 100.0).abs()
}

/// (f(x), ∇f(x)); the kink of |x1 − 100| gets slope 0.
pub fn loss_grad(x: &[f64]) -> (f64, Vec<f64>) {
    let e = (-5.0 * x[0] * x[0]).exp();
    let s = x[1].sin();
    let d = x[1] - 100.0;
    let sign = if d == 0.0 { 0.0 } else { d.signum() };
    let g = vec![
        x[0] / (x[0] * x[0] + 5.0).sqrt() - 10.0 * x[0] * s * s * e,
        (2.0 * x[1]).sin() * e + 0.25 * sign,
    ];
    (loss(x), g)
}

/// ∇²f(x)·v.
pub fn hvp(x: &[f64], v: &[f64]) -> Vec<f64> {
    let q = x[0] * x[0] + 5.0;
    let e = (-5.0 * x[0] * x[0]).exp();
    let s = x[1].sin();
    let h00 = 5.0 / q.powf(1.5) + s * s * e * (100.0 * x[0] * x[0] - 10.0);
    let h01 = -10.0 * x[0] * (2.0 * x[1]).sin() * e;
    let h11 = 2.0 * (2.0 * x[1]).cos() * e;
    vec![h00 * v[0] + h01 * v[1], h01 * v[0] + h11 * v[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, rel_err};
    use rand::Rng;

    /// ∇f and ∇²f·v against central differences at random points on both sides of x1 = 100.
    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let mut rng = rand::rng();
        let points: Vec<[f64; 4]> = (0..16)
            .map(|_| {
                [
                    rng.random_range(-2.0..2.0),
                    rng.random_range(-5.0..120.0),
                    rng.random_range(-1.0..1.0),
                    rng.random_range(-1.0..1.0),
                ]
            })
            .collect();
        for [x0, x1, v0, v1] in points {
            let (x, v) = ([x0, x1], [v0, v1]);
            let e = rel_err(&loss_grad(&x).1, &central_diff(loss, &x, 1e-6));
            assert!(e < 1e-6, "∇f at {x:?}: {e}");
            let dir = |y: &[f64]| loss_grad(y).1[0] * v0 + loss_grad(y).1[1] * v1;
            let e = rel_err(&hvp(&x, &v), &central_diff(dir, &x, 1e-6));
            assert!(e < 1e-6, "∇²f·v at {x:?}: {e}");
        }
    }
}
