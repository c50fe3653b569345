// The coordinatewise 2-layer LSTM optimizer of "Learning to learn by gradient descent by gradient
// descent" (H = 20 hidden units per layer), fused; φ shared by all coordinates.
//
// Features (LogAndSign, p = logp):  x1 = clamp(ln(|g| + eps)/p, −1, 1),  x2 = clamp(g·eᵖ, −1, 1)
// Cell(x, h, c; Wx, Wh, b):  a = Wx·x + Wh·h + b  (4H rows, gate blocks i | f | g̃ | o)
//     i = σ(a_i), f = σ(a_f), g̃ = tanh(a_g), o = σ(a_o);  c' = f⊙c + i⊙g̃;  h' = o⊙tanh(c')
//     (tanh clamps its argument to ±15).
// Step:  (h1', c1') = Cell(x, h1, c1; Wx1, Wh1, b1);  (h2', c2') = Cell(h1', h2, c2; Wx2, Wh2, b2)
//        u = out_scale·(wo·h2' + bo);  θ' = θ + u
// Reverse of a cell, given h̄', c̄' (adjoints of h', c'):  ct = c̄' + h̄'·o·(1 − tanh²c');
//     ā_i = ct·g̃·i(1−i), ā_f = ct·c·f(1−f), ā_g = ct·i·(1−g̃²), ā_o = h̄'·tanh(c')·o(1−o);
//     c̄ = ct·f, h̄ = Whᵀā, x̄ = Wxᵀā;  φ̄ += ā·[x | h | 1]ᵀ per coordinate.
//     Output: h̄2' += s·ū·wo (s = out_scale), w̄o += s·ū·h2', b̄o += s·ū; layer 1 gets h̄1' += x̄2.
// φ at phi[phi_off + …], row-major (row = gate row), in order:
//     Wx1 [4H×2] @0, Wh1 [4H×H] @160, b1 [4H] @1760, Wx2 [4H×H] @1840, Wh2 [4H×H] @3440,
//     b2 [4H] @5040, wo [H] @5120, bo @5140;  5141 floats. Every 20-float row starts at a
//     multiple of 4 and is read as 5 vec4s.
// Slots: θ of the C coordinates at slot[0..C], then the state struct-of-arrays:
//     slot[C + k·C + i], k < 4H: h1 = k ∈ [0, H), c1 = [H, 2H), h2 = [2H, 3H), c2 = [3H, 4H).
//
// Work mapping (both kernels). Five invocations share a coordinate: invocation m = li / T owns
// the units 4m..4m+3 of each layer (16 gate rows: i, f, g̃, o of 4 units) and coordinate q = li % T
// of a tile of T coordinates (T = 32: each subgroup of 32 holds one m, so φ addresses are uniform
// within it and φ reads are broadcasts). The state of a coordinate lives in registers as vec4s of
// 4 units (code with constant indices, no dynamically indexed private array); a gate row's
// pre-activation is 5 (layer 1) or 2 × 5 (layer 2) vec4 FMAs against φ rows plus a horizontal
// sum. h1' is exchanged through workgroup memory. Workgroups are persistent (`groups` of them,
// tile = wg, wg + groups, …) and first copy φ into workgroup memory as 1286 vec4s (override
// PHI_WG = 1, PHI_V4 = 1286); where the adapter's workgroup memory is too small the overrides
// are PHI_WG = 0, PHI_V4 = 1 and φ is read from the storage buffer at the same uniform addresses.
//
// lstm_step: slot_out ← step(slot_in, g). T = 32 (160 invocations); invocation m writes its
//   units' (h1', c1', h2', c2') and its part of wo·h2'; m = 0 adds the five parts in order and
//   writes θ'. With φ per block of coordinates (phi_block > 0, the particles of an evolution-
//   strategies estimate) it runs with PHI_WG = 0 and each coordinate reads its block's φ.
// lstm_vjp:  reverse of one step. Given ū = θ̄ (the adjoint of θ') and s̄' (adjoints of the new
//   state), in place: θ̄_i ← ū_i + w·g_i (the meta-loss term; the LSTM has no θ input) and
//   s̄ ← adjoint of the old state; φ̄ partial sums. No activation of the forward pass is stored;
//   each unit's gates are computed once per layer (layer 1 twice: forward for h1', then in its
//   reverse). T (override: 32, 16 or 8, 5·T invocations) is chosen with PHI_WG from the
//   adapter's workgroup memory: 37 vec4s per coordinate (+ φ). Per tile:
//     1. layer-1 forward of the own units; h1' and h2 go to the b columns of the stage;
//     2. layer-2 reverse of the own units → ā2 (staged), c̄2, h2' (staged); s·ū staged;
//     3. (barrier) own columns of Wh2ᵀā2 → s̄ of h2 and of Wx2ᵀā2 → h̄1' (80 rows each, from
//        the staged ā2); φ̄ of layer 2 and output;
//     4. (barrier) layer-1 reverse of the own units → ā1 (staged), c̄1; h1, x staged;
//     5. (barrier) own columns of Wh1ᵀā1 → s̄ of h1; φ̄ of layer 1; barrier.
//   Stage per coordinate (vec4s): ā (20) | b (10: h1' | h2, or h1 | x) | h2' (5) | s·ū | pad.
//   φ̄ of a layer is Σ_q ā_qᵀ·[b_q | 1] over the tile: each invocation owns fixed 4×4 blocks
//   (4 gate rows × 4 columns; 2 vec4 loads per 16 FMAs, q = 0..T−1 in order) and the bias / wo /
//   bo / Wx1 strips, and adds them to its workgroup's partials[wg·5141 + e] in global memory (the
//   first tile of a workgroup stores instead of adding when accumulate = 0; a workgroup without
//   tiles stores zeros). Every sum runs in a fixed order that depends only on (C, groups, T), so
//   results are deterministic. Invalid lanes of the last tile compute on coordinate C−1, stage
//   ā = 0 and s·ū = 0, and write nothing.
// lstm_vjp_so: lstm_vjp, also writing the gradient input's adjoint (second-order mode):
//     x̄ = Wx1ᵀā1 (each invocation sums its 16 gate rows in step 4 and stages the part where h2'
//     was; after the barrier m = 0 adds the five parts in order),
//     ḡ = x̄1·dx1/dg + x̄2·dx2/dg,  dx1/dg = sign(g)/((|g| + eps)·p),  dx2/dg = eᵖ,
//     each 0 where its feature is clamped (unclamped value outside (−1, 1)).
//
// `p: Params` and the storage bindings are declared from src/optim/lstm/kernels.rs.

