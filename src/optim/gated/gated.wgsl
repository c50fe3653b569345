// The gated optimizer: per coordinate of the fast weights W, a keep gate f, a write gate i and a
// proposed update ũ rewrite the medium-term part D = W − W_s (W_s: the static weights, where D
// starts at 0), after the gated "optimizer as an LSTM cell" of Ravi & Larochelle (2017):
//
//   x = (x1, x2, D/d_scale, h, 1)    x1 = clamp(ln(|g| + eps)/p, −1, 1), x2 = clamp(g·eᵖ, −1, 1)
//   z = A·x                         A: 4×5, φ row-major (rows f, i, ũ, h)
//   f = σ(z0)  i = σ(z1)  ũ = out_scale·tanh(z2)  h' = tanh(z3)
//   D' = f·D + i·ũ                  (W' = W_s + f·(W − W_s) + i·ũ)
//   u = D' − D = i·ũ − (1 − f)·D,  θ' = θ + u
//
// f = 1 keeps (COPY) the medium-term memory, f = 0 flushes it back to the static weights, i
// writes the proposal (UPDATE). State per coordinate: D and h (2 floats), φ shared by every
// coordinate (20 floats).
//
// Slots hold θ at slot[0..C], D at slot[C..2C], h at slot[2C..3C] for the C = N·P coordinates.
//
// gated_step:  the equations above for i < C (φ of block i / phi_block when given per block).
// gated_vjp:   reverse of one step, in place: ū = θ̄ (adjoint of θ'), s̄ = (D̄', h̄'):
//     a = D̄' + ū;  z̄ = (a·D·f(1−f), a·ũ·i(1−i), a·i·out_scale·(1 − tanh² z2), h̄'·(1 − h'²))
//     φ̄ += z̄ xᵀ;  x̄ = Aᵀ z̄
//     D̄ = f·D̄' − (1 − f)·ū + x̄2/d_scale (= a·f − ū),  h̄ = x̄3,  θ̄ = ū + w·g (θ enters only through the identity)
//     second order (so = 1): ḡ = x̄0·∂x1/∂g + x̄1·∂x2/∂g (0 where a feature is clamped).
//   φ̄ is reduced deterministically: `groups` workgroups each stride over coordinates
//   (i = wg·256 + l, then + groups·256), sum in registers, reduce by a fixed tree, one component
//   at a time; the workgroup writes its 20 sums to partials[wg·20 + k] (added to the previous
//   value when accumulate = 1).
//
// `p: Params` and the storage bindings are declared from src/optim/gated/mod.rs.

const ROWS: u32 = 4u;
const FEATS: u32 = 5u;

var<workgroup> red: array<f32, 256>;

fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

struct Fwd {
    x: array<f32, 5>,
    z: array<f32, 4>,
    f: f32,
    omf: f32,
    ig: f32,
    ut: f32,
    h: f32,
    d: f32,
    u: f32,
}

fn forward(o: u32, gi: f32, d: f32, h: f32) -> Fwd {
    var r: Fwd;
    r.x[0] = clamp(log(abs(gi) + p.eps) / p.logp, -1.0, 1.0);
    r.x[1] = clamp(gi * exp(p.logp), -1.0, 1.0);
    r.x[2] = d / p.d_scale;
    r.x[3] = h;
    r.x[4] = 1.0;
    for (var k = 0u; k < ROWS; k++) {
        var s = 0.0;
        for (var m = 0u; m < FEATS; m++) { s = fma(phi[o + k * FEATS + m], r.x[m], s); }
        r.z[k] = s;
    }
    r.f = sigm(r.z[0]);
    // 1 − f from its own sigmoid: with f near 1 (keeping), 1 − f in f32 would lose digits.
    r.omf = sigm(-r.z[0]);
    r.ig = sigm(r.z[1]);
    r.ut = p.out_scale * tanh(clamp(r.z[2], -15.0, 15.0));
    r.h = tanh(clamp(r.z[3], -15.0, 15.0));
    r.d = r.f * d + r.ig * r.ut;
    // u = i·ũ − (1 − f)·D directly, not D' − D (which cancels where D is large).
    r.u = r.ig * r.ut - r.omf * d;
    return r;
}

