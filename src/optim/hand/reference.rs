//! f64 references of the hand-designed optimizers, one coordinate at a time: the step and the
//! exact vector-Jacobian product (VJP) where second-order mode needs it.
//!
//! SGD: u = −lr·g. Heavy-ball momentum: m' = μ·m + g, u = −lr·m'. Nesterov: m' = μ·m + g,
//! u = −lr·(g + μ·m'). RMSprop: v' = ρ·v + (1 − ρ)·g², u = −lr·g/(√v' + ε).
//! Adam: state [m, v]; t = number of steps taken before this one (0 for the first step).
//! m' = β1·m + (1−β1)·g; v' = β2·v + (1−β2)·g²; m̂ = m'/(1−β1^(t+1)); v̂ = v'/(1−β2^(t+1));
//! u = −lr · m̂ / (√v̂ + eps).

/// SGD update u = −lr·g.
pub fn sgd_step(lr: f64, g: f64) -> f64 {
    -lr * g
}

/// One heavy-ball (`nesterov = false`) or Nesterov momentum step for one coordinate with
/// momentum `m`: m' = μ·m + g, u = −lr·m' or −lr·(g + μ·m'). Returns u and [m'].
pub fn momentum_step(lr: f64, mu: f64, nesterov: bool, g: f64, m: f64) -> (f64, Vec<f64>) {
    let m = mu * m + g;
    if nesterov {
        (-lr * (g + mu * m), vec![m])
    } else {
        (-lr * m, vec![m])
    }
}

/// One RMSprop step for one coordinate with second moment `v`: v' = ρ·v + (1 − ρ)·g²,
/// u = −lr·g/(√v' + ε). Returns u and [v'].
pub fn rmsprop_step(lr: f64, rho: f64, eps: f64, g: f64, v: f64) -> (f64, Vec<f64>) {
    let v = rho * v + (1.0 - rho) * g * g;
    (-lr * g / (v.sqrt() + eps), vec![v])
}

/// Exact VJP of one heavy-ball (`nesterov = false`) or Nesterov momentum step, m' = μ·m + g,
/// u = −lr·m' (heavy ball) or u = −lr·(g + μ·m') (Nesterov), given the cotangents `u_bar` of u
/// and `m_new_bar` of m'. Returns (g_bar, m_bar):
///     m̄'_tot = m̄' − lr·ū (heavy ball) or m̄' − lr·μ·ū (Nesterov)
///     ḡ = m̄'_tot (+ −lr·ū, Nesterov),   m̄ = μ·m̄'_tot
pub fn momentum_step_vjp(
    lr: f64,
    mu: f64,
    nesterov: bool,
    u_bar: f64,
    m_new_bar: f64,
) -> (f64, f64) {
    if nesterov {
        let mt = m_new_bar - lr * mu * u_bar;
        (mt - lr * u_bar, mu * mt)
    } else {
        let mt = m_new_bar - lr * u_bar;
        (mt, mu * mt)
    }
}

/// Exact VJP of [`rmsprop_step`] with respect to (g, v), given the cotangents `u_bar` of u and
/// `v_new_bar` of v'. Returns (g_bar, v_bar):
///     v̄'_tot = v̄' + ū·lr·g/((√v' + ε)²·2√v'),   ḡ = −lr·ū/(√v' + ε) + 2(1 − ρ)·g·v̄'_tot,
///     v̄ = ρ·v̄'_tot
///
/// Where v' = 0 the derivative of √v' is unbounded; the path of u through v' is then taken as 0
/// (it is multiplied by g = 0 there).
pub fn rmsprop_step_vjp(
    lr: f64,
    rho: f64,
    eps: f64,
    g: f64,
    v: f64,
    u_bar: f64,
    v_new_bar: f64,
) -> (f64, f64) {
    let v1 = rho * v + (1.0 - rho) * g * g;
    let sq = v1.sqrt();
    let den = sq + eps;
    let du_dv1 = if v1 > 0.0 {
        lr * g / (den * den) / (2.0 * sq)
    } else {
        0.0
    };
    let v1_bar = v_new_bar + u_bar * du_dv1;
    let g_bar = -lr * u_bar / den + 2.0 * (1.0 - rho) * g * v1_bar;
    (g_bar, rho * v1_bar)
}

/// Hyper-parameters of Adam.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to √v̂ in the denominator (default 1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    /// [`super::Adam`]'s defaults.
    fn default() -> Self {
        super::Adam::default().reference_config()
    }
}

