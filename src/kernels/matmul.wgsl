// Batched tiled matrix product with fused epilogues.
//
// For every instance n < batch:
//     acc = op(A_n) · op(B_n)                      op(A_n): M×K, op(B_n): K×N, C_n: M×N
//     op(A) = A, or Aᵀ when TRANS_A;  op(B) = B, or Bᵀ when TRANS_B.
// Row-major storage with element offsets, leading dimensions and per-instance strides:
//     A_n[i,k]  = a[a_off + n·a_bs + i·lda + k]         (TRANS_A: op(A)[i,k] = a[a_off + n·a_bs + k·lda + i])
//     B_n[k,j]  = b[b_off + n·b_bs + k·ldb + j]         (TRANS_B: op(B)[k,j] = b[b_off + n·b_bs + j·ldb + k])
//     C_n[i,j]  = c[c_off + n·c_bs + i·ldc + j]
// Epilogue (p.epi), with act ∈ {0 identity, 1 sigmoid, 2 relu, 3 tanh} (p.act):
//     0:  C = acc                 (p.accumulate = 1: C = C + acc)
//     1:  C = act(acc + e[e_off + n·e_bs + j])                       bias, then activation
//     2:  C = acc · act'(h),  h = e[e_off + n·e_bs + i·lde + j]       back through an activation,
//         with act' written in terms of the activation's output h:
//         sigmoid' = h(1 − h),  relu' = [h > 0],  tanh' = 1 − h²,  identity' = 1.
//
// Tiling: a 16×16 workgroup computes a BM×BN tile (BM = 16·RM, BN = 16·RN); thread (x, y) owns rows
// y + 16r (r < RM) and columns x + 16c (c < RN). K advances in steps of BK; the op(A) and op(B)
// tiles are staged in workgroup memory: (BM·BK + BK·BN)·4 bytes, chosen by the host to fit the
// adapter's max_compute_workgroup_storage_size. The 1-D workgroup index wid.x + wid.y·nwg.x
// enumerates (instance, tile row, tile column); indices past the end return at once.
// With STAGED = false (chosen for CPU adapters) the tiles are not staged: each thread reads its
// operands directly, with no barrier.
//
// matmul_wide (large products on GPUs, M and N ≥ 128): a 16×16 workgroup computes a 128×128
// tile, thread (x, y) owning rows 4y..4y+3 and 64+4y..64+4y+3 and the same columns of x; K
// advances in steps of 16 with both 128×16 slices staged in workgroup memory as vec4 (16 KiB),
// so each k is 4 vec4 loads and 64 FMAs per thread. Every output is summed over k = 0, 1, … in
// order by one fma chain, as in matmul (drivers may still round the two kernels differently;
// the kernel a product uses depends only on its sizes and the adapter, so runs are repeatable).
//
// `p: Params` and the storage bindings are declared from src/kernels/matmul.rs.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override RM: u32 = 4u;   // rows per thread, 1..4
override RN: u32 = 4u;   // columns per thread, 1..4
override BK: u32 = 16u;  // K step
override STAGED: bool = true;  // stage tiles in workgroup memory (false: direct loads, no barriers)

var<workgroup> As: array<f32, 16u * RM * BK>;  // As[kk·BM + ii]
var<workgroup> Bs: array<f32, 16u * RN * BK>;  // Bs[kk·BN + jj]

fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return 1.0 / (1.0 + exp(-x)); }
        case 2u: { return max(x, 0.0); }
        case 3u: { return tanh(clamp(x, -15.0, 15.0)); }
        default: { return x; }
    }
}

fn activate_grad_from_output(h: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return h * (1.0 - h); }
        case 2u: { return select(0.0, 1.0, h > 0.0); }
        case 3u: { return 1.0 - h * h; }
        default: { return 1.0; }
    }
}

fn load_a(base: u32, i: u32, kk: u32) -> f32 {
    if (i >= p.m || kk >= p.k) { return 0.0; }
    if (TRANS_A) { return a[base + kk * p.lda + i]; }
    return a[base + i * p.lda + kk];
}