@compute @workgroup_size(256)
fn gated_step(grid: Grid) {
    let i = flat_index(grid);
    let c = p.count;
    if (i >= c) { return; }
    let d = slot_in[c + i];
    let r = forward(phi_block_offset(p.phi_off, i, p.phi_block, p.phi_stride), g[i], d, slot_in[2u * c + i]);
    slot_out[i] = slot_in[i] + r.u;
    slot_out[c + i] = r.d;
    slot_out[2u * c + i] = r.h;
}

// One coordinate's reverse from the slot, g, θ̄ and s̄ (read only).
struct Rev {
    x: array<f32, 5>,
    zb: array<f32, 4>,
    xb: array<f32, 5>,
    a: f32,
    f: f32,
    omf: f32,
}

fn reverse(i: u32) -> Rev {
    let c = p.count;
    let d = slot_in[c + i];
    let r = forward(p.phi_off, g[i], d, slot_in[2u * c + i]);
    var v: Rev;
    v.x = r.x;
    v.f = r.f;
    v.omf = r.omf;
    v.a = sbar[i] + tbar[i];
    let th2 = tanh(clamp(r.z[2], -15.0, 15.0));
    v.zb[0] = v.a * d * r.f * r.omf;
    v.zb[1] = v.a * r.ut * r.ig * (1.0 - r.ig);
    v.zb[2] = v.a * r.ig * p.out_scale * (1.0 - th2 * th2);
    v.zb[3] = sbar[c + i] * (1.0 - r.h * r.h);
    for (var m = 0u; m < FEATS; m++) {
        var s = 0.0;
        for (var k = 0u; k < ROWS; k++) { s = fma(v.zb[k], phi[p.phi_off + k * FEATS + m], s); }
        v.xb[m] = s;
    }
    return v;
}

// The reverse over the workgroup's coordinates (θ̄, s̄ in place) and its φ̄ partial sums.
fn vjp_groups(wg: u32, li: u32) {
    let c = p.count;
    var acc: array<f32, 20>;
    for (var i = wg * 256u + li; i < c; i += p.groups * 256u) {
        let v = reverse(i);
        for (var k = 0u; k < ROWS; k++) {
            for (var m = 0u; m < FEATS; m++) {
                acc[k * FEATS + m] = fma(v.zb[k], v.x[m], acc[k * FEATS + m]);
            }
        }
        let ub = tbar[i];
        tbar[i] = ub + p.w * g[i];
        // a·f − ū = f·D̄' − (1 − f)·ū, written so that it does not cancel where f is near 1.
        sbar[i] = v.f * sbar[i] - v.omf * ub + v.xb[2] / p.d_scale;
        sbar[c + i] = v.xb[3];
    }
    for (var k = 0u; k < ROWS * FEATS; k++) {
        red[li] = acc[k];
        workgroupBarrier();
        for (var s = 128u; s > 0u; s >>= 1u) {
            if (li < s) { red[li] = red[li] + red[li + s]; }
            workgroupBarrier();
        }
        if (li == 0u) {
            let o = wg * ROWS * FEATS + k;
            var v = red[0];
            if (p.accumulate != 0u) { v = partials[o] + v; }
            partials[o] = v;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn gated_vjp(grid: Grid) {
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    vjp_groups(wg, grid.li);
}

// ḡ first (from θ̄ and s̄ before the reverse overwrites them in place), then the same reverse.
@compute @workgroup_size(256)
fn gated_vjp_so(grid: Grid) {
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let ep = exp(p.logp);
    for (var i = wg * 256u + grid.li; i < p.count; i += p.groups * 256u) {
        let gi = g[i];
        let v = reverse(i);
        let r1 = log(abs(gi) + p.eps) / p.logp;
        var d1 = 0.0;
        if (abs(r1) < 1.0) { d1 = sign(gi) / ((abs(gi) + p.eps) * p.logp); }
        var d2 = 0.0;
        if (abs(gi * ep) < 1.0) { d2 = ep; }
        gbar[i] = v.xb[0] * d1 + v.xb[1] * d2;
    }
    vjp_groups(wg, grid.li);
}
