//! f64 reference of the gated optimizer (equations in `gated.wgsl` and docs/optimizers.md): one
//! coordinate's step and its exact reverse, checked against finite differences.

use super::GatedConfig;
use crate::optim::lstm::reference::{lstm_feature_grads, lstm_features, LstmConfig};

/// Rows of the gate matrix A: the keep gate f, the write gate i, the proposal ũ, the state h.
pub const ROWS: usize = 4;
/// Features per coordinate: the two LogAndSign features of g, D / d_scale, h, 1.
pub const FEATURES: usize = 5;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn log_and_sign(cfg: &GatedConfig) -> LstmConfig {
    LstmConfig {
        p: cfg.p,
        eps: cfg.eps,
        ..LstmConfig::default()
    }
}

/// The features of one coordinate with gradient `g` and state (D, h).
pub fn features(cfg: &GatedConfig, g: f64, d: f64, h: f64) -> [f64; FEATURES] {
    let [x1, x2] = lstm_features(&log_and_sign(cfg), g);
    [x1, x2, d / cfg.d_scale, h, 1.0]
}

/// What one step computes for one coordinate.
#[derive(Clone, Copy, Debug)]
struct Forward {
    x: [f64; FEATURES],
    z: [f64; ROWS],
    f: f64,
    i: f64,
    proposal: f64,
    h: f64,
    d: f64,
}

fn forward(cfg: &GatedConfig, phi: &[f64], g: f64, state: &[f64]) -> Forward {
    assert_eq!(phi.len(), ROWS * FEATURES, "gated φ length");
    assert_eq!(state.len(), 2, "gated state length");
    let x = features(cfg, g, state[0], state[1]);
    let mut z = [0.0; ROWS];
    for (k, zk) in z.iter_mut().enumerate() {
        *zk = (0..FEATURES).map(|m| phi[k * FEATURES + m] * x[m]).sum();
    }
    let (f, i) = (sigmoid(z[0]), sigmoid(z[1]));
    let proposal = cfg.out_scale * z[2].tanh();
    let d = f * state[0] + i * proposal;
    Forward {
        x,
        z,
        f,
        i,
        proposal,
        h: z[3].tanh(),
        d,
    }
}

/// One step of one coordinate: the update u = D' − D and the new state [D', h'].
///
/// # Panics
/// If `phi.len() != 20` or `state.len() != 2`.
pub fn gated_step(cfg: &GatedConfig, phi: &[f64], g: f64, state: &[f64]) -> (f64, [f64; 2]) {
    let fw = forward(cfg, phi, g, state);
    (fw.d - state[0], [fw.d, fw.h])
}

/// Cotangents of one coordinate's step.
#[derive(Clone, Debug, PartialEq)]
pub struct GatedVjp {
    /// Of g.
    pub g_bar: f64,
    /// Of the old state [D, h].
    pub state_bar: [f64; 2],
    /// Of φ (20).
    pub phi_bar: Vec<f64>,
}

/// Exact VJP of [`gated_step`] given the cotangents of u and of the new state.
pub fn gated_step_vjp(
    cfg: &GatedConfig,
    phi: &[f64],
    g: f64,
    state: &[f64],
    (u_bar, state_bar): (f64, &[f64]),
) -> GatedVjp {
    let fw = forward(cfg, phi, g, state);
    // u = D' − D: the adjoint of D' is its own plus ū.
    let a = state_bar[0] + u_bar;
    let zb = [
        a * state[0] * fw.f * (1.0 - fw.f),
        a * fw.proposal * fw.i * (1.0 - fw.i),
        a * fw.i * cfg.out_scale * (1.0 - fw.z[2].tanh().powi(2)),
        state_bar[1] * (1.0 - fw.h * fw.h),
    ];
    let mut phi_bar = vec![0.0; ROWS * FEATURES];
    let mut xb = [0.0; FEATURES];
    for k in 0..ROWS {
        for m in 0..FEATURES {
            phi_bar[k * FEATURES + m] = zb[k] * fw.x[m];
            xb[m] += zb[k] * phi[k * FEATURES + m];
        }
    }
    let [d1, d2] = lstm_feature_grads(&log_and_sign(cfg), g);
    GatedVjp {
        g_bar: xb[0] * d1 + xb[1] * d2,
        state_bar: [a * fw.f - u_bar + xb[2] / cfg.d_scale, xb[3]],
        phi_bar,
    }
}

/// The smallest distance of the step's LogAndSign features from their clamps (where f32 and
/// f64 may take different sides).
pub fn feature_margin(cfg: &GatedConfig, g: f64) -> f64 {
    let r1 = (g.abs() + cfg.eps).ln() / cfg.p;
    let r2 = g * cfg.p.exp();
    (1.0 - r1.abs()).abs().min((1.0 - r2.abs()).abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn gated_step_vjp_matches_finite_differences() {
        let cfg = GatedConfig::default();
        for seed in 0..8 {
            let mut rng = StdRng::seed_from_u64(700 + seed);
            let phi: Vec<f64> = (0..ROWS * FEATURES)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            // Gradients inside the features' unclamped ranges, and one past them.
            let g = if seed == 7 {
                0.5
            } else {
                rng.random_range(1e-4..5e-3) * if seed % 2 == 0 { 1.0 } else { -1.0 }
            };
            let state = [rng.random_range(-0.02..0.02), rng.random_range(-0.9..0.9)];
            let (u_bar, sb) = (
                rng.random_range(-1.0..1.0),
                [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)],
            );
            let v = gated_step_vjp(&cfg, &phi, g, &state, (u_bar, &sb));
            // Inputs laid out as [g, D, h, φ…].
            let mut x = vec![g, state[0], state[1]];
            x.extend(&phi);
            let loss = |x: &[f64]| {
                let (u, s) = gated_step(&cfg, &x[3..], x[0], &x[1..3]);
                u_bar * u + sb[0] * s[0] + sb[1] * s[1]
            };
            let fd = central_diff(loss, &x, 1e-7);
            let mut got = vec![v.g_bar, v.state_bar[0], v.state_bar[1]];
            got.extend(&v.phi_bar);
            let e = rel_err(&got, &fd);
            assert!(e < 1e-5, "seed {seed}: {e}\n{got:?}\n{fd:?}");
        }
    }

    #[test]
    fn the_step_keeps_copies_and_flushes_the_medium_term_part() {
        let cfg = GatedConfig::default();
        // Only biases: f = σ(b_f), i = σ(b_i), ũ = out·tanh(b_u).
        let mut phi = vec![0.0; ROWS * FEATURES];
        let bias = |k: usize| k * FEATURES + 4;
        phi[bias(0)] = 50.0; // f = 1: COPY
        phi[bias(1)] = -50.0; // i = 0: no write
        let (u, s) = gated_step(&cfg, &phi, 0.01, &[0.3, 0.0]);
        assert!(u.abs() < 1e-12 && (s[0] - 0.3).abs() < 1e-12);
        phi[bias(0)] = -50.0; // f = 0: FLUSH back to the static weights
        let (u, s) = gated_step(&cfg, &phi, 0.01, &[0.3, 0.0]);
        assert!((u + 0.3).abs() < 1e-12 && s[0].abs() < 1e-12);
        phi[bias(1)] = 50.0; // i = 1: UPDATE by the proposal
        phi[bias(2)] = 1.0;
        let (_, s) = gated_step(&cfg, &phi, 0.01, &[0.3, 0.0]);
        assert!((s[0] - cfg.out_scale * 1f64.tanh()).abs() < 1e-12);
    }
}
