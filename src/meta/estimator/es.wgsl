// Antithetic evolution strategies (ES) and persistent evolution strategies (PES) over the M
// meta-parameters x = (φ, θ0) of one unroll, P pairs, R = 2P particles, perturbation scale σ.
//
// Noise of pair q and meta-parameter j, fresh for every unroll (k0, k1: the unroll's key; pcg
// from the prelude):
//     h1 = pcg(k0 ^ pcg(k1 ^ pcg(q ^ pcg(j)))),  h2 = pcg(h1 ^ 0x9e3779b9)
//     u1 = (⌊h1 / 2⁸⌋ + ½)/2²⁴,  u2 = ⌊h2 / 2⁸⌋/2²⁴,  z = √(−2 ln u1)·cos(2π u2)
//     z = 0 where j is not learned in this unroll (φ: learn_phi; θ0: learn_theta, which is
//     false after an episode's first unroll, whose initial θ alone is θ0).
// Particles r = 2q (+) and 2q + 1 (−):  x_r = x ± σ·z_q.
// Accumulated noise ξ_q: ES ξ = z; PES ξ = ξ_prev + z (ξ_prev = 0 when the unroll starts an
//     episode; `xi` holds ξ_prev and is advanced by es_keep after an outer step).
// Particle losses L_r = Σ_t w_t · Σ_{n<N} ℓ_t[r·N + n] / N   (instances of particle r at r·N + n,
//     summed in t then n order by one invocation per particle).
// Estimate ĝ_j = Σ_q ξ_qj·(L_2q − L_2q+1) / (2Pσ)   (q in increasing order: no atomics).
//
// es_perturb (j < M, q < P):   pert[(2q)·M + j] = x_j + σ·z,  pert[(2q+1)·M + j] = x_j − σ·z
// es_theta (i < R·N·P):        θ_0[i] = pert[r·M + L_φ + k],   r = i / (N·P), k = i mod P
// es_totals (r < R):           totals[r] = L_r
// es_grad (j < M):             grad[j] = ĝ_j
// es_keep (j < M, q < P, PES): xi[q·M + j] = ξ_qj
//
// `p: Params` and the storage bindings are declared from src/meta/estimator/es.rs.

fn learned(j: u32) -> bool {
    if (j < p.phi_len) { return p.learn_phi != 0u; }
    return p.learn_theta != 0u;
}

fn noise(q: u32, j: u32) -> f32 {
    if (!learned(j)) { return 0.0; }
    let h1 = pcg(p.k0 ^ pcg(p.k1 ^ pcg(q ^ pcg(j))));
    let h2 = pcg(h1 ^ 0x9e3779b9u);
    let u1 = (f32(h1 >> 8u) + 0.5) / 16777216.0;
    let u2 = f32(h2 >> 8u) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.2831853071795864 * u2);
}

// ξ of pair q and meta-parameter j in this unroll.
fn accumulated(q: u32, j: u32) -> f32 {
    let z = noise(q, j);
    if (p.persistent == 0u || p.reset != 0u) { return z; }
    return xi[q * p.m + j] + z;
}

// (pair q, meta-parameter j) of an invocation over the P × M of them; q = P past the end.
fn pair_coord(grid: Grid) -> vec2<u32> {
    let i = flat_index(grid);
    if (i >= p.pairs * p.m) { return vec2<u32>(p.pairs, 0u); }
    return vec2<u32>(i / p.m, i % p.m);
}

@compute @workgroup_size(256)
fn es_perturb(grid: Grid) {
    let c = pair_coord(grid);
    let q = c.x;
    let j = c.y;
    if (q >= p.pairs) { return; }
    let d = p.sigma * noise(q, j);
    let x = xmeta[j];
    pert[2u * q * p.m + j] = x + d;
    pert[(2u * q + 1u) * p.m + j] = x - d;
}

@compute @workgroup_size(256)
fn es_theta(grid: Grid) {
    let i = flat_index(grid);
    let per = p.instances * p.params;
    if (i >= 2u * p.pairs * per) { return; }
    let r = i / per;
    let k = i % p.params;
    theta[i] = tpert[r * p.m + p.phi_len + k];
}

@compute @workgroup_size(64)
fn es_totals(grid: Grid) {
    let r = flat_group(grid) * 64u + grid.li;
    if (r >= 2u * p.pairs) { return; }
    let cols = 2u * p.pairs * p.instances;
    var s = 0.0;
    for (var t = 0u; t < p.rows; t++) {
        var row = 0.0;
        for (var n = 0u; n < p.instances; n++) { row += losses[t * cols + r * p.instances + n]; }
        s = fma(weights[t], row, s);
    }
    totals[r] = s / f32(p.instances);
}

@compute @workgroup_size(256)
fn es_grad(grid: Grid) {
    let j = flat_index(grid);
    if (j >= p.m) { return; }
    var s = 0.0;
    for (var q = 0u; q < p.pairs; q++) {
        s = fma(accumulated(q, j), gtotals[2u * q] - gtotals[2u * q + 1u], s);
    }
    grad[j] = s / (2.0 * f32(p.pairs) * p.sigma);
}

@compute @workgroup_size(256)
fn es_keep(grid: Grid) {
    let c = pair_coord(grid);
    if (c.x >= p.pairs) { return; }
    xi[c.x * p.m + c.y] = accumulated(c.x, c.y);
}