const H: u32 = 20u;
const WX1: u32 = 0u;
const WH1: u32 = 160u;
const B1: u32 = 1760u;
const WX2: u32 = 1840u;
const WH2: u32 = 3440u;
const B2: u32 = 5040u;
const WO: u32 = 5120u;
const BO: u32 = 5140u;
const PHI_LEN: u32 = 5141u;
// φ as vec4s in workgroup memory (the last one holds bo and three zeros).
const PHI_VECS: u32 = 1286u;
// vec4s staged per coordinate by the reverse kernel, and where: ā (20) | b (10) | h2' (5) | su,
// and one vec4 of padding (an odd stride keeps the per-coordinate reads free of bank conflicts).
const SV: u32 = 37u;
const S_B: u32 = 20u;
const S_HO: u32 = 30u;
const S_SU: u32 = 35u;

// Coordinates per tile of the reverse kernel (its workgroups have 5·T invocations; the forward
// kernel always uses 32).
override T: u32 = 32u;
// 1: φ is staged in workgroup memory (PHI_V4 = 1286); 0: read from the storage buffer (PHI_V4 = 1).
override PHI_WG: u32 = 1u;
override PHI_V4: u32 = 1286u;

var<workgroup> wphi: array<vec4<f32>, PHI_V4>;
var<workgroup> stage: array<vec4<f32>, T * SV>;

alias V5 = array<vec4<f32>, 5>;

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }

fn features(gi: f32) -> vec2<f32> {
    let x1 = clamp(log(abs(gi) + p.eps) / p.logp, -1.0, 1.0);
    let x2 = clamp(gi * exp(p.logp), -1.0, 1.0);
    return vec2<f32>(x1, x2);
}