fn load_b(base: u32, kk: u32, j: u32) -> f32 {
    if (kk >= p.k || j >= p.n) { return 0.0; }
    if (TRANS_B) { return b[base + j * p.ldb + kk]; }
    return b[base + kk * p.ldb + j];
}

// The workgroup's output tile of bm×bn: its instance, first row and column, and where the
// instance's A and B start; `valid` is false past the last tile (the 1-D workgroup number
// enumerates instance, tile row, tile column).
struct Tile { valid: bool, inst: u32, row0: u32, col0: u32, a_base: u32, b_base: u32 }

fn tile_of(grid: Grid, bm: u32, bn: u32) -> Tile {
    let tiles_n = (p.n + bn - 1u) / bn;
    let tiles = ((p.m + bm - 1u) / bm) * tiles_n;
    let wg = flat_group(grid);
    let inst = wg / tiles;
    return Tile(wg < tiles * p.batch, inst, ((wg % tiles) / tiles_n) * bm, (wg % tiles_n) * bn,
                p.a_off + inst * p.a_bs, p.b_off + inst * p.b_bs);
}

@compute @workgroup_size(16, 16)
fn matmul(grid: Grid, @builtin(local_invocation_id) lid: vec3<u32>) {
    let BM = 16u * RM;
    let BN = 16u * RN;
    let tl = tile_of(grid, BM, BN);
    if (!tl.valid) { return; }
    let tid = lid.y * 16u + lid.x;

    var acc: array<f32, 16>;
    for (var q = 0u; q < 16u; q++) { acc[q] = 0.0; }

    if (!STAGED) {
        // Direct: each thread reads its operands from memory (for CPU adapters, where
        // workgroup memory is ordinary cache and every barrier is a context switch).
        for (var kk = 0u; kk < p.k; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var r = 0u; r < RM; r++) { ar[r] = load_a(tl.a_base, tl.row0 + lid.y + 16u * r, kk); }
            for (var q = 0u; q < RN; q++) { br[q] = load_b(tl.b_base, kk, tl.col0 + lid.x + 16u * q); }
            for (var r = 0u; r < RM; r++) {
                for (var q = 0u; q < RN; q++) {
                    acc[r * 4u + q] = fma(ar[r], br[q], acc[r * 4u + q]);
                }
            }
        }
    }
    for (var k0 = 0u; STAGED && k0 < p.k; k0 += BK) {
        for (var t = tid; t < BM * BK; t += 256u) {
            var ii: u32; var kk: u32;
            if (TRANS_A) { ii = t % BM; kk = t / BM; } else { ii = t / BK; kk = t % BK; }
            As[kk * BM + ii] = load_a(tl.a_base, tl.row0 + ii, k0 + kk);
        }
        for (var t = tid; t < BN * BK; t += 256u) {
            var jj: u32; var kk: u32;
            if (TRANS_B) { jj = t / BK; kk = t % BK; } else { jj = t % BN; kk = t / BN; }
            Bs[kk * BN + jj] = load_b(tl.b_base, k0 + kk, tl.col0 + jj);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var r = 0u; r < RM; r++) { ar[r] = As[kk * BM + lid.y + 16u * r]; }
            for (var q = 0u; q < RN; q++) { br[q] = Bs[kk * BN + lid.x + 16u * q]; }
            for (var r = 0u; r < RM; r++) {
                for (var q = 0u; q < RN; q++) {
                    acc[r * 4u + q] = fma(ar[r], br[q], acc[r * 4u + q]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var r = 0u; r < RM; r++) {
        for (var q = 0u; q < RN; q++) {
            finish(tl.inst, tl.row0 + lid.y + 16u * r, tl.col0 + lid.x + 16u * q, acc[r * 4u + q]);
        }
    }
}

// The epilogue of output (i, j) of instance inst (nothing outside C).
fn finish(inst: u32, i: u32, j: u32, acc: f32) {
    if (i >= p.m || j >= p.n) { return; }
    let ci = p.c_off + inst * p.c_bs + i * p.ldc + j;
    let e_base = p.e_off + inst * p.e_bs;
    var v = acc;
    switch p.epi {
        case 1u: { v = activate(v + e[e_base + j], p.act); }
        case 2u: { v = v * activate_grad_from_output(e[e_base + i * p.lde + j], p.act); }
        default: {
            if (p.accumulate != 0u) { v = c[ci] + v; }
        }
    }
    c[ci] = v;
}

const WB: u32 = 128u;  // matmul_wide tile rows and columns
const WK: u32 = 16u;   // matmul_wide K step (a multiple of 8)
var<workgroup> Aw: array<vec4<f32>, 32u * WK>;  // Aw[kk·32 + q] = op(A)[row0 + 4q .. 4q + 3, k0 + kk]
var<workgroup> Bw: array<vec4<f32>, 32u * WK>;  // Bw[kk·32 + q] = op(B)[k0 + kk, col0 + 4q .. 4q + 3]

@compute @workgroup_size(16, 16)
fn matmul_wide(grid: Grid, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tl = tile_of(grid, WB, WB);
    if (!tl.valid) { return; }
    let tid = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 16>;  // acc[2r + h]: row r of the thread's 8, columns of half h
    for (var q = 0u; q < 16u; q++) { acc[q] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.k; k0 += WK) {
        // Thread t stages op(A)[4q .. 4q + 3, kk] and op(B)[kk, 4q .. 4q + 3] (q = t mod 32)
        // of the step's slices kk = t / 32 and kk + 8 as one vec4 each.
        let q = tid % 32u;
        for (var h = 0u; h < WK; h += 8u) {
            let kk = tid / 32u + h;
            let i = tl.row0 + 4u * q;
            let j = tl.col0 + 4u * q;
            let k = k0 + kk;
            Aw[kk * 32u + q] = vec4<f32>(load_a(tl.a_base, i, k), load_a(tl.a_base, i + 1u, k),
                                         load_a(tl.a_base, i + 2u, k), load_a(tl.a_base, i + 3u, k));
            Bw[kk * 32u + q] = vec4<f32>(load_b(tl.b_base, k, j), load_b(tl.b_base, k, j + 1u),
                                         load_b(tl.b_base, k, j + 2u), load_b(tl.b_base, k, j + 3u));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < WK; kk++) {
            let a0 = Aw[kk * 32u + lid.y];
            let a1 = Aw[kk * 32u + 16u + lid.y];
            let b0 = Bw[kk * 32u + lid.x];
            let b1 = Bw[kk * 32u + 16u + lid.x];
            acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
            acc[1] = fma(vec4<f32>(a0.x), b1, acc[1]);
            acc[2] = fma(vec4<f32>(a0.y), b0, acc[2]);
            acc[3] = fma(vec4<f32>(a0.y), b1, acc[3]);
            acc[4] = fma(vec4<f32>(a0.z), b0, acc[4]);
            acc[5] = fma(vec4<f32>(a0.z), b1, acc[5]);
            acc[6] = fma(vec4<f32>(a0.w), b0, acc[6]);
            acc[7] = fma(vec4<f32>(a0.w), b1, acc[7]);
            acc[8] = fma(vec4<f32>(a1.x), b0, acc[8]);
            acc[9] = fma(vec4<f32>(a1.x), b1, acc[9]);
            acc[10] = fma(vec4<f32>(a1.y), b0, acc[10]);
            acc[11] = fma(vec4<f32>(a1.y), b1, acc[11]);
            acc[12] = fma(vec4<f32>(a1.z), b0, acc[12]);
            acc[13] = fma(vec4<f32>(a1.z), b1, acc[13]);
            acc[14] = fma(vec4<f32>(a1.w), b0, acc[14]);
            acc[15] = fma(vec4<f32>(a1.w), b1, acc[15]);
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 8u; r++) {
        let i = tl.row0 + 4u * lid.y + 64u * (r / 4u) + r % 4u;
        for (var h = 0u; h < 2u; h++) {
            let j = tl.col0 + 4u * lid.x + 64u * h;
            let v = acc[2u * r + h];
            finish(tl.inst, i, j, v.x);
            finish(tl.inst, i, j + 1u, v.y);
            finish(tl.inst, i, j + 2u, v.z);
            finish(tl.inst, i, j + 3u, v.w);
        }
    }
}
