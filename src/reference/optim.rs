//! f64 references of per-coordinate optimizers: the step and its exact vector-Jacobian
//! product (VJP). Every optimizer acts on one scalar parameter θ with gradient g and its own
//! per-coordinate state; the step returns the update u (θ' = θ + u) and the new state.
//!
//! # Coordinatewise 2-layer LSTM (L2L)
//!
//! Features (LogAndSign), with `p` and `eps` from [`LstmConfig`]:
//! x₁ = clamp(ln(|g| + eps) / p, −1, 1), x₂ = clamp(g · eᵖ, −1, 1).
//!
//! φ is one flat slice, row-major with one row per gate unit, in this order (length
//! 12H² + 17H + 1, 5141 for H = 20):
//!
//! ```text
//! Wx1 [4H × 2], Wh1 [4H × H], b1 [4H], Wx2 [4H × H], Wh2 [4H × H], b2 [4H], wo [H], bo [1]
//! ```
//!
//! State per coordinate (length 4H): `h1 [H], c1 [H], h2 [H], c2 [H]`.
//! Gate blocks of a 4H pre-activation vector a: `i = a[0..H], f = a[H..2H], g̃ = a[2H..3H],
//! o = a[3H..4H]`.
//!
//! Cell(x_in, h, c; Wx, Wh, b): a = Wx·x_in + Wh·h + b; i = σ(a_i), f = σ(a_f),
//! g̃ = tanh(a_g), o = σ(a_o); c' = f⊙c + i⊙g̃; h' = o⊙tanh(c').
//!
//! Step: (h1', c1') = Cell(x, h1, c1; Wx1, Wh1, b1); (h2', c2') = Cell(h1', h2, c2; Wx2, Wh2, b2);
//! u = out_scale · (wo·h2' + bo).
//!
//! Init ([`lstm_init_phi`]): Wx1, Wh1, Wx2, Wh2 ~ U(−1/√H, 1/√H); b1, b2 = 0 except their
//! forget-gate blocks = 1; wo ~ 0.1·U(−1/√H, 1/√H); bo = 0.
//!
//! VJP conventions: the derivative of clamp(r, −1, 1) is dr/dg when −1 < r < 1 and 0 otherwise;
//! d|g|/dg = sign(g), with 0 at g = 0.
//!
//! # Linear
//!
//! φ = [w0, w1, b]; u = w0·g + w1·θ + b.
//!
//! # SGD
//!
//! u = −lr·g.
//!
//! # Adam
//!
//! State [m, v]; t = number of steps taken before this one (0 for the first step).
//! m' = β1·m + (1−β1)·g; v' = β2·v + (1−β2)·g²; m̂ = m'/(1−β1^(t+1)); v̂ = v'/(1−β2^(t+1));
//! u = −lr · m̂ / (√v̂ + eps).

use std::ops::Range;

/// Configuration of the coordinatewise 2-layer LSTM optimizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmConfig {
    /// Hidden units per layer, H (default 20).
    pub hidden: usize,
    /// LogAndSign preprocessing constant p (default 10).
    pub p: f64,
    /// Added to |g| inside the logarithm (default 1e-8).
    pub eps: f64,
    /// Scale of the output: u = out_scale · (wo·h2' + bo) (default 0.1).
    pub out_scale: f64,
}

impl Default for LstmConfig {
    fn default() -> Self {
        Self {
            hidden: 20,
            p: 10.0,
            eps: 1e-8,
            out_scale: 0.1,
        }
    }
}

impl LstmConfig {
    /// Length of φ: 12H² + 17H + 1.
    pub fn phi_len(&self) -> usize {
        let h = self.hidden;
        12 * h * h + 17 * h + 1
    }

    /// Length of the per-coordinate state [h1, c1, h2, c2]: 4H.
    pub fn state_len(&self) -> usize {
        4 * self.hidden
    }
}

/// Offsets of the blocks of φ.
struct Layout {
    wx1: Range<usize>,
    wh1: Range<usize>,
    b1: Range<usize>,
    wx2: Range<usize>,
    wh2: Range<usize>,
    b2: Range<usize>,
    wo: Range<usize>,
    bo: usize,
}