// Stage φ in workgroup memory (every invocation of the workgroup calls this, `n` of them).
fn load_phi(li: u32, n: u32) {
    if (PHI_WG != 0u) {
        for (var v = li; v < PHI_VECS; v += n) {
            let b = p.phi_off + 4u * v;
            if (v + 1u < PHI_VECS) {
                wphi[v] = vec4<f32>(phi[b], phi[b + 1u], phi[b + 2u], phi[b + 3u]);
            } else {
                wphi[v] = vec4<f32>(phi[b], 0.0, 0.0, 0.0);
            }
        }
    }
    workgroupBarrier();
}

// Where φ starts in the buffer when it is not staged: p.phi_off, or the current coordinate's
// block's φ (lstm_step with φ per block of coordinates, which runs with PHI_WG = 0).
var<private> phi_base: u32;

// φ[o..o + 4] (o a multiple of 4) and φ[o].
fn w4(o: u32) -> vec4<f32> {
    if (PHI_WG != 0u) { return wphi[o >> 2u]; }
    let b = phi_base + o;
    return vec4<f32>(phi[b], phi[b + 1u], phi[b + 2u], phi[b + 3u]);
}
fn w1(o: u32) -> f32 {
    if (PHI_WG != 0u) { return wphi[o >> 2u][o & 3u]; }
    return phi[phi_base + o];
}

// a[m] without indexing a private array dynamically.
fn pick(a: V5, m: u32) -> vec4<f32> {
    return select(select(select(select(a[0], a[1], m == 1u), a[2], m == 2u), a[3], m == 3u), a[4], m == 4u);
}

fn hsum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

// Σ_k φ[o + k]·h[k], k < 20, as vec4 partial sums.
fn dot20(o: u32, h: V5, acc: vec4<f32>) -> vec4<f32> {
    var v = fma(w4(o), h[0], acc);
    v = fma(w4(o + 4u), h[1], v);
    v = fma(w4(o + 8u), h[2], v);
    v = fma(w4(o + 12u), h[3], v);
    return fma(w4(o + 16u), h[4], v);
}

// Pre-activations of gate row r: layer 1 (input x) and layer 2 (input h1').
fn pre1(r: u32, x: vec2<f32>, h: V5) -> f32 {
    let v = dot20(WH1 + r * H, h, vec4<f32>(0.0));
    return w1(B1 + r) + fma(w1(WX1 + 2u * r), x.x, w1(WX1 + 2u * r + 1u) * x.y) + hsum(v);
}
fn pre2(r: u32, x: V5, h: V5) -> f32 {
    let v = dot20(WH2 + r * H, h, dot20(WX2 + r * H, x, vec4<f32>(0.0)));
    return w1(B2 + r) + hsum(v);
}

// Gates of one unit: i, f, g̃, o and tanh(c').
struct Gates { i: f32, f: f32, g: f32, o: f32, tc: f32 }

fn gates(a: vec4<f32>, c: f32) -> Gates {
    var s: Gates;
    s.i = sigmoid(a.x);
    s.f = sigmoid(a.y);
    s.g = tanh_(a.z);
    s.o = sigmoid(a.w);
    s.tc = tanh_(s.f * c + s.i * s.g);
    return s;
}

fn unit1(k: u32, x: vec2<f32>, h: V5, c: f32) -> Gates {
    return gates(vec4<f32>(pre1(k, x, h), pre1(H + k, x, h), pre1(2u * H + k, x, h), pre1(3u * H + k, x, h)), c);
}
fn unit2(k: u32, x: V5, h: V5, c: f32) -> Gates {
    return gates(vec4<f32>(pre2(k, x, h), pre2(H + k, x, h), pre2(2u * H + k, x, h), pre2(3u * H + k, x, h)), c);
}

// Forward of units 4m..4m+3: (h', c') as vec4s.
struct Out4 { h: vec4<f32>, c: vec4<f32> }

