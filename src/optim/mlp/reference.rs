//! f64 reference of the per-parameter MLP learned optimizer (after learned_optimization's
//! MLPLOpt), step and exact VJP. It acts on all P coordinates of one instance at once, because
//! its features are normalised per parameter tensor.
//!
//! Per coordinate, with state (m_1 … m_5, v) and decays β = (0.1, 0.5, 0.9, 0.99, 0.999):
//!     m_j' = β_j·m_j + (1 − β_j)·g,   v' = β_v·v + (1 − β_v)·g²   (β_v = 0.999)
//!     x = (g, θ, m_1' … m_5', √v')                                  8 features
//! Per tensor S (a segment of the instance's parameters) and feature f:
//!     r_f = (ε + mean_{i∈S} x_{f,i}²)^(−1/2),   x̂_{f,i} = x_{f,i}·r_f       (ε = 1e-5)
//! Step embedding, the same for every coordinate: e_j = tanh(t/τ_j − 1),
//!     τ = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
//! MLP on the 19 inputs (x̂, e): h1 = relu(W1·in + b1), h2 = relu(W2·h1 + b2), o = W3·h2 + b3
//!     u = o_0 · exp(α·o_1) · β_step    (α = β_step = 1e-3)
//! φ, row-major: W1 (32×19) @0, b1 (32) @608, W2 (32×32) @640, b2 (32) @1664, W3 (2×32) @1696,
//! b3 (2) @1760; 1762 floats.
//! The state depends on g only. The VJP is with respect to φ and to θ through the θ feature
//! (including the normalisation's coupling within a tensor), and in second-order mode also to g
//! and the old state (through every feature and its normalisation); g and the state are the
//! detached inputs of the first-order and truncated modes.

use crate::optim::RefStep;

use super::{
    B1, B2, B3, DECAYS, FEATURES, HIDDEN, INPUTS, PHI_LEN, RMS_DECAY, STATE, TIMESCALES, W1, W2, W3,
};

/// Hyper-parameters that are not learned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlpOptConfig {
    /// ε of the per-tensor normalisation.
    pub eps: f64,
    /// α: u = o_0·exp(α·o_1)·β.
    pub exp_mult: f64,
    /// β: u = o_0·exp(α·o_1)·β.
    pub step_mult: f64,
}

impl Default for MlpOptConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            exp_mult: 1e-3,
            step_mult: 1e-3,
        }
    }
}

/// The step embedding at inner step t.
pub fn embedding(t: usize) -> [f64; 11] {
    TIMESCALES.map(|tau| (t as f64 / tau - 1.0).tanh())
}

/// New state and raw features of one coordinate.
fn features(g: f64, theta: f64, state: &[f64]) -> ([f64; STATE], [f64; FEATURES]) {
    let mut s = [0.0; STATE];
    let mut x = [0.0; FEATURES];
    x[0] = g;
    x[1] = theta;
    for j in 0..5 {
        s[j] = DECAYS[j] * state[j] + (1.0 - DECAYS[j]) * g;
        x[2 + j] = s[j];
    }
    s[5] = RMS_DECAY * state[5] + (1.0 - RMS_DECAY) * g * g;
    x[7] = s[5].sqrt();
    (s, x)
}

struct Forward {
    new_state: Vec<f64>,
    x: Vec<[f64; FEATURES]>,
    r: Vec<[f64; FEATURES]>, // per coordinate: the r of its segment
    inp: Vec<[f64; INPUTS]>,
    a1: Vec<[f64; HIDDEN]>,
    a2: Vec<[f64; HIDDEN]>,
    o: Vec<[f64; 2]>,
    u: Vec<f64>,
}

