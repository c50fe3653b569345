// The coordinatewise 2-layer LSTM optimizer of "Learning to learn by gradient descent by gradient
// descent" (H = 20 hidden units per layer), fused: one invocation per coordinate, φ shared.
//
// Features (LogAndSign, p = logp):  x1 = clamp(ln(|g| + eps)/p, −1, 1),  x2 = clamp(g·eᵖ, −1, 1)
// Cell(x, h, c; Wx, Wh, b):  a = Wx·x + Wh·h + b  (4H rows, gate blocks i | f | g̃ | o)
//     i = σ(a_i), f = σ(a_f), g̃ = tanh(a_g), o = σ(a_o);  c' = f⊙c + i⊙g̃;  h' = o⊙tanh(c')
// Step:  (h1', c1') = Cell(x, h1, c1; Wx1, Wh1, b1);  (h2', c2') = Cell(h1', h2, c2; Wx2, Wh2, b2)
//        u = out_scale·(wo·h2' + bo);  θ' = θ + u
// φ at phi[phi_off + …], row-major (row = gate unit), in order:
//     Wx1 [4H×2] @0, Wh1 [4H×H] @160, b1 [4H] @1760, Wx2 [4H×H] @1840, Wh2 [4H×H] @3440,
//     b2 [4H] @5040, wo [H] @5120, bo @5140;  5141 floats.
// Slots: θ of the C coordinates at slot[0..C], then the state struct-of-arrays:
//     slot[C + k·C + i], k < 4H: h1 = k ∈ [0, H), c1 = [H, 2H), h2 = [2H, 3H), c2 = [3H, 4H).
//
// lstm_step: slot_out ← step(slot_in, g).
// lstm_vjp:  reverse of one step. Given ū = θ̄ (the adjoint of θ') and s̄' (adjoints of the new
//   state), in place: θ̄_i ← ū_i + w·g_i (the meta-loss term; the LSTM has no θ input) and
//   s̄ ← adjoint of the old state; φ̄ partial sums. The gates are recomputed from (x, h, c) — no
//   activation of the forward pass is stored. Persistent workgroups (`groups` of them) take tiles
//   of WG coordinates (tile = wg, wg + groups, …); per tile, each invocation back-propagates its
//   coordinate through both cells, stages the factors of its φ̄ outer products in workgroup
//   memory (layer 2 and output first, then layer 1), and each φ̄ entry e is summed over the tile
//   by invocation (e − start) mod WG into acc[e] (workgroup memory). The sums run in a fixed
//   order; at the end partials[wg·5141 + e] = acc[e] (+ the previous value when accumulate = 1).
//   The g-path adjoint (x̄ → ḡ, for second-order mode) is not formed here.

const H: u32 = 20u;
const G: u32 = 80u;
const WX1: u32 = 0u;
const WH1: u32 = 160u;
const B1: u32 = 1760u;
const WX2: u32 = 1840u;
const WH2: u32 = 3440u;
const B2: u32 = 5040u;
const WO: u32 = 5120u;
const BO: u32 = 5140u;
const PHI_LEN: u32 = 5141u;
// Staged per coordinate: phase A = ā2 (80) | h1' (20) | h2 (20) | h2' (20) | s·ū (1);
// phase B = ā1 (80) | x (2) | h1 (20).
const STAGE: u32 = 141u;

override WG: u32 = 32u;

struct Params {
    count: u32, groups: u32, phi_off: u32, accumulate: u32,
    w: f32, logp: f32, eps: f32, out_scale: f32,
}

@group(1) @binding(0) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> slot_in: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> phi: array<f32>;
// lstm_step
@group(0) @binding(3) var<storage, read_write> slot_out: array<f32>;
// lstm_vjp
@group(0) @binding(3) var<storage, read_write> tbar: array<f32>;
@group(0) @binding(4) var<storage, read_write> sbar: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

var<workgroup> stage: array<f32, WG * STAGE>;
var<workgroup> acc: array<f32, PHI_LEN>;

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }

fn features(gi: f32) -> vec2<f32> {
    let x1 = clamp(log(abs(gi) + p.eps) / p.logp, -1.0, 1.0);
    let x2 = clamp(gi * exp(p.logp), -1.0, 1.0);
    return vec2<f32>(x1, x2);
}

// Pre-activation of gate row r: b[r] + Σ_k Wx[r,k]·x[k] (k < nx) + Σ_k Wh[r,k]·h[k].
fn preact(r: u32, wx: u32, nx: u32, x: array<f32, 20>, wh: u32, h: array<f32, 20>, b: u32) -> f32 {
    var a = phi[p.phi_off + b + r];
    for (var k = 0u; k < nx; k++) { a = fma(phi[p.phi_off + wx + r * nx + k], x[k], a); }
    for (var k = 0u; k < H; k++) { a = fma(phi[p.phi_off + wh + r * H + k], h[k], a); }
    return a;
}