fn out4(u0: Gates, u1: Gates, u2: Gates, u3: Gates, c: vec4<f32>) -> Out4 {
    let i = vec4<f32>(u0.i, u1.i, u2.i, u3.i);
    let f = vec4<f32>(u0.f, u1.f, u2.f, u3.f);
    let gg = vec4<f32>(u0.g, u1.g, u2.g, u3.g);
    let o = vec4<f32>(u0.o, u1.o, u2.o, u3.o);
    let tc = vec4<f32>(u0.tc, u1.tc, u2.tc, u3.tc);
    return Out4(o * tc, f * c + i * gg);
}
fn fwd1(m: u32, x: vec2<f32>, h: V5, c: vec4<f32>) -> Out4 {
    let k = 4u * m;
    return out4(unit1(k, x, h, c.x), unit1(k + 1u, x, h, c.y), unit1(k + 2u, x, h, c.z), unit1(k + 3u, x, h, c.w), c);
}
fn fwd2(m: u32, x: V5, h: V5, c: vec4<f32>) -> Out4 {
    let k = 4u * m;
    return out4(unit2(k, x, h, c.x), unit2(k + 1u, x, h, c.y), unit2(k + 2u, x, h, c.z), unit2(k + 3u, x, h, c.w), c);
}

// State entries k0..k0+3 of coordinate i (slot_in / sbar / slot_out).
fn st4(k0: u32, i: u32) -> vec4<f32> {
    let c = p.count;
    let b = c + k0 * c + i;
    return vec4<f32>(slot_in[b], slot_in[b + c], slot_in[b + 2u * c], slot_in[b + 3u * c]);
}
fn st5(k0: u32, i: u32) -> V5 {
    return V5(st4(k0, i), st4(k0 + 4u, i), st4(k0 + 8u, i), st4(k0 + 12u, i), st4(k0 + 16u, i));
}
fn put4(k0: u32, i: u32, v: vec4<f32>) {
    let c = p.count;
    let b = c + k0 * c + i;
    slot_out[b] = v.x;
    slot_out[b + c] = v.y;
    slot_out[b + 2u * c] = v.z;
    slot_out[b + 3u * c] = v.w;
}
fn sb4(k0: u32, i: u32) -> vec4<f32> {
    let c = p.count;
    let b = k0 * c + i;
    return vec4<f32>(sbar[b], sbar[b + c], sbar[b + 2u * c], sbar[b + 3u * c]);
}
fn sbput4(k0: u32, i: u32, v: vec4<f32>) {
    let c = p.count;
    let b = k0 * c + i;
    sbar[b] = v.x;
    sbar[b + c] = v.y;
    sbar[b + 2u * c] = v.z;
    sbar[b + 3u * c] = v.w;
}

// lstm_step: persistent workgroups (`groups` of them) take tiles of 32 coordinates (tile = wg,
// wg + groups, …), 5 invocations per coordinate (unit groups m = 0..4).
var<workgroup> xch: array<vec4<f32>, 320>;

@compute @workgroup_size(160)
fn lstm_step(grid: Grid) {
    let li = grid.li;
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    phi_base = p.phi_off;
    load_phi(li, 160u);
    let q = li % 32u;
    let m = li / 32u;
    let xq = q * 10u;
    let tiles = (p.count + 31u) / 32u;
    for (var tile = wg; tile < tiles; tile += p.groups) {
        let iv = tile * 32u + q;
        let valid = iv < p.count;
        let i = min(iv, p.count - 1u);
        phi_base = phi_block_offset(p.phi_off, i, p.phi_block, p.phi_stride);
        let x = features(g[i]);
        let a = fwd1(m, x, st5(0u, i), st4(H + 4u * m, i));
        xch[xq + m] = a.h;
        workgroupBarrier();
        let h1n = V5(xch[xq], xch[xq + 1u], xch[xq + 2u], xch[xq + 3u], xch[xq + 4u]);
        let b = fwd2(m, h1n, st5(2u * H, i), st4(3u * H + 4u * m, i));
        xch[xq + 5u + m] = w4(WO + 4u * m) * b.h;
        workgroupBarrier();
        if (valid) {
            put4(4u * m, i, a.h);
            put4(H + 4u * m, i, a.c);
            put4(2u * H + 4u * m, i, b.h);
            put4(3u * H + 4u * m, i, b.c);
            if (m == 0u) {
                var u = xch[xq + 5u];
                for (var j = 1u; j < 5u; j++) { u += xch[xq + 5u + j]; }
                slot_out[i] = slot_in[i] + p.out_scale * (w1(BO) + hsum(u));
            }
        }
    }
}