fn forward(
    cfg: &MlpOptConfig,
    phi: &[f64],
    g: &[f64],
    theta: &[f64],
    state: &[f64],
    segments: &[(usize, usize)],
    t: usize,
) -> Forward {
    let p = theta.len();
    let mut new_state = vec![0.0; p * STATE];
    let mut x = vec![[0.0; FEATURES]; p];
    for i in 0..p {
        let (s, xi) = features(g[i], theta[i], &state[i * STATE..(i + 1) * STATE]);
        new_state[i * STATE..(i + 1) * STATE].copy_from_slice(&s);
        x[i] = xi;
    }
    let mut r = vec![[0.0; FEATURES]; p];
    for &(off, len) in segments {
        let mut rf = [0.0; FEATURES];
        for (f, v) in rf.iter_mut().enumerate() {
            let ms: f64 = (off..off + len).map(|i| x[i][f] * x[i][f]).sum::<f64>() / len as f64;
            *v = 1.0 / (cfg.eps + ms).sqrt();
        }
        for ri in &mut r[off..off + len] {
            *ri = rf;
        }
    }
    let e = embedding(t);
    let mut fw = Forward {
        new_state,
        x,
        r,
        inp: Vec::with_capacity(p),
        a1: Vec::with_capacity(p),
        a2: Vec::with_capacity(p),
        o: Vec::with_capacity(p),
        u: Vec::with_capacity(p),
    };
    for i in 0..p {
        let mut inp = [0.0; INPUTS];
        for (f, v) in inp.iter_mut().take(FEATURES).enumerate() {
            *v = fw.x[i][f] * fw.r[i][f];
        }
        inp[FEATURES..].copy_from_slice(&e);
        let mut a1 = [0.0; HIDDEN];
        for (k, a) in a1.iter_mut().enumerate() {
            *a = phi[B1 + k]
                + (0..INPUTS)
                    .map(|j| phi[W1 + k * INPUTS + j] * inp[j])
                    .sum::<f64>();
        }
        let h1 = a1.map(|v| v.max(0.0));
        let mut a2 = [0.0; HIDDEN];
        for (k, a) in a2.iter_mut().enumerate() {
            *a = phi[B2 + k]
                + (0..HIDDEN)
                    .map(|j| phi[W2 + k * HIDDEN + j] * h1[j])
                    .sum::<f64>();
        }
        let h2 = a2.map(|v| v.max(0.0));
        let mut o = [0.0; 2];
        for (k, v) in o.iter_mut().enumerate() {
            *v = phi[B3 + k]
                + (0..HIDDEN)
                    .map(|j| phi[W3 + k * HIDDEN + j] * h2[j])
                    .sum::<f64>();
        }
        fw.u.push(o[0] * (cfg.exp_mult * o[1]).exp() * cfg.step_mult);
        fw.inp.push(inp);
        fw.a1.push(a1);
        fw.a2.push(a2);
        fw.o.push(o);
    }
    fw
}

/// The smallest |pre-activation| of the two ReLU layers over the P coordinates of a step.
pub fn mlpo_kink_margin(cfg: &MlpOptConfig, a: &RefStep) -> f64 {
    let f = forward(cfg, a.phi, a.g, a.theta, a.state, a.segments, a.t);
    f.a1.iter()
        .chain(&f.a2)
        .flat_map(|a| a.iter())
        .fold(f64::INFINITY, |m, v| m.min(v.abs()))
}

/// One step of all P coordinates of an instance: (u, new state). `state` is P × 6,
/// coordinate-major; `segments` are the (offset, length) of the instance's tensors, covering
/// 0..P; `t` is the inner step number.
pub fn mlpo_step(cfg: &MlpOptConfig, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
    let f = forward(cfg, a.phi, a.g, a.theta, a.state, a.segments, a.t);
    (f.u, f.new_state)
}

/// The cotangents of one step's inputs (all P coordinates of an instance).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MlpoVjp {
    /// Of θ through the θ feature and its normalisation (P).
    pub theta_bar: Vec<f64>,
    /// Of g (P); zeros unless second order.
    pub g_bar: Vec<f64>,
    /// Of the old state (P × 6); zeros unless second order.
    pub state_bar: Vec<f64>,
    /// Of φ.
    pub phi_bar: Vec<f64>,
}

