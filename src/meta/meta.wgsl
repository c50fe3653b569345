// The outer step: meta-loss, and the Adam meta-optimizer with gradient-norm clipping.
//
// meta_loss (one 256-invocation workgroup): losses ℓ[t·N + n] for t ≤ T, n < N, weights w[t]:
//     M = Σ_t Σ_n w[t]·ℓ[t·N + n] / N      summed in a fixed order (thread l takes the flat
//     indices j ≡ l mod 256 in increasing j, then a fixed binary tree) → status[0]
//
// meta_adam (one invocation per meta-parameter; status[1] = ‖ḡ‖², from a reduction):
//     if M or ‖ḡ‖² is not finite: no update; status[2] = 1·[M not finite] + 2·[ḡ not finite]
//     else: s = min(1, clip/‖ḡ‖) (s = 1 when clip ≤ 0);  ĝ = s·ḡ
//           m ← β1·m + (1 − β1)·ĝ;  v ← β2·v + (1 − β2)·ĝ²
//           x ← x − lr·(m/c1)/(√(v/c2) + eps),  c1 = 1 − β1^k, c2 = 1 − β2^k  (k = outer step, from 1)
// Finiteness is tested on the bit pattern (exponent all ones), which no compiler may assume away.
//
// `p: Params` and the storage bindings are declared from src/meta/meta_optim.rs.

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(256)
fn meta_loss(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    let total = p.rows * p.cols;
    for (var j = li; j < total; j += 256u) {
        s = fma(weights[j / p.cols], losses[j], s);
    }
    tree_sum_256(li, s);
    if (li == 0u) { status[0] = tree_256[0] / f32(p.cols); }
}

@compute @workgroup_size(256)
fn meta_adam(grid: Grid) {
    let i = flat_index(grid);
    let m_ok = finite(astatus[0]);
    let g_ok = finite(astatus[1]);
    if (i == 0u) { astatus[2] = select(0.0, 1.0, !m_ok) + select(0.0, 2.0, !g_ok); }
    if (i >= p.count || !m_ok || !g_ok) { return; }
    let norm = sqrt(astatus[1]);
    var s = 1.0;
    if (p.clip > 0.0 && norm > p.clip) { s = p.clip / norm; }
    let gi = s * grad[i];
    let m = p.beta1 * moments[i] + (1.0 - p.beta1) * gi;
    let v = p.beta2 * moments[p.count + i] + (1.0 - p.beta2) * gi * gi;
    moments[i] = m;
    moments[p.count + i] = v;
    params[i] = params[i] - p.lr * (m / p.c1) / (sqrt(v / p.c2) + p.eps);
}
