// The per-parameter MLP learned optimizer (after learned_optimization's MLPLOpt).
//
// Per coordinate i (θ, g, state m1..m5, v), decays β = (0.1, 0.5, 0.9, 0.99, 0.999), β_v = 0.999:
//     m_j' = β_j·m_j + (1 − β_j)·g,  v' = β_v·v + (1 − β_v)·g²,  x = (g, θ, m1' … m5', √v')
// Per tensor segment S of an instance and feature f:
//     r_f = (ε + mean_{i∈S} x_f²)^(−1/2),   x̂_f = x_f·r_f
// Step embedding e_j = tanh(t/τ_j − 1), τ = 1, 3, 10, …, 100000 (11 values), same for all.
// MLP on in = (x̂, e) (19): h1 = relu(W1·in + b1), h2 = relu(W2·h1 + b2) (32 each),
//     o = W3·h2 + b3 (2);  u = o0·exp(α·o1)·β;  θ' = θ + u
// φ at phi[phi_off + …], row-major: W1 [32×19] @0, b1 @608, W2 [32×32] @640, b2 @1664,
//     W3 [2×32] @1696, b3 @1760; 1762 floats.
// Slots: θ at slot[0..C], state struct-of-arrays slot[C + k·C + i], k = 0..4 momenta, 5 = v.
// Instance n owns coordinates [n·P, (n+1)·P). `tables` (u32): seg_of[j] (j < P) at 0, then Q
// chunks (offset, length, segment) at P, then K segments (first chunk, chunk count, length) at
// P + 3Q: the instance's tensors cut into chunks of at most 4096 coordinates.
// `stats` holds, per (instance, segment), 17 floats: r_0 … r_7, the θ dot of the reverse pass,
// then the 8 feature dots of the second-order reverse.
//
// mlpo_sums (mode 0):   partials[(n·Q + q)·8 + f] = Σ_{i∈chunk} x_f²          (one workgroup per chunk)
// mlpo_sums (mode 1):   partials[(n·Q + q)·8]     = Σ_{i∈chunk} x_θ,i·aux_i
// mlpo_sums (mode 2):   partials[(n·Q + q)·8 + f] = Σ_{i∈chunk} x_f,i·aux[f·C + i]
// mlpo_finish (mode 0): stats[(n·K + k)·17 + f] = (ε + Σ_chunks / len)^(−1/2)
// mlpo_finish (mode 1): stats[(n·K + k)·17 + 8] = Σ_chunks                   (fixed chunk order)
// mlpo_finish (mode 2): stats[(n·K + k)·17 + 9 + f] = Σ_chunks
// mlpo_step:            slot_out ← (θ + u, new state); φ of block i / phi_block when φ is given
//                       per block of coordinates (phi_block_offset)
// mlpo_vjp:  reverse of a step, g and the state detached (first-order and truncated modes):
//     ō = ū·exp(α·o1)·β·(1, α·o0), back through the MLP; φ̄ in per-workgroup partial sums (tiles
//     of WG coordinates staged in workgroup memory, as in lstm.wgsl); aux_i = x̂̄_θ,i (adjoint
//     of the normalised θ feature); without the θ path, θ̄_i ← ū_i + w·g_i here. Mode 2 (second
//     order): aux[f·C + i] = x̂̄_f,i for all 8 features.
// mlpo_theta_bar (θ path): θ̄_i ← ū_i + w·g_i + r·aux_i − r³·x_θ,i·dot_S/|S|   (r = r_θ of S)
// mlpo_so_bar (second order), with x̄_f = r_f·x̂̄_f − r_f³·x_f·dot_f/|S| for every feature:
//     θ̄ ← ū + w·g + x̄_1;  m̄_j'_tot = m̄_j' + x̄_{2+j};  v̄'_tot = v̄' + x̄_7/(2√v') (0 where v' = 0)
//     ḡ = x̄_0 + Σ_j (1 − β_j)·m̄_j'_tot + 2(1 − β_v)·g·v̄'_tot;  m̄_j = β_j·m̄_j'_tot, v̄ = β_v·v̄'_tot
//     (s̄ in place: in the adjoint of the new state, out of the old one)
//
// `p: Params` and the storage bindings are declared from src/optim/mlp/kernels.rs.