// ---- reverse ----

// Adjoints of one unit's pre-activations (i, f, g̃, o) and of its old c, from its gates, the
// adjoints hb, cb of (h', c') and the old c.
struct Back { a: vec4<f32>, cb: f32 }

fn back(s: Gates, hb: f32, cb: f32, c: f32) -> Back {
    let ct = cb + hb * s.o * (1.0 - s.tc * s.tc);
    let ai = ct * s.g * s.i * (1.0 - s.i);
    let af = ct * c * s.f * (1.0 - s.f);
    let ag = ct * s.i * (1.0 - s.g * s.g);
    let ao = hb * s.tc * s.o * (1.0 - s.o);
    return Back(vec4<f32>(ai, af, ag, ao), ct * s.f);
}

// Σ_r φ[at + r·H + 4m ..]·ā[r] over the 80 gate rows (4 columns of Wᵀā), ā staged at `base`.
fn tmv(at: u32, m: u32, base: u32) -> vec4<f32> {
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    for (var rq = 0u; rq < 20u; rq++) {
        let a = stage[base + rq];
        let o = at + 4u * rq * H + 4u * m;
        s0 = fma(vec4<f32>(a.x), w4(o), s0);
        s1 = fma(vec4<f32>(a.y), w4(o + H), s1);
        s0 = fma(vec4<f32>(a.z), w4(o + 2u * H), s0);
        s1 = fma(vec4<f32>(a.w), w4(o + 3u * H), s1);
    }
    return s0 + s1;
}

// Layer-2 reverse of unit k, given its old c2, h̄2' (with the output term) and c̄2': returns
// the pre-activation adjoints (zero when !valid), c̄ of the old c2 and h2'.
struct Rev { a: vec4<f32>, cb: f32, h: f32 }

fn rev2(k: u32, valid: bool, c2: f32, hbk: f32, cbk: f32, x: V5, h: V5) -> Rev {
    let s = unit2(k, x, h, c2);
    let b = back(s, hbk, cbk, c2);
    let a = select(vec4<f32>(0.0), b.a, valid);
    return Rev(a, b.cb, s.o * s.tc);
}

// Layer-1 reverse of unit k, given its old c1 and the adjoints of (h1', c1').
fn rev1(k: u32, valid: bool, c1: f32, hbk: f32, cbk: f32, x: vec2<f32>, h: V5) -> Back {
    let s = unit1(k, x, h, c1);
    let b = back(s, hbk, cbk, c1);
    let a = select(vec4<f32>(0.0), b.a, valid);
    return Back(a, b.cb);
}

// Stage the adjoints of units 4m..4m+3 (per gate block, a vec4 over the units) at `base`.
fn stage_a(base: u32, m: u32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) {
    stage[base + m] = vec4<f32>(a0.x, a1.x, a2.x, a3.x);
    stage[base + 5u + m] = vec4<f32>(a0.y, a1.y, a2.y, a3.y);
    stage[base + 10u + m] = vec4<f32>(a0.z, a1.z, a2.z, a3.z);
    stage[base + 15u + m] = vec4<f32>(a0.w, a1.w, a2.w, a3.w);
}

