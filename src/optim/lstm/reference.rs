//! f64 reference of the coordinatewise 2-layer LSTM optimizer (L2L): the step and its exact
//! vector-Jacobian product (VJP) for one coordinate (θ' = θ + u).
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
//! Init ([`super::init_phi`], the one initialisation of the GPU path and the tests): Wx1, Wh1, Wx2, Wh2 ~ U(−1/√H, 1/√H); b1, b2 = 0 except their
//! forget-gate blocks = 1; wo ~ 0.1·U(−1/√H, 1/√H); bo = 0.
//!
//! VJP conventions: the derivative of clamp(r, −1, 1) is dr/dg when −1 < r < 1 and 0 otherwise;
//! d|g|/dg = sign(g), with 0 at g = 0.

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
pub fn lstm_feature_grads(cfg: &LstmConfig, g: f64) -> [f64; 2] {
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

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