/// Exact VJP of one step given the cotangents `u_bar` of u and `state_bar` of the new state:
/// θ̄ through the θ feature and its normalisation, φ̄, and with `second_order` the cotangents of
/// g and of the old state (the momenta and √v' are features too, normalised per tensor):
///     x̄_f = r_f·x̂̄_f − r_f³·x_f·(Σ_{j∈S} x_{f,j}·x̂̄_{f,j})/|S|   for every feature f
///     m̄_j'_tot = m̄_j' + x̄_{2+j},   v̄'_tot = v̄' + x̄_7/(2√v')  (0 where v' = 0)
///     ḡ = x̄_0 + Σ_j (1 − β_j)·m̄_j'_tot + 2(1 − β_v)·g·v̄'_tot,   m̄_j = β_j·m̄_j'_tot,
///     v̄ = β_v·v̄'_tot
/// Without `second_order`, g and the state are the detached inputs of the first-order and
/// truncated modes and get zeros.
pub fn mlpo_step_vjp(
    cfg: &MlpOptConfig,
    a: &RefStep,
    u_bar: &[f64],
    state_bar: &[f64],
    second_order: bool,
) -> MlpoVjp {
    let (phi, segments) = (a.phi, a.segments);
    let fw = forward(cfg, a.phi, a.g, a.theta, a.state, a.segments, a.t);
    let p = a.theta.len();
    let mut phi_bar = vec![0.0; PHI_LEN];
    // Adjoints of the normalised features, per coordinate.
    let mut xhat_bar = vec![[0.0; FEATURES]; p];
    for i in 0..p {
        let o = fw.o[i];
        let ex = (cfg.exp_mult * o[1]).exp();
        let ob = [
            u_bar[i] * ex * cfg.step_mult,
            u_bar[i] * o[0] * ex * cfg.step_mult * cfg.exp_mult,
        ];
        let h2 = fw.a2[i].map(|v| v.max(0.0));
        let h1 = fw.a1[i].map(|v| v.max(0.0));
        let mut h2b = [0.0; HIDDEN];
        for k in 0..2 {
            phi_bar[B3 + k] += ob[k];
            for j in 0..HIDDEN {
                phi_bar[W3 + k * HIDDEN + j] += ob[k] * h2[j];
                h2b[j] += phi[W3 + k * HIDDEN + j] * ob[k];
            }
        }
        let a2b: Vec<f64> = (0..HIDDEN)
            .map(|k| if fw.a2[i][k] > 0.0 { h2b[k] } else { 0.0 })
            .collect();
        let mut h1b = [0.0; HIDDEN];
        for k in 0..HIDDEN {
            phi_bar[B2 + k] += a2b[k];
            for j in 0..HIDDEN {
                phi_bar[W2 + k * HIDDEN + j] += a2b[k] * h1[j];
                h1b[j] += phi[W2 + k * HIDDEN + j] * a2b[k];
            }
        }
        let a1b: Vec<f64> = (0..HIDDEN)
            .map(|k| if fw.a1[i][k] > 0.0 { h1b[k] } else { 0.0 })
            .collect();
        for k in 0..HIDDEN {
            phi_bar[B1 + k] += a1b[k];
            for j in 0..INPUTS {
                phi_bar[W1 + k * INPUTS + j] += a1b[k] * fw.inp[i][j];
            }
            for (f, xb) in xhat_bar[i].iter_mut().enumerate() {
                *xb += phi[W1 + k * INPUTS + f] * a1b[k];
            }
        }
    }
    // Through x̂ = x·r with r = (ε + mean x²)^(−1/2) over each segment.
    let mut x_bar = vec![[0.0; FEATURES]; p];
    for &(off, len) in segments {
        for f in 0..FEATURES {
            let dot: f64 = (off..off + len).map(|j| fw.x[j][f] * xhat_bar[j][f]).sum();
            for i in off..off + len {
                let r = fw.r[i][f];
                x_bar[i][f] = r * xhat_bar[i][f] - r * r * r * fw.x[i][f] * dot / len as f64;
            }
        }
    }
    let mut out = MlpoVjp {
        theta_bar: x_bar.iter().map(|x| x[1]).collect(),
        g_bar: vec![0.0; p],
        state_bar: vec![0.0; p * STATE],
        phi_bar,
    };
    if second_order {
        for i in 0..p {
            let (xb, sb) = (&x_bar[i], &state_bar[i * STATE..(i + 1) * STATE]);
            let mut g_bar = xb[0];
            for j in 0..5 {
                let mt = sb[j] + xb[2 + j];
                g_bar += (1.0 - DECAYS[j]) * mt;
                out.state_bar[i * STATE + j] = DECAYS[j] * mt;
            }
            let sq = fw.x[i][7];
            let vt = sb[5] + if sq > 0.0 { xb[7] / (2.0 * sq) } else { 0.0 };
            g_bar += 2.0 * (1.0 - RMS_DECAY) * a.g[i] * vt;
            out.state_bar[i * STATE + 5] = RMS_DECAY * vt;
            out.g_bar[i] = g_bar;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn phi_length_matches_the_layout() {
        assert_eq!(PHI_LEN, 1762);
        assert_eq!(B3 + 2, PHI_LEN);
    }

    #[test]
    fn kink_margin_is_the_smallest_pre_activation() {
        // With W1 = W2 = 0 every pre-activation is its bias.
        let mut phi = vec![0.0; PHI_LEN];
        for (k, i) in (B1..B1 + HIDDEN).chain(B2..B2 + HIDDEN).enumerate() {
            phi[i] = 0.5 + k as f64;
        }
        phi[B2 + 3] = -2.5e-7;
        let (g, theta, state) = (vec![0.1, -0.2], vec![0.3, 0.4], vec![0.0; 2 * STATE]);
        let a = RefStep {
            phi: &phi,
            g: &g,
            theta: &theta,
            state: &state,
            segments: &[(0, 2)],
            t: 3,
        };
        let m = mlpo_kink_margin(&MlpOptConfig::default(), &a);
        assert_eq!(m, 2.5e-7);
    }

    #[test]
    fn vjp_matches_finite_differences() {
        for seed in 0..3u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let cfg = MlpOptConfig {
                exp_mult: 0.3,
                step_mult: 0.5,
                ..Default::default()
            };
            let segments = [(0usize, 4usize), (4, 1), (5, 7)];
            let p = 12;
            let mut phi: Vec<f64> = super::super::init_phi(&mut rng)
                .into_iter()
                .map(f64::from)
                .collect();
            for i in (B1..B1 + HIDDEN).chain(B2..B2 + HIDDEN) {
                phi[i] = rng.random_range(-0.3..0.3);
            }
            let g: Vec<f64> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
            let theta: Vec<f64> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
            let state: Vec<f64> = (0..p * STATE)
                .map(|i| {
                    if i % STATE == 5 {
                        rng.random_range(0.0..1.0)
                    } else {
                        rng.random_range(-1.0..1.0)
                    }
                })
                .collect();
            let ub: Vec<f64> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
            let t = 7;
            let at = RefStep {
                phi: &phi,
                g: &g,
                theta: &theta,
                state: &state,
                segments: &segments,
                t,
            };
            let sb: Vec<f64> = (0..p * STATE)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let v = mlpo_step_vjp(&cfg, &at, &ub, &sb, true);
            let detached = mlpo_step_vjp(&cfg, &at, &ub, &sb, false);
            assert_eq!(
                (&detached.theta_bar, &detached.phi_bar),
                (&v.theta_bar, &v.phi_bar)
            );
            assert!(detached
                .g_bar
                .iter()
                .chain(&detached.state_bar)
                .all(|x| *x == 0.0));
            // ⟨ū, u⟩ + ⟨s̄', s'⟩ as a function of (φ, θ, g, s).
            let l = |phi: &[f64], th: &[f64], g: &[f64], st: &[f64]| {
                let (u, s1) = mlpo_step(
                    &cfg,
                    &RefStep {
                        phi,
                        theta: th,
                        g,
                        state: st,
                        ..at
                    },
                );
                let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
                dot(&u, &ub) + dot(&s1, &sb)
            };
            let check = |what: &str, an: &[f64], fd: &[f64]| {
                let e = rel_err(an, fd);
                assert!(e < 1e-6, "seed {seed} {what}: {e:.2e}");
            };
            check(
                "θ̄",
                &v.theta_bar,
                &central_diff(|th| l(&phi, th, &g, &state), &theta, 1e-6),
            );
            check(
                "φ̄",
                &v.phi_bar,
                &central_diff(|ph| l(ph, &theta, &g, &state), &phi, 1e-6),
            );
            check(
                "ḡ",
                &v.g_bar,
                &central_diff(|x| l(&phi, &theta, x, &state), &g, 1e-6),
            );
            check(
                "s̄",
                &v.state_bar,
                &central_diff(|x| l(&phi, &theta, &g, x), &state, 1e-6),
            );
        }
    }

    #[test]
    fn normalisation_is_per_segment_and_state_follows_the_decays() {
        let cfg = MlpOptConfig::default();
        let phi = vec![0.0; PHI_LEN];
        let g = [1.0, -2.0, 0.5];
        let theta = [0.1, 0.2, 0.3];
        let state = vec![0.0; 3 * STATE];
        let (u, s) = mlpo_step(
            &cfg,
            &RefStep {
                phi: &phi,
                g: &g,
                theta: &theta,
                state: &state,
                segments: &[(0, 2), (2, 1)],
                t: 0,
            },
        );
        assert_eq!(u, vec![0.0; 3]);
        assert!((s[0] - 0.9 * 1.0).abs() < 1e-15 && (s[4] - 0.001).abs() < 1e-15);
        assert!((s[STATE + 5] - 0.001 * 4.0).abs() < 1e-15);
        let f = forward(&cfg, &phi, &g, &theta, &state, &[(0, 2), (2, 1)], 0);
        let want = 1.0 / (1e-5 + (1.0 + 4.0) / 2.0f64).sqrt();
        assert!((f.r[0][0] - want).abs() < 1e-12 && (f.r[1][0] - want).abs() < 1e-12);
        assert!((f.r[2][0] - 1.0 / (1e-5 + 0.25f64).sqrt()).abs() < 1e-12);
    }
}