fn rev2_group(m: u32, base: u32, i: u32, valid: bool, su: f32, x: V5, h: V5) {
    let k = 4u * m;
    let c2 = st4(3u * H + k, i);
    let hbk = fma(vec4<f32>(su), w4(WO + k), sb4(2u * H + k, i));
    let cbk = sb4(3u * H + k, i);
    let r0 = rev2(k, valid, c2.x, hbk.x, cbk.x, x, h);
    let r1 = rev2(k + 1u, valid, c2.y, hbk.y, cbk.y, x, h);
    let r2 = rev2(k + 2u, valid, c2.z, hbk.z, cbk.z, x, h);
    let r3 = rev2(k + 3u, valid, c2.w, hbk.w, cbk.w, x, h);
    stage_a(base, m, r0.a, r1.a, r2.a, r3.a);
    stage[base + S_HO + m] = vec4<f32>(r0.h, r1.h, r2.h, r3.h);
    if (valid) { sbput4(3u * H + k, i, vec4<f32>(r0.cb, r1.cb, r2.cb, r3.cb)); }
}

// Row r of Wx1 (2 floats).
fn wx1(r: u32) -> vec2<f32> { return vec2<f32>(w1(WX1 + 2u * r), w1(WX1 + 2u * r + 1u)); }

// The part of x̄ = Wx1ᵀā1 from the 4 gate rows (b·H + k, gate blocks b = i, f, g̃, o) of unit k.
fn xbar1(k: u32, a: vec4<f32>) -> vec2<f32> {
    let s = fma(vec2<f32>(a.x), wx1(k), vec2<f32>(a.y) * wx1(H + k));
    return fma(vec2<f32>(a.z), wx1(2u * H + k), fma(vec2<f32>(a.w), wx1(3u * H + k), s));
}

// Layer-1 reverse of units 4m..4m+3; with `so`, returns their part of x̄ (0 otherwise).
fn rev1_group(m: u32, base: u32, i: u32, valid: bool, hx: vec4<f32>, x: vec2<f32>, h: V5, so: bool) -> vec2<f32> {
    let k = 4u * m;
    let c1 = st4(H + k, i);
    let hbk = sb4(k, i) + hx;
    let cbk = sb4(H + k, i);
    let r0 = rev1(k, valid, c1.x, hbk.x, cbk.x, x, h);
    let r1 = rev1(k + 1u, valid, c1.y, hbk.y, cbk.y, x, h);
    let r2 = rev1(k + 2u, valid, c1.z, hbk.z, cbk.z, x, h);
    let r3 = rev1(k + 3u, valid, c1.w, hbk.w, cbk.w, x, h);
    stage_a(base, m, r0.a, r1.a, r2.a, r3.a);
    if (valid) { sbput4(H + k, i, vec4<f32>(r0.cb, r1.cb, r2.cb, r3.cb)); }
    if (!so) { return vec2<f32>(0.0); }
    return (xbar1(k, r0.a) + xbar1(k + 1u, r1.a)) + (xbar1(k + 2u, r2.a) + xbar1(k + 3u, r3.a));
}

// d(features)/dg: 0 where a feature is clamped (its unclamped value outside (−1, 1)), and
// d|g|/dg = sign(g) (0 at g = 0).
fn feature_grads(gi: f32) -> vec2<f32> {
    let ag = abs(gi) + p.eps;
    let r1 = log(ag) / p.logp;
    let ep = exp(p.logp);
    let r2 = gi * ep;
    let d1 = select(0.0, sign(gi) / (ag * p.logp), r1 > -1.0 && r1 < 1.0);
    let d2 = select(0.0, ep, r2 > -1.0 && r2 < 1.0);
    return vec2<f32>(d1, d2);
}

// partials[o] ← v (fresh) or partials[o] + v; the 4- and 16-entry forms load every old value
// before they store.
fn emit(o: u32, v: f32, fresh: bool) {
    if (fresh) { partials[o] = v; } else { partials[o] = partials[o] + v; }
}
fn old4(o: u32) -> vec4<f32> {
    return vec4<f32>(partials[o], partials[o + 1u], partials[o + 2u], partials[o + 3u]);
}
fn put_p4(o: u32, v: vec4<f32>) {
    partials[o] = v.x;
    partials[o + 1u] = v.y;
    partials[o + 2u] = v.z;
    partials[o + 3u] = v.w;
}
fn emit4(o: u32, v: vec4<f32>, fresh: bool) {
    if (fresh) { put_p4(o, v); } else { put_p4(o, old4(o) + v); }
}