impl Layout {
    fn new(h: usize) -> Self {
        let mut off = 0;
        let mut take = |n: usize| {
            let r = off..off + n;
            off += n;
            r
        };
        let wx1 = take(4 * h * 2);
        let wh1 = take(4 * h * h);
        let b1 = take(4 * h);
        let wx2 = take(4 * h * h);
        let wh2 = take(4 * h * h);
        let b2 = take(4 * h);
        let wo = take(h);
        let bo = take(1).start;
        Self {
            wx1,
            wh1,
            b1,
            wx2,
            wh2,
            b2,
            wo,
            bo,
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// sign(g), with 0 at g = 0.
fn sign(g: f64) -> f64 {
    if g > 0.0 {
        1.0
    } else if g < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `dst[r·v.len() + k] += a[r]·v[k]` (row-major outer product).
fn add_outer(dst: &mut [f64], a: &[f64], v: &[f64]) {
    for (row, &ar) in dst.chunks_exact_mut(v.len().max(1)).zip(a) {
        for (d, &vk) in row.iter_mut().zip(v) {
            *d += ar * vk;
        }
    }
}

/// `out[k] = Σ_r w[r·n + k]·a[r]` (transposed matrix-vector product), `n = out.len()`.
fn matvec_t(w: &[f64], a: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for (row, &ar) in w.chunks_exact(n.max(1)).zip(a) {
        for (o, &wk) in out.iter_mut().zip(row) {
            *o += wk * ar;
        }
    }
    out
}

/// One LSTM cell: weights of one layer.
struct Cell<'a> {
    hidden: usize,
    nin: usize,
    wx: &'a [f64],
    wh: &'a [f64],
    b: &'a [f64],
}

/// Activated gates and new cell of one step of a [`Cell`].
struct Gates {
    i: Vec<f64>,
    f: Vec<f64>,
    g: Vec<f64>,
    o: Vec<f64>,
    c_new: Vec<f64>,
    tanh_c: Vec<f64>,
}

impl Gates {
    fn h_new(&self) -> Vec<f64> {
        self.o
            .iter()
            .zip(&self.tanh_c)
            .map(|(o, t)| o * t)
            .collect()
    }
}

/// Cotangents of a cell's inputs, and of its pre-activations `a` (4H).
struct CellBar {
    x: Vec<f64>,
    h: Vec<f64>,
    c: Vec<f64>,
    a: Vec<f64>,
}

impl Cell<'_> {
    fn gates(&self, x: &[f64], h: &[f64], c: &[f64]) -> Gates {
        let (hd, nin) = (self.hidden, self.nin);
        let pre = |r: usize| {
            self.b[r]
                + dot(&self.wx[r * nin..(r + 1) * nin], x)
                + dot(&self.wh[r * hd..(r + 1) * hd], h)
        };
        let i: Vec<f64> = (0..hd).map(|j| sigmoid(pre(j))).collect();
        let f: Vec<f64> = (0..hd).map(|j| sigmoid(pre(hd + j))).collect();
        let g: Vec<f64> = (0..hd).map(|j| pre(2 * hd + j).tanh()).collect();
        let o: Vec<f64> = (0..hd).map(|j| sigmoid(pre(3 * hd + j))).collect();
        let c_new: Vec<f64> = (0..hd).map(|j| f[j] * c[j] + i[j] * g[j]).collect();
        let tanh_c = c_new.iter().map(|v| v.tanh()).collect();
        Gates {
            i,
            f,
            g,
            o,
            c_new,
            tanh_c,
        }
    }

    /// Reverse mode through one cell, recomputing the gates from (x, h, c).
    fn backward(
        &self,
        x: &[f64],
        h: &[f64],
        c: &[f64],
        h_new_bar: &[f64],
        c_new_bar: &[f64],
    ) -> CellBar {
        let hd = self.hidden;
        let gt = self.gates(x, h, c);
        let mut a = vec![0.0; 4 * hd];
        let mut c_bar = vec![0.0; hd];
        for j in 0..hd {
            let (i, f, g, o, t) = (gt.i[j], gt.f[j], gt.g[j], gt.o[j], gt.tanh_c[j]);
            let o_bar = h_new_bar[j] * t;
            let cn_bar = c_new_bar[j] + h_new_bar[j] * o * (1.0 - t * t);
            c_bar[j] = cn_bar * f;
            a[j] = cn_bar * g * i * (1.0 - i);
            a[hd + j] = cn_bar * c[j] * f * (1.0 - f);
            a[2 * hd + j] = cn_bar * i * (1.0 - g * g);
            a[3 * hd + j] = o_bar * o * (1.0 - o);
        }
        CellBar {
            x: matvec_t(self.wx, &a, self.nin),
            h: matvec_t(self.wh, &a, hd),
            c: c_bar,
            a,
        }
    }
}

fn cells<'a>(cfg: &LstmConfig, l: &Layout, phi: &'a [f64]) -> (Cell<'a>, Cell<'a>) {
    let hd = cfg.hidden;
    (
        Cell {
            hidden: hd,
            nin: 2,
            wx: &phi[l.wx1.clone()],
            wh: &phi[l.wh1.clone()],
            b: &phi[l.b1.clone()],
        },
        Cell {
            hidden: hd,
            nin: hd,
            wx: &phi[l.wx2.clone()],
            wh: &phi[l.wh2.clone()],
            b: &phi[l.b2.clone()],
        },
    )
}

fn check_lstm_lengths(cfg: &LstmConfig, phi: &[f64], state: &[f64]) {
    assert_eq!(phi.len(), cfg.phi_len(), "LSTM φ length");
    assert_eq!(state.len(), cfg.state_len(), "LSTM state length");
}

/// LogAndSign features of `g`: [clamp(ln(|g| + eps)/p, −1, 1), clamp(g·eᵖ, −1, 1)].
pub fn lstm_features(cfg: &LstmConfig, g: f64) -> [f64; 2] {
    [
        ((g.abs() + cfg.eps).ln() / cfg.p).clamp(-1.0, 1.0),
        (g * cfg.p.exp()).clamp(-1.0, 1.0),
    ]
}

/// Derivatives of the two features with respect to `g` (0 where the feature is clamped).
fn lstm_feature_grads(cfg: &LstmConfig, g: f64) -> [f64; 2] {
    let inside = |r: f64| r > -1.0 && r < 1.0;
    let r1 = (g.abs() + cfg.eps).ln() / cfg.p;
    let d1 = if inside(r1) {
        sign(g) / ((g.abs() + cfg.eps) * cfg.p)
    } else {
        0.0
    };
    let ep = cfg.p.exp();
    let d2 = if inside(g * ep) { ep } else { 0.0 };
    [d1, d2]
}

/// One step of the LSTM optimizer for one coordinate: returns the update u and the new state
/// [h1', c1', h2', c2'].
///
/// # Panics
/// If `phi.len() != cfg.phi_len()` or `state.len() != cfg.state_len()`.
pub fn lstm_step(cfg: &LstmConfig, phi: &[f64], g: f64, state: &[f64]) -> (f64, Vec<f64>) {
    check_lstm_lengths(cfg, phi, state);
    let hd = cfg.hidden;
    let l = Layout::new(hd);
    let (cell1, cell2) = cells(cfg, &l, phi);
    let (h1, c1) = (&state[0..hd], &state[hd..2 * hd]);
    let (h2, c2) = (&state[2 * hd..3 * hd], &state[3 * hd..4 * hd]);
    let x = lstm_features(cfg, g);
    let g1 = cell1.gates(&x, h1, c1);
    let h1n = g1.h_new();
    let g2 = cell2.gates(&h1n, h2, c2);
    let h2n = g2.h_new();
    let u = cfg.out_scale * (dot(&phi[l.wo.clone()], &h2n) + phi[l.bo]);
    let mut new_state = Vec::with_capacity(4 * hd);
    new_state.extend_from_slice(&h1n);
    new_state.extend_from_slice(&g1.c_new);
    new_state.extend_from_slice(&h2n);
    new_state.extend_from_slice(&g2.c_new);
    (u, new_state)
}

/// Cotangents returned by [`lstm_step_vjp`].
#[derive(Clone, Debug, PartialEq)]
pub struct LstmVjp {
    /// Cotangent of g, through the features: the clamp derivative is 0 unless the unclamped
    /// value is strictly inside (−1, 1), and d|g|/dg = sign(g) (0 at g = 0).
    pub g_bar: f64,
    /// Cotangent of the input state [h1, c1, h2, c2] (length 4H).
    pub state_bar: Vec<f64>,
    /// Cotangent of φ (length 12H² + 17H + 1, same layout as φ).
    pub phi_bar: Vec<f64>,
}

/// Exact VJP of (u, new_state) with respect to (g, state, phi), given cotangents `u_bar` and
/// `new_state_bar`: hand-written reverse mode through both cells, recomputing the gates from
/// the arguments.
///
/// # Panics
/// If `phi.len() != cfg.phi_len()`, or `state.len()` or `new_state_bar.len()` is not
/// `cfg.state_len()`.
pub fn lstm_step_vjp(
    cfg: &LstmConfig,
    phi: &[f64],
    g: f64,
    state: &[f64],
    u_bar: f64,
    new_state_bar: &[f64],
) -> LstmVjp {
    check_lstm_lengths(cfg, phi, state);
    assert_eq!(
        new_state_bar.len(),
        cfg.state_len(),
        "LSTM new-state cotangent length"
    );
    let hd = cfg.hidden;
    let l = Layout::new(hd);
    let (cell1, cell2) = cells(cfg, &l, phi);
    let (h1, c1) = (&state[0..hd], &state[hd..2 * hd]);
    let (h2, c2) = (&state[2 * hd..3 * hd], &state[3 * hd..4 * hd]);
    let nsb = |k: usize| &new_state_bar[k * hd..(k + 1) * hd];

    // Forward, as far as the backward pass needs it.
    let x = lstm_features(cfg, g);
    let h1n = cell1.gates(&x, h1, c1).h_new();
    let h2n = cell2.gates(&h1n, h2, c2).h_new();

    let mut phi_bar = vec![0.0; cfg.phi_len()];
    // Output: u = s·(wo·h2' + bo).
    let su = cfg.out_scale * u_bar;
    for (d, &v) in phi_bar[l.wo.clone()].iter_mut().zip(&h2n) {
        *d = su * v;
    }
    phi_bar[l.bo] = su;
    let h2n_bar: Vec<f64> = nsb(2)
        .iter()
        .zip(&phi[l.wo.clone()])
        .map(|(b, w)| b + su * w)
        .collect();

    // Layer 2.
    let bar2 = cell2.backward(&h1n, h2, c2, &h2n_bar, nsb(3));
    add_outer(&mut phi_bar[l.wx2.clone()], &bar2.a, &h1n);
    add_outer(&mut phi_bar[l.wh2.clone()], &bar2.a, h2);
    phi_bar[l.b2.clone()].copy_from_slice(&bar2.a);

    // Layer 1.
    let h1n_bar: Vec<f64> = nsb(0).iter().zip(&bar2.x).map(|(a, b)| a + b).collect();
    let bar1 = cell1.backward(&x, h1, c1, &h1n_bar, nsb(1));
    add_outer(&mut phi_bar[l.wx1.clone()], &bar1.a, &x);
    add_outer(&mut phi_bar[l.wh1.clone()], &bar1.a, h1);
    phi_bar[l.b1.clone()].copy_from_slice(&bar1.a);

    // Features.
    let dx = lstm_feature_grads(cfg, g);
    let g_bar = bar1.x[0] * dx[0] + bar1.x[1] * dx[1];

    let mut state_bar = Vec::with_capacity(4 * hd);
    state_bar.extend_from_slice(&bar1.h);
    state_bar.extend_from_slice(&bar1.c);
    state_bar.extend_from_slice(&bar2.h);
    state_bar.extend_from_slice(&bar2.c);
    LstmVjp {
        g_bar,
        state_bar,
        phi_bar,
    }
}

/// Initial φ for the LSTM optimizer, drawn in φ order: every entry of Wx1, Wh1, Wx2 and Wh2
/// ~ U(−1/√H, 1/√H); b1 and b2 zero except their forget-gate blocks f = [H..2H], set to 1;
/// wo ~ 0.1·U(−1/√H, 1/√H); bo = 0.
pub fn lstm_init_phi(cfg: &LstmConfig, rng: &mut impl rand::Rng) -> Vec<f64> {
    let hd = cfg.hidden;
    let l = Layout::new(hd);
    let k = 1.0 / (hd as f64).sqrt();
    let mut phi = vec![0.0; cfg.phi_len()];
    for r in [&l.wx1, &l.wh1] {
        for v in &mut phi[r.clone()] {
            *v = rng.random_range(-k..k);
        }
    }
    for v in &mut phi[l.b1.start + hd..l.b1.start + 2 * hd] {
        *v = 1.0;
    }
    for r in [&l.wx2, &l.wh2] {
        for v in &mut phi[r.clone()] {
            *v = rng.random_range(-k..k);
        }
    }
    for v in &mut phi[l.b2.start + hd..l.b2.start + 2 * hd] {
        *v = 1.0;
    }
    for v in &mut phi[l.wo.clone()] {
        *v = 0.1 * rng.random_range(-k..k);
    }
    phi
}

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

/// SGD update u = −lr·g.
pub fn sgd_step(lr: f64, g: f64) -> f64 {
    -lr * g
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
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
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
        assert_eq!(lstm_init_phi(&cfg, &mut rng).len(), 5141);
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
        let phi = lstm_init_phi(&cfg, &mut rng);
        let k = 1.0 / (hd as f64).sqrt();
        for r in [&l.wx1, &l.wh1, &l.wx2, &l.wh2] {
            assert!(phi[r.clone()].iter().all(|v| v.abs() < k));
            assert!(phi[r.clone()].iter().any(|v| *v != 0.0));
        }
        for b in [&l.b1, &l.b2] {
            let b = &phi[b.clone()];
            for (j, &v) in b.iter().enumerate() {
                let want = if (hd..2 * hd).contains(&j) { 1.0 } else { 0.0 };
                assert_eq!(v, want, "bias entry {j}");
            }
        }
        assert!(phi[l.wo.clone()].iter().all(|v| v.abs() < 0.1 * k));
        assert!(phi[l.wo.clone()].iter().any(|v| *v != 0.0));
        assert_eq!(phi[l.bo], 0.0);
    }

