// Per-instance losses of a model's outputs, mean over the B rows of each instance, and their
// gradients with respect to the outputs. For instance n < batch and row b < rows (B = rows), the
// outputs z = logits[z_off + n·z_bs + b·classes + (0..classes)] and, when want_grad = 1,
// dz[d_off + n·d_bs + b·classes + k] gets ∂loss/∂z_k.
//
// softmax_xent — softmax cross-entropy; labels[y_off + n·y_bs + b] = y < classes (u32):
//     ℓ_b = log Σ_k exp(z_k) − z_y              (computed as m + log Σ_k exp(z_k − m), m = max_k z_k)
//     loss[l_off + n] = (1/B) Σ_b ℓ_b
//     dz_k = (softmax(z)_k − [k = y]) / B
//
// mse — squared error summed over the outputs, mean over the rows; targets (f32) laid out as the
// outputs: t = targets[y_off + n·y_bs + b·classes + (0..classes)]:
//     loss[l_off + n] = (1/B) Σ_b Σ_k (z_k − t_k)²          (one output: the usual mean squared error)
//     dz_k = 2 (z_k − t_k) / B
//
// One 256-thread workgroup per instance; rows (softmax_xent) or row × output elements (mse) are
// spread over threads (i ≡ thread mod 256) in increasing order and the per-thread sums added by a
// fixed binary tree, so the result is deterministic (no atomics).
//
// `p: Params` and the storage bindings are declared from src/tasks/mlp/softmax.rs.

@compute @workgroup_size(256)
fn softmax_xent(grid: Grid) {
    let li = grid.li;
    let n = flat_group(grid);
    if (n >= p.batch) { return; }
    let inv_b = 1.0 / f32(p.rows);
    var s = 0.0;
    for (var b = li; b < p.rows; b += 256u) {
        let zb = p.z_off + n * p.z_bs + b * p.classes;
        let y = labels[p.y_off + n * p.y_bs + b];
        var m = logits[zb];
        for (var k = 1u; k < p.classes; k++) { m = max(m, logits[zb + k]); }
        var se = 0.0;
        for (var k = 0u; k < p.classes; k++) { se += exp(logits[zb + k] - m); }
        let lse = m + log(se);
        s += lse - logits[zb + y];
        if (p.want_grad != 0u) {
            let db = p.d_off + n * p.d_bs + b * p.classes;
            for (var k = 0u; k < p.classes; k++) {
                let sm = exp(logits[zb + k] - lse);
                dz[db + k] = (sm - select(0.0, 1.0, k == y)) * inv_b;
            }
        }
    }
    tree_sum_256(li, s);
    if (li == 0u) { loss[p.l_off + n] = tree_256[0] * inv_b; }
}

@compute @workgroup_size(256)
fn mse(grid: Grid) {
    let li = grid.li;
    let n = flat_group(grid);
    if (n >= p.batch) { return; }
    let inv_b = 1.0 / f32(p.rows);
    let per = p.rows * p.classes;
    let zb = p.z_off + n * p.z_bs;
    let yb = p.y_off + n * p.y_bs;
    let db = p.d_off + n * p.d_bs;
    var s = 0.0;
    for (var i = li; i < per; i += 256u) {
        let d = logits[zb + i] - targets[yb + i];
        s += d * d;
        if (p.want_grad != 0u) { dz[db + i] = 2.0 * d * inv_b; }
    }
    tree_sum_256(li, s);
    if (li == 0u) { loss[p.l_off + n] = tree_256[0] * inv_b; }
}
