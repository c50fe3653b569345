// Deterministic strided reductions (no atomics; fixed summation order).
//
// For every instance n < batch and column c < cols:
//     s(n, c) = Σ_{r < rows} f(x[i_off + n·i_bs + r·i_rs + c·i_cs])      f = identity (op 0) or square (op 1)
//     y[o_off + n·o_bs + c·o_cs] = alpha · s(n, c)        (accumulate = 1: y = y + alpha · s(n, c))
//
// Two schedules, both deterministic:
//   reduce_wg:     one 256-thread workgroup per output; thread t sums rows r ≡ t (mod 256) in
//                  increasing r, then a fixed binary tree over the 256 partial sums. For long rows.
//   reduce_thread: one thread per output, summing rows in increasing r. For many short reductions
//                  (bias gradients), where neighbouring threads read neighbouring columns.
// Outputs are enumerated as o = n·cols + c; the 1-D index is wid.x + wid.y·nwg.x (workgroups).
//
// `p: Params` and the storage bindings are declared from src/kernels/reduce.rs.

fn term(idx: u32) -> f32 {
    let v = x[idx];
    return select(v, v * v, p.op == 1u);
}

fn store(n: u32, c: u32, s: f32) {
    let o = p.o_off + n * p.o_bs + c * p.o_cs;
    var v = p.alpha * s;
    if (p.accumulate != 0u) { v = y[o] + v; }
    y[o] = v;
}

@compute @workgroup_size(256)
fn reduce_wg(grid: Grid) {
    let li = grid.li;
    let o = flat_group(grid);
    if (o >= p.batch * p.cols) { return; }
    let n = o / p.cols;
    let c = o % p.cols;
    let base = p.i_off + n * p.i_bs + c * p.i_cs;
    var s = 0.0;
    for (var r = li; r < p.rows; r += 256u) {
        s += term(base + r * p.i_rs);
    }
    tree_sum_256(li, s);
    if (li == 0u) { store(n, c, tree_256[0]); }
}

@compute @workgroup_size(256)
fn reduce_thread(grid: Grid) {
    let o = flat_index(grid);
    if (o >= p.batch * p.cols) { return; }
    let n = o / p.cols;
    let c = o % p.cols;
    let base = p.i_off + n * p.i_bs + c * p.i_cs;
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        s += term(base + r * p.i_rs);
    }
    store(n, c, s);
}
