// The 2-d toy of the PES paper (Vicol, Metz and Sohl-Dickstein 2021), every instance the same:
//     f(x) = √(x0² + 5) − √5 + sin²(x1)·e^{−5x0²} + ¼|x1 − 100|
//     ∂f/∂x0 = x0/√(x0² + 5) − 10·x0·sin²(x1)·e^{−5x0²}
//     ∂f/∂x1 = sin(2x1)·e^{−5x0²} + ¼·sign(x1 − 100)            (sign(0) = 0)
//     H00 = 5/(x0² + 5)^{3/2} + sin²(x1)·e^{−5x0²}·(100x0² − 10)
//     H01 = −10·x0·sin(2x1)·e^{−5x0²},   H11 = 2·cos(2x1)·e^{−5x0²}   (|·| has H = 0 off its kink)
// One invocation per instance n < batch, x = theta[t_off + n·t_bs + (0, 1)]:
// toy_loss_grad: loss[o_off + n·o_bs] = f(x), grad[g_off + n·g_bs + (0, 1)] = ∇f(x)
// toy_hvp:       hv[o_off + n·o_bs + (0, 1)] = ∇²f(x)·v, v = v[g_off + n·g_bs + (0, 1)]
//
// `p: Params` and the storage bindings are declared from src/tasks/toy/mod.rs.

fn x_of(n: u32) -> vec2<f32> {
    let b = p.t_off + n * p.t_bs;
    return vec2<f32>(theta[b], theta[b + 1u]);
}

@compute @workgroup_size(64)
fn toy_loss_grad(grid: Grid) {
    let n = flat_group(grid) * 64u + grid.li;
    if (n >= p.batch) { return; }
    let x = x_of(n);
    let r = sqrt(x.x * x.x + 5.0);
    let e = exp(-5.0 * x.x * x.x);
    let s = sin(x.y);
    loss[p.o_off + n * p.o_bs] = (r - sqrt(5.0)) + s * s * e + 0.25 * abs(x.y - 100.0);
    let b = p.g_off + n * p.g_bs;
    grad[b] = x.x / r - 10.0 * x.x * s * s * e;
    grad[b + 1u] = sin(2.0 * x.y) * e + 0.25 * sign(x.y - 100.0);
}

@compute @workgroup_size(64)
fn toy_hvp(grid: Grid) {
    let n = flat_group(grid) * 64u + grid.li;
    if (n >= p.batch) { return; }
    let x = x_of(n);
    let q = x.x * x.x + 5.0;
    let e = exp(-5.0 * x.x * x.x);
    let s = sin(x.y);
    let h00 = 5.0 / (q * sqrt(q)) + s * s * e * (100.0 * x.x * x.x - 10.0);
    let h01 = -10.0 * x.x * sin(2.0 * x.y) * e;
    let h11 = 2.0 * cos(2.0 * x.y) * e;
    let vb = p.g_off + n * p.g_bs;
    let v0 = v[vb];
    let v1 = v[vb + 1u];
    let b = p.o_off + n * p.o_bs;
    hv[b] = h00 * v0 + h01 * v1;
    hv[b + 1u] = h01 * v0 + h11 * v1;
}