const F: u32 = 8u;
const NIN: u32 = 19u;
const HID: u32 = 32u;
const W1: u32 = 0u;
const B1: u32 = 608u;
const W2: u32 = 640u;
const B2: u32 = 1664u;
const W3: u32 = 1696u;
const B3: u32 = 1760u;
const PHI_LEN: u32 = 1762u;
const STAGE: u32 = 98u;
const STATS: u32 = 17u;  // floats of `stats` per (instance, segment)   // phase A per coordinate: ō (2) | h2 (32) | ā2 (32) | h1 (32)

override WG: u32 = 32u;

var<workgroup> red: array<f32, 2048>;          // mlpo_sums: 8 × 256
var<workgroup> stage: array<f32, WG * STAGE>;  // mlpo_vjp
var<workgroup> acc: array<f32, PHI_LEN>;       // mlpo_vjp

fn feats(i: u32) -> array<f32, 8> {
    let c = p.count;
    let gi = g[i];
    var x: array<f32, 8>;
    x[0] = gi;
    x[1] = slot_in[i];
    let decays = array<f32, 5>(0.1, 0.5, 0.9, 0.99, 0.999);
    for (var j = 0u; j < 5u; j++) {
        x[2u + j] = decays[j] * slot_in[c + j * c + i] + (1.0 - decays[j]) * gi;
    }
    x[7] = sqrt(0.999 * slot_in[c + 5u * c + i] + 0.001 * gi * gi);
    return x;
}

fn stats_base(i: u32) -> u32 {
    let n = i / p.per_instance;
    let k = tables[i % p.per_instance];
    return (n * p.segments + k) * STATS;
}

fn inputs(i: u32, x: array<f32, 8>) -> array<f32, 19> {
    var inp: array<f32, 19>;
    let sb = stats_base(i);
    for (var f = 0u; f < F; f++) { inp[f] = x[f] * stats[sb + f]; }
    let taus = array<f32, 11>(1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0);
    for (var j = 0u; j < 11u; j++) { inp[F + j] = tanh(clamp(p.t / taus[j] - 1.0, -15.0, 15.0)); }
    return inp;
}

struct Mlp { a1: array<f32, 32>, a2: array<f32, 32>, o: vec2<f32> }

fn mlp(inp: array<f32, 19>, po: u32) -> Mlp {
    var m: Mlp;
    for (var k = 0u; k < HID; k++) {
        var a = phi[po + B1 + k];
        for (var j = 0u; j < NIN; j++) { a = fma(phi[po + W1 + k * NIN + j], inp[j], a); }
        m.a1[k] = a;
    }
    for (var k = 0u; k < HID; k++) {
        var a = phi[po + B2 + k];
        for (var j = 0u; j < HID; j++) { a = fma(phi[po + W2 + k * HID + j], max(m.a1[j], 0.0), a); }
        m.a2[k] = a;
    }
    var o = vec2<f32>(phi[po + B3], phi[po + B3 + 1u]);
    for (var j = 0u; j < HID; j++) {
        let h = max(m.a2[j], 0.0);
        o.x = fma(phi[po + W3 + j], h, o.x);
        o.y = fma(phi[po + W3 + HID + j], h, o.y);
    }
    m.o = o;
    return m;
}

@compute @workgroup_size(256)
fn mlpo_sums(grid: Grid) {
    let li = grid.li;
    let wgi = flat_group(grid);
    if (wgi >= p.chunks * (p.count / p.per_instance)) { return; }
    let n = wgi / p.chunks;
    let q = wgi % p.chunks;
    let off = tables[p.per_instance + 3u * q];
    let len = tables[p.per_instance + 3u * q + 1u];
    var s: array<f32, 8>;
    for (var j = li; j < len; j += 256u) {
        let i = n * p.per_instance + off + j;
        let x = feats(i);
        if (p.mode == 0u) {
            for (var f = 0u; f < F; f++) { s[f] = fma(x[f], x[f], s[f]); }
        } else if (p.mode == 1u) {
            s[0] = fma(x[1], aux_in[i], s[0]);
        } else {
            for (var f = 0u; f < F; f++) { s[f] = fma(x[f], aux_in[f * p.count + i], s[f]); }
        }
    }
    for (var f = 0u; f < F; f++) { red[f * 256u + li] = s[f]; }
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if (li < w) {
            for (var f = 0u; f < F; f++) { red[f * 256u + li] = red[f * 256u + li] + red[f * 256u + li + w]; }
        }
        workgroupBarrier();
    }
    if (li < F) { partials[wgi * F + li] = red[li * 256u]; }
}