// Σ over the tile's coordinates q of ā[q][4rq + t]·b[q][4cq + j] (vec4 over j, t = 0..3).
struct Acc4 { r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32> }

fn outer(rq: u32, bo: u32) -> Acc4 {
    var s = Acc4(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var q = 0u; q < T; q++) {
        let a = stage[q * SV + rq];
        let b = stage[q * SV + bo];
        s.r0 = fma(vec4<f32>(a.x), b, s.r0);
        s.r1 = fma(vec4<f32>(a.y), b, s.r1);
        s.r2 = fma(vec4<f32>(a.z), b, s.r2);
        s.r3 = fma(vec4<f32>(a.w), b, s.r3);
    }
    return s;
}

// Rows 4rq..4rq+3 of a 20-column block of φ̄ at `at`, columns 4cq..4cq+3.
fn emit_block(at: u32, rq: u32, cq: u32, s: Acc4, base: u32, fresh: bool) {
    let o = base + at + 4u * rq * H + 4u * cq;
    if (fresh) {
        put_p4(o, s.r0);
        put_p4(o + H, s.r1);
        put_p4(o + 2u * H, s.r2);
        put_p4(o + 3u * H, s.r3);
    } else {
        let v0 = old4(o);
        let v1 = old4(o + H);
        let v2 = old4(o + 2u * H);
        let v3 = old4(o + 3u * H);
        put_p4(o, v0 + s.r0);
        put_p4(o + H, v1 + s.r1);
        put_p4(o + 2u * H, v2 + s.r2);
        put_p4(o + 3u * H, v3 + s.r3);
    }
}

// Stage φ and, for a workgroup without tiles that does not accumulate, zero its partials;
// returns the number of tiles.
fn vjp_begin(li: u32, wg: u32) -> u32 {
    phi_base = p.phi_off;
    load_phi(li, 5u * T);
    let tiles = (p.count + T - 1u) / T;
    if (wg >= tiles && p.accumulate == 0u) {
        for (var e = li; e < PHI_LEN; e += 5u * T) { partials[wg * PHI_LEN + e] = 0.0; }
    }
    return tiles;
}

