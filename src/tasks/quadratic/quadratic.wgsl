// The L2L quadratic task: f(θ) = ‖W θ − y‖²,  ∇f(θ) = 2 Wᵀ (W θ − y).
//
// Per instance n < batch, with d ≤ 1024:
//     θ = theta[t_off + n·t_bs + (0..d)]
//     W[i,j] = data[n·(d² + d) + i·d + j],   y[i] = data[n·(d² + d) + d² + i]
//     r = W θ − y
//     loss[l_off + n] = Σ_i r_i²
//     grad[g_off + n·g_bs + j] = 2 Σ_i W[i,j] r_i
// One 64-thread workgroup per instance; r is kept in workgroup memory; the loss is summed by a
// fixed binary tree (deterministic).
//
// quadratic_hvp — the Hessian-vector product (the Hessian 2 WᵀW is constant in θ):
//     v = theta[t_off + n·t_bs + (0..d)] (binding 0 holds v),  r = W v
//     hv[g_off + n·g_bs + j] = 2 Σ_i W[i,j] r_i
//
// `p: Params` and the storage bindings are declared from src/tasks/quadratic/kernels.rs.

var<workgroup> r_s: array<f32, 1024>;
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn quadratic(grid: Grid) {
    let li = grid.li;
    let n = flat_group(grid);
    if (n >= p.batch) { return; }
    let d = p.d;
    let wb = n * (d * d + d);
    let tb = p.t_off + n * p.t_bs;
    var s = 0.0;
    for (var i = li; i < d; i += 64u) {
        var acc = -data[wb + d * d + i];
        for (var j = 0u; j < d; j++) { acc = fma(data[wb + i * d + j], theta[tb + j], acc); }
        r_s[i] = acc;
        s = fma(acc, acc, s);
    }
    part[li] = s;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w >>= 1u) {
        if (li < w) { part[li] = part[li] + part[li + w]; }
        workgroupBarrier();
    }
    if (li == 0u) { loss[p.l_off + n] = part[0]; }
    for (var j = li; j < d; j += 64u) {
        var acc = 0.0;
        for (var i = 0u; i < d; i++) { acc = fma(data[wb + i * d + j], r_s[i], acc); }
        grad[p.g_off + n * p.g_bs + j] = 2.0 * acc;
    }
}

@compute @workgroup_size(64)
fn quadratic_hvp(grid: Grid) {
    let li = grid.li;
    let n = flat_group(grid);
    if (n >= p.batch) { return; }
    let d = p.d;
    let wb = n * (d * d + d);
    let vb = p.t_off + n * p.t_bs;
    for (var i = li; i < d; i += 64u) {
        var acc = 0.0;
        for (var j = 0u; j < d; j++) { acc = fma(data[wb + i * d + j], theta[vb + j], acc); }
        r_s[i] = acc;
    }
    workgroupBarrier();
    for (var j = li; j < d; j += 64u) {
        var acc = 0.0;
        for (var i = 0u; i < d; i++) { acc = fma(data[wb + i * d + j], r_s[i], acc); }
        hv[p.g_off + n * p.g_bs + j] = 2.0 * acc;
    }
}