@compute @workgroup_size(64)
fn mlpo_finish(grid: Grid) {
    let li = grid.li;
    let t = (flat_group(grid)) * 64u + li;
    let instances = p.count / p.per_instance;
    if (t >= instances * p.segments) { return; }
    let n = t / p.segments;
    let k = t % p.segments;
    let sb = p.per_instance + 3u * p.chunks + 3u * k;
    let first = fin_tables[sb];
    let count = fin_tables[sb + 1u];
    let len = fin_tables[sb + 2u];
    if (p.mode == 0u) {
        for (var f = 0u; f < F; f++) {
            var s = 0.0;
            for (var q = 0u; q < count; q++) { s += fin_partials[(n * p.chunks + first + q) * F + f]; }
            fin_stats[t * STATS + f] = inverseSqrt(p.eps + s / f32(len));
        }
    } else if (p.mode == 1u) {
        var s = 0.0;
        for (var q = 0u; q < count; q++) { s += fin_partials[(n * p.chunks + first + q) * F]; }
        fin_stats[t * STATS + 8u] = s;
    } else {
        for (var f = 0u; f < F; f++) {
            var s = 0.0;
            for (var q = 0u; q < count; q++) { s += fin_partials[(n * p.chunks + first + q) * F + f]; }
            fin_stats[t * STATS + 9u + f] = s;
        }
    }
}

@compute @workgroup_size(64)
fn mlpo_step(grid: Grid) {
    let li = grid.li;
    let i = (flat_group(grid)) * 64u + li;
    let c = p.count;
    if (i >= c) { return; }
    let x = feats(i);
    let m = mlp(inputs(i, x), phi_block_offset(p.phi_off, i, p.phi_block, p.phi_stride));
    let u = m.o.x * exp(p.exp_mult * m.o.y) * p.step_mult;
    slot_out[i] = x[1] + u;
    for (var j = 0u; j < 5u; j++) { slot_out[c + j * c + i] = x[2u + j]; }
    slot_out[c + 5u * c + i] = 0.999 * slot_in[c + 5u * c + i] + 0.001 * x[0] * x[0];
}

