// Optimizers whose update is linear in (g, θ, 1) with coefficients c = (c0, c1, c2) made from φ
// (one per coordinate, φ shared by all coordinates), u = c0·g + c1·θ + c2, θ' = θ + u:
//   kind 0, the linear learned optimizer: c = φ = (w0, w1, b) at phi[phi_off + 0..3];
//   kind 1, a learned learning-rate schedule over a horizon H (the PES paper's toy):
//     c = (−lr_t, 0, 0),  lr_t = e^{φ0}·(H − t)/H + e^{φ1}·t/H,  φ = (φ0, φ1) at phi[phi_off + 0..2]
//     (∂c0/∂φ0 = −e^{φ0}(H − t)/H, ∂c0/∂φ1 = −e^{φ1}·t/H).
//
// Slots hold θ for the C = N·P coordinates of all instances at slot[0..C] (no optimizer state).
//
// linear_step:  out[i] = θ[i] + c0·g[i] + c1·θ[i] + c2                         i < C
//   (φ of block i / phi_block when φ is given per block of coordinates: phi_block_offset)
// linear_vjp:   reverse of one step, in place on the adjoint θ̄ (= ū, the adjoint of θ'):
//     c̄ = Σ_i ū_i·(g_i, θ_i, 1),  φ̄ += (∂c/∂φ)ᵀ·c̄
//     θ̄_i ← ū_i + w·g_i + [theta_path] c1·ū_i
//   where w·g_i is the meta-loss term w_t ∇ℓ_t (g is the model gradient at θ_t), and the bracket
//   is the θ-input path (kept in truncated and second-order modes, dropped in first-order mode).
// linear_vjp_so: linear_vjp, also writing the g-input path's adjoint ḡ_i = c0·ū_i to gbar
//   (second-order mode; the trainer then adds H·ḡ to θ̄).
//   c̄ is reduced deterministically: `groups` workgroups each stride over coordinates
//   (i = wg·256 + l, then + groups·256), sum in registers, reduce by a fixed tree; the workgroup
//   writes φ̄ = (∂c/∂φ)ᵀ·c̄ to partials[wg·L + k] (L = 3 or 2 floats of φ; added to the previous
//   value when accumulate = 1, so the partials of all steps of an unroll add up in a fixed order);
//   a later reduction sums the partials.
//
// `p: Params` and the storage bindings are declared from src/optim/linear/mod.rs.

var<workgroup> red: array<vec3<f32>, 256>;

// The schedule's weights of e^{φ0} and e^{φ1} at step t.
fn ramp() -> vec2<f32> {
    return vec2<f32>((p.horizon - p.t) / p.horizon, p.t / p.horizon);
}

// The coefficients c from the φ at phi[o].
fn coeffs(o: u32) -> vec3<f32> {
    if (p.kind == 0u) { return vec3<f32>(phi[o], phi[o + 1u], phi[o + 2u]); }
    let r = ramp();
    return vec3<f32>(-(exp(phi[o]) * r.x + exp(phi[o + 1u]) * r.y), 0.0, 0.0);
}

// φ̄ component k from the coefficients' adjoint cb (the φ at phi[p.phi_off]).
fn phi_bar(k: u32, cb: vec3<f32>) -> f32 {
    if (p.kind == 0u) { return cb[k]; }
    let r = ramp();
    return -cb.x * exp(phi[p.phi_off + k]) * r[k];
}

@compute @workgroup_size(256)
fn linear_step(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    let th = slot_in[i];
    let c = coeffs(phi_block_offset(p.phi_off, i, p.phi_block, p.phi_stride));
    let u = c.x * g[i] + c.y * th + c.z;
    slot_out[i] = th + u;
}

// One coordinate of the reverse: θ̄_i in place; returns its c̄ contribution.
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
    let len = select(2u, 3u, p.kind == 0u);
    if (li < len) {
        let o = wg * len + li;
        var v = phi_bar(li, red[0]);
        if (p.accumulate != 0u) { v = partials[o] + v; }
        partials[o] = v;
    }
}

// The reverse over the workgroup's coordinates, after the caller's checks.
fn vjp_groups(wg: u32, li: u32, c: vec3<f32>) {
    var acc = vec3<f32>(0.0);
    for (var i = wg * 256u + li; i < p.count; i += p.groups * 256u) {
        acc += reverse_coord(i, c.y);
    }
    write_partials(wg, li, acc);
}

@compute @workgroup_size(256)
fn linear_vjp(grid: Grid) {
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    vjp_groups(wg, grid.li, coeffs(p.phi_off));
}

// ḡ first (from ū, before the reverse overwrites it in place), then the same reverse.
@compute @workgroup_size(256)
fn linear_vjp_so(grid: Grid) {
    let wg = flat_group(grid);
    if (wg >= p.groups) { return; }
    let c = coeffs(p.phi_off);
    for (var i = wg * 256u + grid.li; i < p.count; i += p.groups * 256u) {
        gbar[i] = c.x * tbar[i];
    }
    vjp_groups(wg, grid.li, c);
}