/// β^(t+1).
fn beta_pow(beta: f64, t: usize) -> f64 {
    match i32::try_from(t).ok().and_then(|t| t.checked_add(1)) {
        Some(n) => beta.powi(n),
        None => beta.powf(t as f64 + 1.0),
    }
}

/// Intermediate values of one Adam step.
struct AdamFwd {
    m1: f64,
    v1: f64,
    c1: f64,
    c2: f64,
}

fn adam_fwd(cfg: &AdamConfig, g: f64, state: [f64; 2], t: usize) -> AdamFwd {
    let [m, v] = state;
    AdamFwd {
        m1: cfg.beta1 * m + (1.0 - cfg.beta1) * g,
        v1: cfg.beta2 * v + (1.0 - cfg.beta2) * g * g,
        c1: 1.0 - beta_pow(cfg.beta1, t),
        c2: 1.0 - beta_pow(cfg.beta2, t),
    }
}

/// One Adam step for one coordinate: `state = [m, v]`, `t` = number of steps taken before this
/// one (0 for the first). Returns u and [m', v'].
pub fn adam_step(cfg: &AdamConfig, g: f64, state: [f64; 2], t: usize) -> (f64, [f64; 2]) {
    let s = adam_fwd(cfg, g, state, t);
    let m_hat = s.m1 / s.c1;
    let v_hat = s.v1 / s.c2;
    let u = -cfg.lr * m_hat / (v_hat.sqrt() + cfg.eps);
    (u, [s.m1, s.v1])
}

