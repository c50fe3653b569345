//! Tests of the LSTM optimizer's f64 reference against finite differences.

use super::*;
use crate::reference::{central_diff, rel_err};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

/// The optimizer's one initialisation (f32, as the GPU path draws it), in f64.
fn init_f64(hidden: usize, rng: &mut StdRng) -> Vec<f64> {
    crate::optim::lstm::init_phi(hidden, rng)
        .into_iter()
        .map(f64::from)
        .collect()
}

fn uniform(rng: &mut StdRng, n: usize, k: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-k..k)).collect()
}

fn random_state(rng: &mut StdRng, hd: usize) -> Vec<f64> {
    let mut s = Vec::new();
    s.extend(uniform(rng, hd, 0.9)); // h1
    s.extend(uniform(rng, hd, 2.0)); // c1
    s.extend(uniform(rng, hd, 0.9)); // h2
    s.extend(uniform(rng, hd, 2.0)); // c2
    s
}

/// A g with magnitude uniform in [lo, hi) and a random sign.
fn random_g(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    let m = rng.random_range(lo..hi);
    if rng.random_bool(0.5) {
        m
    } else {
        -m
    }
}

/// Checks the LSTM VJP against central differences of L = u_bar·u + Σ ns_bar·ns over
/// (g, state, φ) with step 1e-6: over the whole input vector and over the state and φ
/// blocks separately. g̅ is also checked on its own, against a difference with step `h_g`
/// suited to the feature regime of g: with step 1e-6 the round-off of L (~1e-10) can be
/// 1e-6 of a small g̅ = x̅₁/(p·|g|), while x₂ = g·e¹⁰ needs a step well under 1e-6 (the
/// whole-vector check then also uses `h_g` for g).
fn check_lstm_vjp(
    cfg: &LstmConfig,
    phi: &[f64],
    g: f64,
    state: &[f64],
    rng: &mut StdRng,
    h_g: f64,
) {
    let hd = cfg.hidden;
    let u_bar = rng.random_range(-1.0..1.0);
    let ns_bar = uniform(rng, 4 * hd, 1.0);
    let loss = |phi: &[f64], g: f64, state: &[f64]| {
        let (u, ns) = lstm_step(cfg, phi, g, state);
        u_bar * u + dot(&ns_bar, &ns)
    };
    let vjp = lstm_step_vjp(cfg, phi, g, state, u_bar, &ns_bar);
    assert!(vjp.g_bar != 0.0, "g={g} should be in an unclamped regime");

    let fd_g = central_diff(|x| loss(phi, x[0], state), &[g], H.min(h_g));
    let fd_s = central_diff(|s| loss(phi, g, s), state, H);
    let fd_p = central_diff(|p| loss(p, g, state), phi, H);
    let mut all = vec![vjp.g_bar];
    all.extend(&vjp.state_bar);
    all.extend(&vjp.phi_bar);
    let fd: Vec<f64> = fd_g.iter().chain(&fd_s).chain(&fd_p).copied().collect();
    let e = rel_err(&all, &fd);
    assert!(e < TOL, "H={hd} g={g}: overall rel err {e}");
    let e_s = rel_err(&vjp.state_bar, &fd_s);
    assert!(e_s < TOL, "H={hd} g={g}: state_bar rel err {e_s}");
    let e_p = rel_err(&vjp.phi_bar, &fd_p);
    assert!(e_p < TOL, "H={hd} g={g}: phi_bar rel err {e_p}");

    let fd_g = central_diff(|x| loss(phi, x[0], state), &[g], h_g);
    let e_g = rel_err(&[vjp.g_bar], &fd_g);
    assert!(
        e_g < TOL,
        "H={hd} g={g}: g_bar {} vs {} ({e_g})",
        vjp.g_bar,
        fd_g[0]
    );
}

#[test]
fn lstm_lengths() {
    let cfg = LstmConfig::default();
    assert_eq!(cfg.hidden, 20);
    assert_eq!(cfg.phi_len(), 5141);
    assert_eq!(cfg.state_len(), 80);
    let l = Layout::new(cfg.hidden);
    assert_eq!(l.bo + 1, cfg.phi_len());
    let mut rng = StdRng::seed_from_u64(0);
    assert_eq!(init_f64(cfg.hidden, &mut rng).len(), 5141);
    let (_, ns) = lstm_step(&cfg, &vec![0.0; 5141], 0.3, &[0.0; 80]);
    assert_eq!(ns.len(), 80);
}