@compute @workgroup_size(WG)
fn mlpo_vjp(grid: Grid) {
    let li = grid.li;
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let c = p.count;
    let po = p.phi_off;
    for (var e = li; e < PHI_LEN; e += WG) { acc[e] = 0.0; }
    workgroupBarrier();
    let tiles = (c + WG - 1u) / WG;
    for (var tile = wg; tile < tiles; tile += p.groups) {
        let i = tile * WG + li;
        let valid = i < c;
        let base = li * STAGE;
        var inp: array<f32, 19>;
        var ub = 0.0;
        if (valid) {
            inp = inputs(i, feats(i));
            ub = tbar[i];
        }
        let m = mlp(inp, po);
        let ex = exp(p.exp_mult * m.o.y);
        let ob = select(vec2<f32>(0.0), ub * ex * p.step_mult * vec2<f32>(1.0, p.exp_mult * m.o.x), valid);
        // Back through W3, relu, W2, relu.
        var a2b: array<f32, 32>;
        for (var k = 0u; k < HID; k++) {
            let h2b = phi[po + W3 + k] * ob.x + phi[po + W3 + HID + k] * ob.y;
            a2b[k] = select(0.0, h2b, m.a2[k] > 0.0);
        }
        var a1b: array<f32, 32>;
        for (var j = 0u; j < HID; j++) {
            var s = 0.0;
            for (var k = 0u; k < HID; k++) { s = fma(phi[po + W2 + k * HID + j], a2b[k], s); }
            a1b[j] = select(0.0, s, m.a1[j] > 0.0);
        }
        // Phase A: φ̄ of W3, b3, W2, b2.
        stage[base] = ob.x;
        stage[base + 1u] = ob.y;
        for (var k = 0u; k < HID; k++) {
            stage[base + 2u + k] = max(m.a2[k], 0.0);
            stage[base + 34u + k] = a2b[k];
            stage[base + 66u + k] = max(m.a1[k], 0.0);
        }
        workgroupBarrier();
        for (var e = W2 + li; e < PHI_LEN; e += WG) {
            var sum = 0.0;
            if (e < B2) {
                let r = (e - W2) / HID; let k = (e - W2) % HID;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + 34u + r], stage[q * STAGE + 66u + k], sum); }
            } else if (e < W3) {
                let r = e - B2;
                for (var q = 0u; q < WG; q++) { sum += stage[q * STAGE + 34u + r]; }
            } else if (e < B3) {
                let r = (e - W3) / HID; let k = (e - W3) % HID;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + r], stage[q * STAGE + 2u + k], sum); }
            } else {
                let r = e - B3;
                for (var q = 0u; q < WG; q++) { sum += stage[q * STAGE + r]; }
            }
            acc[e] += sum;
        }
        workgroupBarrier();
        // Phase B: φ̄ of W1, b1 (stage: ā1 (32) | in (19)).
        for (var k = 0u; k < HID; k++) { stage[base + k] = a1b[k]; }
        for (var j = 0u; j < NIN; j++) { stage[base + HID + j] = inp[j]; }
        if (valid) {
            if (p.mode == 0u) {
                tbar[i] = ub + p.w * g[i];
            } else if (p.mode == 1u) {
                var xb = 0.0;
                for (var k = 0u; k < HID; k++) { xb = fma(phi[po + W1 + k * NIN + 1u], a1b[k], xb); }
                aux[i] = xb;
            } else {
                for (var f = 0u; f < F; f++) {
                    var xb = 0.0;
                    for (var k = 0u; k < HID; k++) { xb = fma(phi[po + W1 + k * NIN + f], a1b[k], xb); }
                    aux[f * c + i] = xb;
                }
            }
        }
        workgroupBarrier();
        for (var e = li; e < W2; e += WG) {
            var sum = 0.0;
            if (e < B1) {
                let r = e / NIN; let k = e % NIN;
                for (var q = 0u; q < WG; q++) { sum = fma(stage[q * STAGE + r], stage[q * STAGE + HID + k], sum); }
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
        if (p.accumulate != 0u) { v = phi_partials[o] + v; }
        phi_partials[o] = v;
    }
}

@compute @workgroup_size(256)
fn mlpo_theta_bar(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    let sb = stats_base(i);
    let r = stats[sb + 1u];
    let k = tables[i % p.per_instance];
    let len = f32(tables[p.per_instance + 3u * p.chunks + 3u * k + 2u]);
    let theta = slot_in[i];
    let path = r * aux_ro[i] - r * r * r * theta * stats[sb + 8u] / len;
    tbar2[i] = tbar2[i] + p.w * g[i] + path;
}

@compute @workgroup_size(256)
fn mlpo_so_bar(grid: Grid) {
    let i = flat_index(grid);
    let c = p.count;
    if (i >= c) { return; }
    let x = feats(i);
    let sb = stats_base(i);
    let k = tables[i % p.per_instance];
    let len = f32(tables[p.per_instance + 3u * p.chunks + 3u * k + 2u]);
    var xb: array<f32, 8>;
    for (var f = 0u; f < F; f++) {
        let r = stats[sb + f];
        xb[f] = r * aux_ro[f * c + i] - r * r * r * x[f] * stats[sb + 9u + f] / len;
    }
    tbar2[i] = tbar2[i] + p.w * x[0] + xb[1];
    let decays = array<f32, 5>(0.1, 0.5, 0.9, 0.99, 0.999);
    var gb = xb[0];
    for (var j = 0u; j < 5u; j++) {
        let mt = sbar[j * c + i] + xb[2u + j];
        gb = fma(1.0 - decays[j], mt, gb);
        sbar[j * c + i] = decays[j] * mt;
    }
    var vt = sbar[5u * c + i];
    if (x[7] > 0.0) { vt += xb[7] / (2.0 * x[7]); }
    gbar[i] = gb + 2.0 * 0.001 * x[0] * vt;
    sbar[5u * c + i] = 0.999 * vt;
}
