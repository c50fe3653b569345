// Hand-designed inner optimizers over the C coordinates of all instances (one invocation each).
// t counts the steps taken before this one. Slots: θ at slot[0..C], state at slot[C + k·C + i].
//
// adam_step     (m, v):  m' = β1·m + (1 − β1)·g,  v' = β2·v + (1 − β2)·g²
//                        u = −lr·(m'/c1)/(√(v'/c2) + eps),  c1 = 1 − β1^(t+1), c2 = 1 − β2^(t+1)
// momentum_step (m):     m' = μ·m + g,            u = −lr·m'                 (μ = beta1)
// nag_step      (m):     m' = μ·m + g,            u = −lr·(g + μ·m')         (Nesterov, μ = beta1)
// rmsprop_step  (v):     v' = ρ·v + (1 − ρ)·g²,   u = −lr·g/(√v' + eps)      (ρ = beta2)
// θ' = θ + u. The state depends on g only, so in the first-order and truncated modes (g
// detached) the reverse of a step is the identity on θ̄ plus the meta-loss term (vec.wgsl axpy).
//
// Second-order mode keeps the g path. Reverse of a momentum step, in place on θ̄ (in: ū, the
// adjoint of θ'; out: of θ) and m̄ (in: of m'; out: of m), writing ḡ, the adjoint of the gradient
// input (to which the trainer then adds H·ḡ):
// momentum_vjp:  m̄'_tot = m̄' − lr·ū,       ḡ = m̄'_tot
// nag_vjp:       m̄'_tot = m̄' − lr·μ·ū,     ḡ = m̄'_tot − lr·ū
//   both:        m̄ = μ·m̄'_tot,   θ̄ = ū + w·g   (w·g: the meta-loss term w_t ∇ℓ_t)
// Reverse of an RMSprop or Adam step, reading the old state from slot_old (the slot of θ, s), in place on θ̄ and on
// s̄ (s̄[k·C + i]: in of s', out of s), writing ḡ:
// rmsprop_vjp:   d = √v' + eps,  v̄'_tot = v̄' + ū·lr·g/(d²·2√v')  (0 where v' = 0)
//                ḡ = −lr·ū/d + 2(1 − ρ)·g·v̄'_tot,   v̄ = ρ·v̄'_tot
// adam_vjp:      m̂ = m'/c1, v̂ = v'/c2, d = √v̂ + eps
//                m̄'_tot = m̄' − ū·lr/(d·c1),   v̄'_tot = v̄' + ū·lr·m̂/(d²·2√v̂·c2)  (0 where v̂ = 0)
//                ḡ = (1 − β1)·m̄'_tot + 2(1 − β2)·g·v̄'_tot,   m̄ = β1·m̄'_tot,  v̄ = β2·v̄'_tot
//   both:        θ̄ = ū + w·g
//
// `p: Params` and the storage bindings are declared from src/optim/hand/mod.rs.

@compute @workgroup_size(256)
fn adam_step(grid: Grid) {
    let i = flat_index(grid);
    let c = p.count;
    if (i >= c) { return; }
    let gi = g[i];
    let m = p.beta1 * slot_in[c + i] + (1.0 - p.beta1) * gi;
    let v = p.beta2 * slot_in[2u * c + i] + (1.0 - p.beta2) * gi * gi;
    let u = -p.lr * (m / p.c1) / (sqrt(v / p.c2) + p.eps);
    slot_out[i] = slot_in[i] + u;
    slot_out[c + i] = m;
    slot_out[2u * c + i] = v;
}

@compute @workgroup_size(256)
fn momentum_step(grid: Grid) {
    let i = flat_index(grid);
    let c = p.count;
    if (i >= c) { return; }
    let m = p.beta1 * slot_in[c + i] + g[i];
    slot_out[i] = slot_in[i] - p.lr * m;
    slot_out[c + i] = m;
}

@compute @workgroup_size(256)
fn nag_step(grid: Grid) {
    let i = flat_index(grid);
    let c = p.count;
    if (i >= c) { return; }
    let gi = g[i];
    let m = p.beta1 * slot_in[c + i] + gi;
    slot_out[i] = slot_in[i] - p.lr * (gi + p.beta1 * m);
    slot_out[c + i] = m;
}

@compute @workgroup_size(256)
fn rmsprop_step(grid: Grid) {
    let i = flat_index(grid);
    let c = p.count;
    if (i >= c) { return; }
    let gi = g[i];
    let v = p.beta2 * slot_in[c + i] + (1.0 - p.beta2) * gi * gi;
    slot_out[i] = slot_in[i] - p.lr * gi / (sqrt(v) + p.eps);
    slot_out[c + i] = v;
}

fn momentum_reverse(i: u32, nesterov: bool) {
    let ub = tbar[i];
    var mt: f32;
    var gb: f32;
    if (nesterov) {
        mt = sbar[i] - p.lr * p.beta1 * ub;
        gb = mt - p.lr * ub;
    } else {
        mt = sbar[i] - p.lr * ub;
        gb = mt;
    }
    sbar[i] = p.beta1 * mt;
    gbar[i] = gb;
    tbar[i] = ub + p.w * gv[i];
}

@compute @workgroup_size(256)
fn momentum_vjp(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    momentum_reverse(i, false);
}

@compute @workgroup_size(256)
fn nag_vjp(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    momentum_reverse(i, true);
}

// Adam's reverse at coordinate i; with `has_m` false it is RMSprop's (β1 = 0, c1 = c2 = 1:
// m' = g, no m state, v in the first state row).
fn moment_reverse(i: u32, has_m: bool, b1: f32, c1: f32, c2: f32) {
    let c = p.count;
    let gi = gv[i];
    let ub = tbar[i];
    let vr = select(0u, 1u, has_m);
    var m0 = 0.0;
    var mb = 0.0;
    if (has_m) {
        m0 = slot_old[c + i];
        mb = sbar[i];
    }
    let m1 = b1 * m0 + (1.0 - b1) * gi;
    let v1 = p.beta2 * slot_old[(1u + vr) * c + i] + (1.0 - p.beta2) * gi * gi;
    let mh = m1 / c1;
    let vh = v1 / c2;
    let sq = sqrt(vh);
    let d = sq + p.eps;
    var dv = 0.0;
    if (vh > 0.0) { dv = p.lr * mh / (d * d) / (2.0 * sq) / c2; }
    let mt = mb - ub * p.lr / (d * c1);
    let vt = sbar[vr * c + i] + ub * dv;
    gbar[i] = (1.0 - b1) * mt + 2.0 * (1.0 - p.beta2) * gi * vt;
    if (has_m) { sbar[i] = b1 * mt; }
    sbar[vr * c + i] = p.beta2 * vt;
    tbar[i] = ub + p.w * gi;
}

@compute @workgroup_size(256)
fn rmsprop_vjp(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    moment_reverse(i, false, 0.0, 1.0, 1.0);
}

@compute @workgroup_size(256)
fn adam_vjp(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    moment_reverse(i, true, p.beta1, p.c1, p.c2);
}