#[test]
fn lstm_init_layout() {
    let cfg = LstmConfig {
        hidden: 4,
        ..LstmConfig::default()
    };
    let hd = cfg.hidden;
    let l = Layout::new(hd);
    let mut rng = StdRng::seed_from_u64(3);
    let phi = init_f64(cfg.hidden, &mut rng);
    let k = 1.0 / (hd as f64).sqrt();
    for r in [&l.wx1, &l.wh1, &l.wx2, &l.wh2] {
        assert!(phi[r.clone()].iter().all(|v| v.abs() <= k * (1.0 + 1e-6)));
        assert!(phi[r.clone()].iter().any(|v| *v != 0.0));
    }
    for b in [&l.b1, &l.b2] {
        let b = &phi[b.clone()];
        for (j, &v) in b.iter().enumerate() {
            let want = if (hd..2 * hd).contains(&j) { 1.0 } else { 0.0 };
            assert_eq!(v, want, "bias entry {j}");
        }
    }
    // Drawn in f32: allow its rounding of the bound.
    assert!(phi[l.wo.clone()]
        .iter()
        .all(|v| v.abs() <= 0.1 * k * (1.0 + 1e-6)));
    assert!(phi[l.wo.clone()].iter().any(|v| *v != 0.0));
    assert_eq!(phi[l.bo], 0.0);
}

#[test]
fn lstm_zero_output_weights_give_scaled_bias() {
    let cfg = LstmConfig::default();
    let l = Layout::new(cfg.hidden);
    let mut rng = StdRng::seed_from_u64(11);
    let mut phi = init_f64(cfg.hidden, &mut rng);
    for v in &mut phi[l.wo.clone()] {
        *v = 0.0;
    }
    phi[l.bo] = 0.37;
    let state = random_state(&mut rng, cfg.hidden);
    for g in [-2.0, -1e-3, 0.0, 1e-6, 0.5, 1e5] {
        let (u, _) = lstm_step(&cfg, &phi, g, &state);
        assert_eq!(u, cfg.out_scale * 0.37, "g={g}");
    }
}

#[test]
fn lstm_step_matches_a_hand_computed_h1() {
    // H = 1, everything zero except b1's cell-gate entry and wo/bo: hand-evaluate the step.
    let cfg = LstmConfig {
        hidden: 1,
        ..LstmConfig::default()
    };
    let l = Layout::new(1);
    let mut phi = vec![0.0; cfg.phi_len()];
    phi[l.b1.start + 2] = 0.5; // a_g of layer 1
    phi[l.wx1.start + 2 * 2] = 0.25; // Wx1[g-row, x1]
    phi[l.wo.start] = 2.0;
    phi[l.bo] = -0.1;
    let g: f64 = 0.2;
    let state = [0.1, 0.3, -0.2, 0.4];
    let x1 = (g.abs() + 1e-8).ln() / 10.0;
    let s0 = sigmoid(0.0);
    let c1 = s0 * 0.3 + s0 * (0.25 * x1 + 0.5).tanh();
    let h1 = s0 * c1.tanh();
    let c2 = s0 * 0.4;
    let h2 = s0 * c2.tanh();
    let u = 0.1 * (2.0 * h2 - 0.1);
    let (u_got, ns) = lstm_step(&cfg, &phi, g, &state);
    assert!((u_got - u).abs() < 1e-15);
    let want = [h1, c1, h2, c2];
    for (a, b) in ns.iter().zip(&want) {
        assert!((a - b).abs() < 1e-15, "{ns:?} vs {want:?}");
    }
}

#[test]
fn lstm_vjp_matches_finite_differences_small() {
    // Default p = 10: |g| > e^-p keeps x1 inside (−1, 1) while x2 is clamped.
    let cfg = LstmConfig {
        hidden: 3,
        ..LstmConfig::default()
    };
    for seed in 0..6 {
        let mut rng = StdRng::seed_from_u64(100 + seed);
        let phi = uniform(&mut rng, cfg.phi_len(), 0.8);
        let state = random_state(&mut rng, cfg.hidden);
        let g = random_g(&mut rng, 0.01, 5.0);
        check_lstm_vjp(&cfg, &phi, g, &state, &mut rng, 1e-4 * g.abs());
    }
}