/// Exact VJP of [`adam_step`] with respect to (g, m, v), given the cotangents `u_bar` of u and
/// `state_bar = [m'_bar, v'_bar]`. Returns (g_bar, [m_bar, v_bar]).
///
/// Where v̂ = 0 the derivative of √v̂ is unbounded; the path of u through v' is then taken as 0.
pub fn adam_step_vjp(
    cfg: &AdamConfig,
    g: f64,
    state: [f64; 2],
    t: usize,
    u_bar: f64,
    state_bar: [f64; 2],
) -> (f64, [f64; 2]) {
    let s = adam_fwd(cfg, g, state, t);
    let m_hat = s.m1 / s.c1;
    let v_hat = s.v1 / s.c2;
    let sq = v_hat.sqrt();
    let den = sq + cfg.eps;
    let du_dm1 = -cfg.lr / (den * s.c1);
    let du_dv1 = if v_hat > 0.0 {
        cfg.lr * m_hat / (den * den) / (2.0 * sq) / s.c2
    } else {
        0.0
    };
    let m1_bar = state_bar[0] + u_bar * du_dm1;
    let v1_bar = state_bar[1] + u_bar * du_dv1;
    let g_bar = (1.0 - cfg.beta1) * m1_bar + 2.0 * (1.0 - cfg.beta2) * g * v1_bar;
    (g_bar, [cfg.beta1 * m1_bar, cfg.beta2 * v1_bar])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{central_diff, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const H: f64 = 1e-6;
    const TOL: f64 = 1e-6;

    #[test]
    fn sgd_step_is_minus_lr_g() {
        assert_eq!(sgd_step(0.1, 2.0), -0.2);
        assert_eq!(sgd_step(0.5, -3.0), 1.5);
    }

    #[test]
    fn adam_first_step_is_sign_like() {
        let cfg = AdamConfig::default();
        // The optimizer's f32 defaults, widened.
        for (got, want) in [
            (cfg.lr, 1e-3),
            (cfg.beta1, 0.9),
            (cfg.beta2, 0.999),
            (cfg.eps, 1e-8),
        ] {
            assert!((got - want).abs() <= 1e-7 * want, "{got} vs {want}");
        }
        for g in [-3.0f64, -0.01, 0.2, 5.0] {
            let (u, [m, v]) = adam_step(&cfg, g, [0.0, 0.0], 0);
            let want = -cfg.lr * g / (g.abs() + cfg.eps);
            assert!((u - want).abs() < 1e-15, "g={g}: {u} vs {want}");
            assert!((m - (1.0 - cfg.beta1) * g).abs() < 1e-15);
            assert!((v - (1.0 - cfg.beta2) * g * g).abs() < 1e-15);
        }
    }

    #[test]
    fn adam_step_matches_the_equations() {
        let cfg = AdamConfig {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
        };
        let (g, m, v, t) = (0.3, -0.1, 0.05, 4usize);
        let m1 = 0.8 * m + 0.2 * g;
        let v1 = 0.99 * v + 0.01 * g * g;
        let mh = m1 / (1.0 - 0.8f64.powi(5));
        let vh = v1 / (1.0 - 0.99f64.powi(5));
        let u = -0.01 * mh / (vh.sqrt() + 1e-6);
        let (u_got, s) = adam_step(&cfg, g, [m, v], t);
        assert!((u_got - u).abs() < 1e-15);
        assert!((s[0] - m1).abs() < 1e-15 && (s[1] - v1).abs() < 1e-15);
    }

    #[test]
    fn adam_vjp_matches_finite_differences() {
        let cfgs = [
            AdamConfig::default(),
            AdamConfig {
                lr: 0.05,
                beta1: 0.7,
                beta2: 0.95,
                eps: 1e-4,
            },
        ];
        for (ci, cfg) in cfgs.iter().enumerate() {
            for seed in 0..5 {
                let mut rng = StdRng::seed_from_u64(700 + seed);
                for t in [0usize, 1, 4, 99] {
                    let g = rng.random_range(-1.0..1.0);
                    let m = rng.random_range(-1.0..1.0);
                    let v = rng.random_range(0.01..1.0);
                    let u_bar = rng.random_range(-1.0..1.0);
                    let sb = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
                    let loss = |x: &[f64]| {
                        let (u, s) = adam_step(cfg, x[0], [x[1], x[2]], t);
                        u_bar * u + sb[0] * s[0] + sb[1] * s[1]
                    };
                    let fd = central_diff(loss, &[g, m, v], H);
                    let (g_bar, [m_bar, v_bar]) = adam_step_vjp(cfg, g, [m, v], t, u_bar, sb);
                    let e = rel_err(&[g_bar, m_bar, v_bar], &fd);
                    assert!(e < TOL, "cfg {ci} seed {seed} t {t}: {e}");
                    // Through u alone (u_bar only), which the state path would otherwise dominate.
                    let loss_u = |x: &[f64]| u_bar * adam_step(cfg, x[0], [x[1], x[2]], t).0;
                    let fd = central_diff(loss_u, &[g, m, v], H);
                    let (g_bar, [m_bar, v_bar]) =
                        adam_step_vjp(cfg, g, [m, v], t, u_bar, [0.0, 0.0]);
                    let e = rel_err(&[g_bar, m_bar, v_bar], &fd);
                    assert!(e < TOL, "cfg {ci} seed {seed} t {t} (u only): {e}");
                }
            }
        }
    }

    #[test]
    fn rmsprop_vjp_matches_finite_differences() {
        for (lr, rho, eps) in [(1e-3, 0.99, 1e-8), (0.05, 0.9, 1e-4)] {
            for seed in 0..5 {
                let mut rng = StdRng::seed_from_u64(800 + seed);
                let g = rng.random_range(-1.0..1.0);
                let v = rng.random_range(0.01..1.0);
                let u_bar = rng.random_range(-1.0..1.0);
                let vb = rng.random_range(-1.0..1.0);
                for sb in [vb, 0.0] {
                    let loss = |x: &[f64]| {
                        let (u, s) = rmsprop_step(lr, rho, eps, x[0], x[1]);
                        u_bar * u + sb * s[0]
                    };
                    let fd = central_diff(loss, &[g, v], H);
                    let (g_bar, v_bar) = rmsprop_step_vjp(lr, rho, eps, g, v, u_bar, sb);
                    let e = rel_err(&[g_bar, v_bar], &fd);
                    assert!(e < TOL, "lr {lr} seed {seed} v̄' {sb}: {e}");
                }
            }
        }
        let (g_bar, v_bar) = rmsprop_step_vjp(1e-3, 0.99, 1e-8, 0.0, 0.0, 1.0, 0.0);
        assert!(g_bar.is_finite() && v_bar.is_finite());
    }

    #[test]
    fn adam_vjp_at_zero_second_moment_is_finite() {
        let cfg = AdamConfig::default();
        let (g_bar, s) = adam_step_vjp(&cfg, 0.0, [0.0, 0.0], 0, 1.0, [0.0, 0.0]);
        assert!(g_bar.is_finite() && s.iter().all(|v| v.is_finite()));
    }
}
