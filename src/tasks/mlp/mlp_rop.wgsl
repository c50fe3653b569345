// Element-wise parts of the MLP's exact Hessian-vector product H·v (Pearlmutter's R-operator:
// R(x) is the directional derivative of x along v). The matrix products of the R-forward and
// R-backward passes run on the tiled matmul kernel; these kernels do the rest. Every index below
// is flat over dense [batch, rows, cols] tensors (i < count = batch·rows·cols, one thread each,
// 1-D index (wid.x + wid.y·nwg.x)·256 + local index), so no thread reads what another writes.
//
// With h the activation's output, act'(h) as in matmul.wgsl (sigmoid h(1 − h), relu [h > 0],
// tanh 1 − h², identity 1) and a2(h) = d act'/dh (sigmoid 1 − 2h, tanh −2h, relu and identity 0),
// so that act''(z)·R(z) = a2(h)·R(h):
//
// rop_bias_act (R-forward of a layer, in place on rz, which holds R(H_l)·W_l + H_l·V_l):
//     rz[i] = act'(h[i]) · (rz[i] + vb[e_off + n·e_bs + j]),   n = i / (rows·cols), j = i % cols
//   i.e. R(H_{l+1}) = act'(Z_l) ⊙ (R(Z_l)), v_b the bias block of v.
// rop_act_back (R-backward through an activation), from dH = dZ_l·W_lᵀ and
// R(dH) = R(dZ_l)·W_lᵀ + dZ_l·V_lᵀ:
//     dz[i]  = dh[i] · act'(h[i])
//     rdz[i] = rdh[i] · act'(h[i]) + dh[i] · a2(h[i]) · rh[i]
// rop_xent (softmax cross-entropy, mean over the B = rows rows; one thread per row r < batch·rows,
// C = cols classes, y = labels[e_off + n·e_bs + b], n = r / rows, b = r % rows):
//     s = softmax(z_r),  dz_k = (s_k − [k = y]) / B,  rdz_k = s_k · (rz_k − Σ_c s_c·rz_c) / B
// rop_mse (squared error summed over outputs, mean over rows; t = targets[e_off + n·e_bs + i % (rows·cols)]):
//     dz[i] = 2·(z[i] − t) / B,  rdz[i] = 2·rz[i] / B
// The loss kernels read z (the logits) and rz = R(z) laid out densely, and write dz, rdz likewise.
//
// `p: Params` and the storage bindings are declared from src/tasks/mlp/rop.rs.

fn act_grad(h: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return h * (1.0 - h); }
        case 2u: { return select(0.0, 1.0, h > 0.0); }
        case 3u: { return 1.0 - h * h; }
        default: { return 1.0; }
    }
}

fn act_grad2(h: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return 1.0 - 2.0 * h; }
        case 3u: { return -2.0 * h; }
        default: { return 0.0; }
    }
}

@compute @workgroup_size(256)
fn rop_bias_act(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    let n = i / (p.rows * p.cols);
    let j = i % p.cols;
    rz[i] = act_grad(h[i], p.act) * (rz[i] + vb[p.e_off + n * p.e_bs + j]);
}

@compute @workgroup_size(256)
fn rop_act_back(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    let a1 = act_grad(hb[i], p.act);
    let d = dh[i];
    dz[i] = d * a1;
    rdz[i] = rdh[i] * a1 + d * act_grad2(hb[i], p.act) * rh[i];
}

@compute @workgroup_size(256)
fn rop_xent(grid: Grid) {
    let r = flat_index(grid);
    if (r >= p.batch * p.rows) { return; }
    let c = p.cols;
    let inv_b = 1.0 / f32(p.rows);
    let n = r / p.rows;
    let y = labels[p.e_off + n * p.e_bs + r % p.rows];
    let zb = r * c;
    var m = z[zb];
    for (var k = 1u; k < c; k++) { m = max(m, z[zb + k]); }
    var se = 0.0;
    for (var k = 0u; k < c; k++) { se += exp(z[zb + k] - m); }
    var dot = 0.0;
    for (var k = 0u; k < c; k++) { dot += exp(z[zb + k] - m) / se * rzl[zb + k]; }
    for (var k = 0u; k < c; k++) {
        let s = exp(z[zb + k] - m) / se;
        dzl[zb + k] = (s - select(0.0, 1.0, k == y)) * inv_b;
        rdzl[zb + k] = s * (rzl[zb + k] - dot) * inv_b;
    }
}

@compute @workgroup_size(256)
fn rop_mse(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    let per = p.rows * p.cols;
    let inv_b = 1.0 / f32(p.rows);
    let t = targets[p.e_off + (i / per) * p.e_bs + i % per];
    dzl[i] = 2.0 * (z[i] - t) * inv_b;
    rdzl[i] = 2.0 * rzl[i] * inv_b;
}