    #[test]
    fn lstm_zero_output_weights_give_scaled_bias() {
        let cfg = LstmConfig::default();
        let l = Layout::new(cfg.hidden);
        let mut rng = StdRng::seed_from_u64(11);
        let mut phi = lstm_init_phi(&cfg, &mut rng);
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
            let mut phi = lstm_init_phi(&cfg, &mut rng);
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

    #[test]
    fn sgd_step_is_minus_lr_g() {
        assert_eq!(sgd_step(0.1, 2.0), -0.2);
        assert_eq!(sgd_step(0.5, -3.0), 1.5);
    }

    #[test]
    fn adam_first_step_is_sign_like() {
        let cfg = AdamConfig::default();
        assert_eq!(
            cfg,
            AdamConfig {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8
            }
        );
        for g in [-3.0f64, -0.01, 0.2, 5.0] {
            let (u, [m, v]) = adam_step(&cfg, g, [0.0, 0.0], 0);
            let want = -cfg.lr * g / (g.abs() + cfg.eps);
            assert!((u - want).abs() < 1e-15, "g={g}: {u} vs {want}");
            assert!((m - 0.1 * g).abs() < 1e-15);
            assert!((v - 0.001 * g * g).abs() < 1e-15);
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
    fn adam_vjp_at_zero_second_moment_is_finite() {
        let cfg = AdamConfig::default();
        let (g_bar, s) = adam_step_vjp(&cfg, 0.0, [0.0, 0.0], 0, 1.0, [0.0, 0.0]);
        assert!(g_bar.is_finite() && s.iter().all(|v| v.is_finite()));
    }
}