struct Cell { h: array<f32, 20>, c: array<f32, 20> }

fn cell_fwd(wx: u32, nx: u32, x: array<f32, 20>, wh: u32, h: array<f32, 20>, c: array<f32, 20>, b: u32) -> Cell {
    var out: Cell;
    for (var k = 0u; k < H; k++) {
        let i = sigmoid(preact(k, wx, nx, x, wh, h, b));
        let f = sigmoid(preact(H + k, wx, nx, x, wh, h, b));
        let gg = tanh_(preact(2u * H + k, wx, nx, x, wh, h, b));
        let o = sigmoid(preact(3u * H + k, wx, nx, x, wh, h, b));
        let cn = f * c[k] + i * gg;
        out.c[k] = cn;
        out.h[k] = o * tanh_(cn);
    }
    return out;
}

struct CellBack {
    abar: array<f32, 80>,  // adjoint of the pre-activations a
    hbar: array<f32, 20>,  // adjoint of the old h
    cbar: array<f32, 20>,  // adjoint of the old c
    xbar: array<f32, 20>,  // adjoint of the input x (first nx entries)
}

// Back through one cell, recomputing its gates; hb, cb are the adjoints of (h', c').
fn cell_bwd(wx: u32, nx: u32, x: array<f32, 20>, wh: u32, h: array<f32, 20>, c: array<f32, 20>, b: u32,
            hb: array<f32, 20>, cb: array<f32, 20>) -> CellBack {
    var out: CellBack;
    for (var k = 0u; k < H; k++) {
        let i = sigmoid(preact(k, wx, nx, x, wh, h, b));
        let f = sigmoid(preact(H + k, wx, nx, x, wh, h, b));
        let gg = tanh_(preact(2u * H + k, wx, nx, x, wh, h, b));
        let o = sigmoid(preact(3u * H + k, wx, nx, x, wh, h, b));
        let tc = tanh_(f * c[k] + i * gg);
        let ob = hb[k] * tc;
        let ct = cb[k] + hb[k] * o * (1.0 - tc * tc);
        out.abar[k] = ct * gg * i * (1.0 - i);
        out.abar[H + k] = ct * c[k] * f * (1.0 - f);
        out.abar[2u * H + k] = ct * i * (1.0 - gg * gg);
        out.abar[3u * H + k] = ob * o * (1.0 - o);
        out.cbar[k] = ct * f;
    }
    for (var k = 0u; k < H; k++) {
        var s = 0.0;
        for (var r = 0u; r < G; r++) { s = fma(phi[p.phi_off + wh + r * H + k], out.abar[r], s); }
        out.hbar[k] = s;
    }
    for (var k = 0u; k < nx; k++) {
        var s = 0.0;
        for (var r = 0u; r < G; r++) { s = fma(phi[p.phi_off + wx + r * nx + k], out.abar[r], s); }
        out.xbar[k] = s;
    }
    return out;
}

struct State { h1: array<f32, 20>, c1: array<f32, 20>, h2: array<f32, 20>, c2: array<f32, 20> }

fn load_state(i: u32) -> State {
    var s: State;
    let c = p.count;
    for (var k = 0u; k < H; k++) {
        s.h1[k] = slot_in[c + k * c + i];
        s.c1[k] = slot_in[c + (H + k) * c + i];
        s.h2[k] = slot_in[c + (2u * H + k) * c + i];
        s.c2[k] = slot_in[c + (3u * H + k) * c + i];
    }
    return s;
}

fn input_of(gi: f32) -> array<f32, 20> {
    var x: array<f32, 20>;
    let f = features(gi);
    x[0] = f.x;
    x[1] = f.y;
    return x;
}

@compute @workgroup_size(64)
fn lstm_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = (wid.x + wid.y * nwg.x) * 64u + li;
    if (i >= p.count) { return; }
    let gi = g[i];
    let s = load_state(i);
    let l1 = cell_fwd(WX1, 2u, input_of(gi), WH1, s.h1, s.c1, B1);
    let l2 = cell_fwd(WX2, H, l1.h, WH2, s.h2, s.c2, B2);
    var u = phi[p.phi_off + BO];
    for (var k = 0u; k < H; k++) { u = fma(phi[p.phi_off + WO + k], l2.h[k], u); }
    let c = p.count;
    slot_out[i] = slot_in[i] + p.out_scale * u;
    for (var k = 0u; k < H; k++) {
        slot_out[c + k * c + i] = l1.h[k];
        slot_out[c + (H + k) * c + i] = l1.c[k];
        slot_out[c + (2u * H + k) * c + i] = l2.h[k];
        slot_out[c + (3u * H + k) * c + i] = l2.c[k];
    }
}