// One tile of the reverse (every invocation of the workgroup runs it). With `so`, returns ḡ of
// the invocation's coordinate to its m = 0 invocation (0 to the others and without `so`).
fn vjp_tile(li: u32, wg: u32, tile: u32, so: bool) -> f32 {
    let n = 5u * T;
    let c = p.count;
    let out = wg * PHI_LEN;
    // Coordinate q of the tile, units 4m..4m+3.
    let q = li % T;
    let m = li / T;
    let base = q * SV;
    let fresh = tile == wg && p.accumulate == 0u;
    let iv = tile * T + q;
    let valid = iv < c;
    let i = min(iv, c - 1u);
    let gi = g[i];
    let ub = tbar[i];
    let x = features(gi);
    let h1 = st5(0u, i);
    let h2 = st5(2u * H, i);
    let su = select(0.0, p.out_scale * ub, valid);
    // Layer 1 forward (own units), h1' exchanged through the b columns.
    stage[base + S_B + m] = fwd1(m, x, h1, st4(H + 4u * m, i)).h;
    stage[base + S_B + 5u + m] = pick(h2, m);
    if (m == 0u) { stage[base + S_SU] = vec4<f32>(su, 0.0, 0.0, 0.0); }
    workgroupBarrier();
    let h1n = V5(stage[base + S_B], stage[base + S_B + 1u], stage[base + S_B + 2u], stage[base + S_B + 3u],
                 stage[base + S_B + 4u]);
    // Layer 2 and output reverse of the own units (gates computed once).
    rev2_group(m, base, i, valid, su, h1n, h2);
    workgroupBarrier();
    // Own columns of Wh2ᵀā2 (→ s̄ of h2) and Wx2ᵀā2 (→ h̄1').
    let hbs = tmv(WH2, m, base);
    let hx = tmv(WX2, m, base);
    if (valid) { sbput4(2u * H + 4u * m, i, hbs); }
    // φ̄ of layer 2 and the output: 200 4×4 blocks of [Wx2 | Wh2], 20 of b2, 5 of wo, bo.
    for (var it = li; it < 226u; it += n) {
        if (it < 200u) {
            let rq = it / 10u;
            let cq = it % 10u;
            let s = outer(rq, S_B + cq);
            if (cq < 5u) { emit_block(WX2, rq, cq, s, out, fresh); }
            else { emit_block(WH2, rq, cq - 5u, s, out, fresh); }
        } else if (it < 220u) {
            let rq = it - 200u;
            var s = vec4<f32>(0.0);
            for (var k = 0u; k < T; k++) { s += stage[k * SV + rq]; }
            emit4(out + B2 + 4u * rq, s, fresh);
        } else if (it < 225u) {
            let cq = it - 220u;
            var s = vec4<f32>(0.0);
            for (var k = 0u; k < T; k++) { s = fma(vec4<f32>(stage[k * SV + S_SU].x), stage[k * SV + S_HO + cq], s); }
            emit4(out + WO + 4u * cq, s, fresh);
        } else {
            var s = 0.0;
            for (var k = 0u; k < T; k++) { s += stage[k * SV + S_SU].x; }
            emit(out + BO, s, fresh);
        }
    }
    workgroupBarrier();
    // Layer 1 reverse of the own units (gates recomputed once).
    let xp = rev1_group(m, base, i, valid, hx, x, h1, so);
    if (so) { stage[base + S_HO + m] = vec4<f32>(xp, 0.0, 0.0); }
    stage[base + S_B + m] = pick(h1, m);
    if (m == 0u) {
        stage[base + S_B + 5u] = vec4<f32>(x, 0.0, 0.0);
        if (valid) { tbar[i] = ub + p.w * gi; }
    }
    workgroupBarrier();
    // x̄ = Σ of the five parts in order, then ḡ through the features.
    var gb = 0.0;
    if (so && m == 0u) {
        var xb = stage[base + S_HO].xy;
        for (var k = 1u; k < 5u; k++) { xb += stage[base + S_HO + k].xy; }
        gb = dot(xb, feature_grads(gi));
    }
    // Own columns of Wh1ᵀā1 (→ s̄ of h1).
    let h1s = tmv(WH1, m, base);
    if (valid) { sbput4(4u * m, i, h1s); }
    // φ̄ of layer 1: 100 4×4 blocks of Wh1, 20 row quads of (Wx1, b1).
    for (var it = li; it < 120u; it += n) {
        if (it < 100u) {
            let rq = it / 5u;
            let cq = it % 5u;
            emit_block(WH1, rq, cq, outer(rq, S_B + cq), out, fresh);
        } else {
            let rq = it - 100u;
            var s0 = vec4<f32>(0.0);
            var s1 = vec4<f32>(0.0);
            var sb = vec4<f32>(0.0);
            for (var k = 0u; k < T; k++) {
                let a = stage[k * SV + rq];
                let xq = stage[k * SV + S_B + 5u];
                s0 = fma(a, vec4<f32>(xq.x), s0);
                s1 = fma(a, vec4<f32>(xq.y), s1);
                sb += a;
            }
            for (var t = 0u; t < 4u; t++) {
                let r = 4u * rq + t;
                emit(out + WX1 + 2u * r, s0[t], fresh);
                emit(out + WX1 + 2u * r + 1u, s1[t], fresh);
            }
            emit4(out + B1 + 4u * rq, sb, fresh);
        }
    }
    workgroupBarrier();
    return gb;
}

@compute @workgroup_size(5u * T)
fn lstm_vjp(grid: Grid) {
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let tiles = vjp_begin(grid.li, wg);
    for (var tile = wg; tile < tiles; tile += p.groups) { _ = vjp_tile(grid.li, wg, tile, false); }
}

@compute @workgroup_size(5u * T)
fn lstm_vjp_so(grid: Grid) {
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let tiles = vjp_begin(grid.li, wg);
    for (var tile = wg; tile < tiles; tile += p.groups) {
        let gb = vjp_tile(grid.li, wg, tile, true);
        let iv = tile * T + grid.li % T;
        if (grid.li < T && iv < p.count) { gbar[iv] = gb; }
    }
}
