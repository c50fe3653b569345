// The linear learned optimizer (one per coordinate, φ shared by all coordinates):
//     u = w0·g + w1·θ + b,        θ' = θ + u,        φ = (w0, w1, b) at phi[phi_off + 0..3]
//
// Slots hold θ for the C = N·P coordinates of all instances at slot[0..C] (no optimizer state).
//
// linear_step:  out[i] = θ[i] + w0·g[i] + w1·θ[i] + b                         i < C
//   (φ of block i / phi_block when φ is given per block of coordinates: phi_block_offset)
// linear_vjp:   reverse of one step, in place on the adjoint θ̄ (= ū, the adjoint of θ'):
//     φ̄ += Σ_i ū_i·(g_i, θ_i, 1)
//     θ̄_i ← ū_i + w·g_i + [theta_path] w1·ū_i
//   where w·g_i is the meta-loss term w_t ∇ℓ_t (g is the model gradient at θ_t), and the bracket
//   is the θ-input path (kept in truncated and second-order modes, dropped in first-order mode).
// linear_vjp_so: linear_vjp, also writing the g-input path's adjoint ḡ_i = w0·ū_i to gbar
//   (second-order mode; the trainer then adds H·ḡ to θ̄).
//   φ̄ is reduced deterministically: `groups` workgroups each stride over coordinates
//   (i = wg·256 + l, then + groups·256), sum in registers, reduce by a fixed tree, and write
//   partials[wg·3 + k] (added to the previous value when accumulate = 1, so the partials of all
//   steps of an unroll add up in a fixed order); a later reduction sums the partials.
//
// `p: Params` and the storage bindings are declared from src/optim/linear/mod.rs.

var<workgroup> red: array<vec3<f32>, 256>;

@compute @workgroup_size(256)
fn linear_step(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    let th = slot_in[i];
    let o = phi_block_offset(p.phi_off, i, p.phi_block, p.phi_stride);
    let u = phi[o] * g[i] + phi[o + 1u] * th + phi[o + 2u];
    slot_out[i] = th + u;
}

// One coordinate of the reverse: θ̄_i in place; returns its φ̄ contribution.
fn reverse_coord(i: u32, w1: f32) -> vec3<f32> {
    let ub = tbar[i];
    let gi = g[i];
    let th = slot_in[i];
    var tb = ub + p.w * gi;
    if (p.theta_path != 0u) { tb += w1 * ub; }
    tbar[i] = tb;
    return ub * vec3<f32>(gi, th, 1.0);
}

// Workgroup tree reduction of the φ̄ contributions into this workgroup's partial sums.
fn write_partials(wg: u32, li: u32, acc: vec3<f32>) {
    red[li] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) { red[li] = red[li] + red[li + s]; }
        workgroupBarrier();
    }
    if (li < 3u) {
        let o = wg * 3u + li;
        var v = red[0][li];
        if (p.accumulate != 0u) { v = partials[o] + v; }
        partials[o] = v;
    }
}

@compute @workgroup_size(256)
fn linear_vjp(grid: Grid) {
    let li = grid.li;
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let w1 = phi[p.phi_off + 1u];
    var acc = vec3<f32>(0.0);
    for (var i = wg * 256u + li; i < p.count; i += p.groups * 256u) {
        acc += reverse_coord(i, w1);
    }
    write_partials(wg, li, acc);
}

@compute @workgroup_size(256)
fn linear_vjp_so(grid: Grid) {
    let li = grid.li;
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let w0 = phi[p.phi_off];
    let w1 = phi[p.phi_off + 1u];
    var acc = vec3<f32>(0.0);
    for (var i = wg * 256u + li; i < p.count; i += p.groups * 256u) {
        gbar[i] = w0 * tbar[i];
        acc += reverse_coord(i, w1);
    }
    write_partials(wg, li, acc);
}