@compute @workgroup_size(WG)
fn lstm_vjp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let wg = wid.x + wid.y * nwg.x;
    if (wg >= p.groups) { return; }
    let c = p.count;
    for (var e = li; e < PHI_LEN; e += WG) { acc[e] = 0.0; }
    workgroupBarrier();
    let tiles = (c + WG - 1u) / WG;
    for (var tile = wg; tile < tiles; tile += p.groups) {
        let i = tile * WG + li;
        let valid = i < c;
        let base = li * STAGE;
        // Forward recompute and layer-2 / output backward (zeros for invalid lanes).
        var gi = 0.0;
        var s: State;
        var ub = 0.0;
        var hb1: array<f32, 20>;
        var cb1: array<f32, 20>;
        var hb2: array<f32, 20>;
        var cb2: array<f32, 20>;
        if (valid) {
            gi = g[i];
            s = load_state(i);
            ub = tbar[i];
            for (var k = 0u; k < H; k++) {
                hb1[k] = sbar[k * c + i];
                cb1[k] = sbar[(H + k) * c + i];
                hb2[k] = sbar[(2u * H + k) * c + i];
                cb2[k] = sbar[(3u * H + k) * c + i];
            }
        }
        let x = input_of(gi);
        let l1 = cell_fwd(WX1, 2u, x, WH1, s.h1, s.c1, B1);
        let l2 = cell_fwd(WX2, H, l1.h, WH2, s.h2, s.c2, B2);
        let su = select(0.0, p.out_scale * ub, valid);
        for (var k = 0u; k < H; k++) { hb2[k] = fma(su, phi[p.phi_off + WO + k], hb2[k]); }
        let b2 = cell_bwd(WX2, H, l1.h, WH2, s.h2, s.c2, B2, hb2, cb2);
        for (var r = 0u; r < G; r++) { stage[base + r] = select(0.0, b2.abar[r], valid); }
        for (var k = 0u; k < H; k++) {
            stage[base + G + k] = l1.h[k];
            stage[base + G + H + k] = s.h2[k];
            stage[base + G + 2u * H + k] = l2.h[k];
        }
        stage[base + G + 3u * H] = su;
        workgroupBarrier();
        // φ̄ of layer 2 and the output: entries [WX2, PHI_LEN).
        for (var e = WX2 + li; e < PHI_LEN; e += WG) {
            var sum = 0.0;
            if (e < WH2) {
                let r = (e - WX2) / H; let k = (e - WX2) % H;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + r], stage[q * STAGE + G + k], sum); }
            } else if (e < B2) {
                let r = (e - WH2) / H; let k = (e - WH2) % H;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + r], stage[q * STAGE + G + H + k], sum); }
            } else if (e < WO) {
                let r = e - B2;
                for (var q = 0u; q < WG; q++) { sum += stage[q * STAGE + r]; }
            } else if (e < BO) {
                let k = e - WO;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + G + 3u * H], stage[q * STAGE + G + 2u * H + k], sum); }
            } else {
                for (var q = 0u; q < WG; q++) { sum += stage[q * STAGE + G + 3u * H]; }
            }
            acc[e] += sum;
        }
        workgroupBarrier();
        // Layer-1 backward.
        for (var k = 0u; k < H; k++) { hb1[k] += b2.xbar[k]; }
        let b1 = cell_bwd(WX1, 2u, x, WH1, s.h1, s.c1, B1, hb1, cb1);
        for (var r = 0u; r < G; r++) { stage[base + r] = select(0.0, b1.abar[r], valid); }
        stage[base + G] = x[0];
        stage[base + G + 1u] = x[1];
        for (var k = 0u; k < H; k++) { stage[base + G + 2u + k] = s.h1[k]; }
        if (valid) {
            tbar[i] = ub + p.w * gi;
            for (var k = 0u; k < H; k++) {
                sbar[k * c + i] = b1.hbar[k];
                sbar[(H + k) * c + i] = b1.cbar[k];
                sbar[(2u * H + k) * c + i] = b2.hbar[k];
                sbar[(3u * H + k) * c + i] = b2.cbar[k];
            }
        }
        workgroupBarrier();
        // φ̄ of layer 1: entries [0, WX2).
        for (var e = li; e < WX2; e += WG) {
            var sum = 0.0;
            if (e < WH1) {
                let r = e / 2u; let k = e % 2u;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + r], stage[q * STAGE + G + k], sum); }
            } else if (e < B1) {
                let r = (e - WH1) / H; let k = (e - WH1) % H;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + r], stage[q * STAGE + G + 2u + k], sum); }
            } else {
                let r = e - B1;
                for (var q = 0u; q < WG; q++) { sum += stage[q * STAGE + r]; }
            }
            acc[e] += sum;
        }
        workgroupBarrier();
    }
    for (var e = li; e < PHI_LEN; e += WG) {
        let o = wg * PHI_LEN + e;
        var v = acc[e];
        if (p.accumulate != 0u) { v = partials[o] + v; }
        partials[o] = v;
    }
}
