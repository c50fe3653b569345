// The LSTM language model's own kernels, batched over N instances (equations in spec.rs). The
// matrix products (input projections X·Wx + b, the output logits U·Eᵀ + b_out, and every weight
// gradient over the whole chunk) run on the generic matmul; the losses on softmax_xent.
//
// The chunk buffer (u32) holds, for N instances of L tokens, dense [N, L] each: tokens at 0,
// targets at N·L, starts (1 where a document starts) at 2·N·L, order (positions sorted by token,
// stable) at 3·N·L, then seg [N, L + 1] at 4·N·L: the u-th distinct token of instance n is read
// at positions order[seg[u] .. seg[u+1]] (padded with L).
//
// A layer's work buffer holds dense per-instance regions (offsets in Params, instance strides
// L·4H or L·H): ZX = X·Wx + b, G (gates i f g o after their nonlinearities), C (c_t), H (h_t),
// HP (h_{t−1} as used: 0 after a reset), CP (c_{t−1} as used), DHA (∂ℓ/∂h_t from above), DZ
// (∂ℓ/∂z_t), DCP (∂ℓ/∂c_{t−1}). State: per instance s_bs floats, this layer's h at s_off, c at
// s_off + H.
//
// lm_embed       X[n,t,e] = θ_n[emb + tok[n,t]·E + e]
// lm_step        time step t, unit j of instance n:
//                  reset = starts[n,t]; (h_p, c_p) = 0 if reset, else the state (t = 0) or
//                  (H, C)[n, t−1];  z_g = ZX[n,t,gH+j] + Σ_i h_p[i]·Wh[i, gH+j]
//                  i,f,o = σ(z_{i,f,o}), g = tanh(z_g); c = f·c_p + i·g; h = o·tanh c
//                  writes G, C, H, HP, CP at t, and at t = L−1 the state out.
// lm_step_back   time step t (taken from L−1 down to 0), unit j: with no reset at t + 1,
//                  dh = DHA[n,t,j] + Σ_k DZ[n,t+1,k]·Wh[j,k], dc' = DCP[n,t+1,j]; else dh = DHA,
//                  dc' = 0. dc = dc' + dh·o·(1 − tanh² c);
//                  dz_i = dc·g·i(1−i), dz_f = dc·c_p·f(1−f), dz_g = dc·i·(1−g²),
//                  dz_o = dh·tanh c·o(1−o); DCP[n,t,j] = dc·f.
// lm_embed_grad  grad_n[emb + v·E + e] (+)= Σ_{t: tok[n,t] = v} DX[n,t,e], the positions of
//                  each distinct token summed in order (no atomics).
//
// `p: Params` and the storage bindings are declared from src/tasks/lm/kernels.rs.

// The unit (instance n, hidden unit j) invocation i works on at time step p.t, and its row
// n·L + t of the [N, L, ·] sequences.
struct Unit {
    n: u32,
    j: u32,
    row: u32,
}

fn unit_of(i: u32) -> Unit {
    let n = i / p.hidden;
    return Unit(n, i % p.hidden, n * p.len + p.t);
}