#[test]
fn lstm_vjp_matches_finite_differences_both_feature_regimes() {
    // p = 2: |g| < e^-2 − eps keeps x2 inside (x1 clamped); |g| > e^-2 keeps x1 inside.
    let cfg = LstmConfig {
        hidden: 3,
        p: 2.0,
        ..LstmConfig::default()
    };
    let edge = (-cfg.p).exp();
    for seed in 0..6 {
        let mut rng = StdRng::seed_from_u64(200 + seed);
        let phi = uniform(&mut rng, cfg.phi_len(), 0.8);
        let state = random_state(&mut rng, cfg.hidden);
        let small = random_g(&mut rng, 0.005, 0.9 * edge);
        let x = lstm_features(&cfg, small);
        assert!(x[0] == -1.0 && x[1].abs() < 1.0, "{x:?}");
        check_lstm_vjp(&cfg, &phi, small, &state, &mut rng, H);
        let large = random_g(&mut rng, 1.2 * edge, 5.0);
        let x = lstm_features(&cfg, large);
        assert!(x[0].abs() < 1.0 && x[1].abs() == 1.0, "{x:?}");
        check_lstm_vjp(&cfg, &phi, large, &state, &mut rng, 1e-4 * large.abs());
    }
}

#[test]
fn lstm_vjp_small_g_default_p() {
    // Default p = 10 and |g| < e^-10: x2 = g·e^10 has slope 2.2e4, so g needs a finer step.
    let cfg = LstmConfig {
        hidden: 3,
        ..LstmConfig::default()
    };
    for seed in 0..4 {
        let mut rng = StdRng::seed_from_u64(300 + seed);
        let phi = uniform(&mut rng, cfg.phi_len(), 0.8);
        let state = random_state(&mut rng, cfg.hidden);
        let g = random_g(&mut rng, 5e-6, 4e-5);
        check_lstm_vjp(&cfg, &phi, g, &state, &mut rng, 1e-10);
    }
}

#[test]
fn lstm_vjp_matches_finite_differences_h20() {
    let cfg = LstmConfig::default();
    for seed in 0..2 {
        let mut rng = StdRng::seed_from_u64(400 + seed);
        // Initialised φ, with random biases so that no block of φ̄ is trivially shaped.
        let mut phi = init_f64(cfg.hidden, &mut rng);
        let l = Layout::new(cfg.hidden);
        for r in [l.b1.clone(), l.b2.clone()] {
            for v in &mut phi[r] {
                *v += rng.random_range(-0.5..0.5);
            }
        }
        phi[l.bo] = rng.random_range(-0.5..0.5);
        let state = random_state(&mut rng, cfg.hidden);
        let g = random_g(&mut rng, 0.01, 5.0);
        check_lstm_vjp(&cfg, &phi, g, &state, &mut rng, 1e-4 * g.abs());
    }
    // And a fully random φ.
    let mut rng = StdRng::seed_from_u64(499);
    let phi = uniform(&mut rng, cfg.phi_len(), 0.3);
    let state = random_state(&mut rng, cfg.hidden);
    let g = random_g(&mut rng, 0.01, 5.0);
    check_lstm_vjp(&cfg, &phi, g, &state, &mut rng, 1e-4 * g.abs());
}

#[test]
fn lstm_g_bar_is_zero_where_both_features_are_clamped() {
    // |g| ≥ e^p: x1 = clamp(≥ 1) = 1 and x2 = ±1.
    let cfg = LstmConfig {
        hidden: 3,
        ..LstmConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(500);
    let phi = uniform(&mut rng, cfg.phi_len(), 0.8);
    let state = random_state(&mut rng, cfg.hidden);
    let ns_bar = uniform(&mut rng, cfg.state_len(), 1.0);
    for g in [3e4, -3e4, 1e5, -1e7] {
        assert_eq!(lstm_features(&cfg, g), [1.0, g.signum()]);
        let vjp = lstm_step_vjp(&cfg, &phi, g, &state, 0.7, &ns_bar);
        assert_eq!(vjp.g_bar, 0.0, "g={g}");
        assert!(vjp.phi_bar.iter().any(|v| *v != 0.0));
        // The step itself is flat in g there.
        assert_eq!(
            lstm_step(&cfg, &phi, g, &state),
            lstm_step(&cfg, &phi, g * 1.5, &state)
        );
    }
    // Features exactly on the clamp boundary also count as clamped: with p = ln 4 and
    // g = 1/4, x2 = g·e^p = 1 exactly.
    let edge = LstmConfig {
        p: 4f64.ln(),
        eps: 0.0,
        ..cfg
    };
    assert_eq!(lstm_feature_grads(&edge, 0.25)[1], 0.0);
    assert_eq!(lstm_feature_grads(&edge, 0.2)[1], 4f64.ln().exp());
    assert_eq!(lstm_feature_grads(&edge, 0.0)[0], 0.0);
}