fn sigm(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(256)
fn lm_embed(grid: Grid) {
    let i = flat_index(grid);
    let e_n = p.width;
    if (i >= p.batch * p.len * e_n) { return; }
    let nt = i / e_n;
    let e = i % e_n;
    let n = nt / p.len;
    let tok = chunk[nt];
    x_out[i] = theta[p.th_off + n * p.th_bs + p.emb_off + tok * e_n + e];
}

@compute @workgroup_size(256)
fn lm_step(grid: Grid) {
    let u = unit_of(flat_index(grid));
    if (u.n >= p.batch) { return; }
    let reset = chunk[2u * p.batch * p.len + u.row] != 0u;
    let s = u.n * p.s_bs + p.s_off;
    let prev = u.row - 1u;
    var z = array<f32, 4>();
    for (var g = 0u; g < 4u; g++) {
        z[g] = work[p.zx + u.row * 4u * p.hidden + g * p.hidden + u.j];
    }
    var hp_j = 0.0;
    var cp_j = 0.0;
    if (!reset) {
        let wh = p.th_off + u.n * p.th_bs + p.wh_off;
        for (var k = 0u; k < p.hidden; k++) {
            var hk: f32;
            if (p.t == 0u) { hk = state_in[s + k]; } else { hk = work[p.h + prev * p.hidden + k]; }
            let w = wh + k * 4u * p.hidden + u.j;
            z[0] = fma(hk, theta[w], z[0]);
            z[1] = fma(hk, theta[w + p.hidden], z[1]);
            z[2] = fma(hk, theta[w + 2u * p.hidden], z[2]);
            z[3] = fma(hk, theta[w + 3u * p.hidden], z[3]);
        }
        if (p.t == 0u) {
            hp_j = state_in[s + u.j];
            cp_j = state_in[s + p.hidden + u.j];
        } else {
            hp_j = work[p.h + prev * p.hidden + u.j];
            cp_j = work[p.c + prev * p.hidden + u.j];
        }
    }
    let ig = sigm(z[0]);
    let fg = sigm(z[1]);
    let gg = tanh(z[2]);
    let og = sigm(z[3]);
    let c = fg * cp_j + ig * gg;
    let h = og * tanh(c);
    let gb = p.g + u.row * 4u * p.hidden + u.j;
    work[gb] = ig;
    work[gb + p.hidden] = fg;
    work[gb + 2u * p.hidden] = gg;
    work[gb + 3u * p.hidden] = og;
    work[p.c + u.row * p.hidden + u.j] = c;
    work[p.h + u.row * p.hidden + u.j] = h;
    work[p.hp + u.row * p.hidden + u.j] = hp_j;
    work[p.cp + u.row * p.hidden + u.j] = cp_j;
    if (p.t + 1u == p.len) {
        state_out[s + u.j] = h;
        state_out[s + p.hidden + u.j] = c;
    }
}

@compute @workgroup_size(256)
fn lm_step_back(grid: Grid) {
    let u = unit_of(flat_index(grid));
    if (u.n >= p.batch) { return; }
    var dh = bwork[p.dha + u.row * p.hidden + u.j];
    var dc = 0.0;
    if (p.t + 1u < p.len && chunk[2u * p.batch * p.len + u.row + 1u] == 0u) {
        let next = u.row + 1u;
        let wh = p.th_off + u.n * p.th_bs + p.wh_off + u.j * 4u * p.hidden;
        for (var k = 0u; k < 4u * p.hidden; k++) {
            dh = fma(bwork[p.dz + next * 4u * p.hidden + k], theta[wh + k], dh);
        }
        dc = bwork[p.dcp + next * p.hidden + u.j];
    }
    let gb = p.g + u.row * 4u * p.hidden + u.j;
    let ig = bwork[gb];
    let fg = bwork[gb + p.hidden];
    let gg = bwork[gb + 2u * p.hidden];
    let og = bwork[gb + 3u * p.hidden];
    let tc = tanh(bwork[p.c + u.row * p.hidden + u.j]);
    let cp = bwork[p.cp + u.row * p.hidden + u.j];
    dc = dc + dh * og * (1.0 - tc * tc);
    let db = p.dz + u.row * 4u * p.hidden + u.j;
    bwork[db] = dc * gg * ig * (1.0 - ig);
    bwork[db + p.hidden] = dc * cp * fg * (1.0 - fg);
    bwork[db + 2u * p.hidden] = dc * ig * (1.0 - gg * gg);
    bwork[db + 3u * p.hidden] = dh * tc * og * (1.0 - og);
    bwork[p.dcp + u.row * p.hidden + u.j] = dc * fg;
}

@compute @workgroup_size(256)
fn lm_embed_grad(grid: Grid) {
    let i = flat_index(grid);
    let e_n = p.width;
    let l = p.len;
    if (i >= p.batch * l * e_n) { return; }
    let nu = i / e_n;
    let e = i % e_n;
    let n = nu / l;
    let u = nu % l;
    let nl = p.batch * l;
    let seg = 4u * nl + n * (l + 1u);
    let a = chunk[seg + u];
    let b = chunk[seg + u + 1u];
    if (a >= b) { return; }
    let order = 3u * nl + n * l;
    let v = chunk[n * l + chunk[order + a]];
    var s = 0.0;
    for (var k = a; k < b; k++) {
        s += dx[(n * l + chunk[order + k]) * e_n + e];
    }
    let o = p.th_off + n * p.th_bs + p.emb_off + v * e_n + e;
    if (p.accumulate != 0u) { s = grad[o] + s; }
    grad[o] = s;
}
