// Plain gradient descent over a flat parameter buffer:
//     θ[t_off + i] ← θ[t_off + i] − lr · g[g_off + i]        for i < count
// (all parameters of all instances at once; tied parameters occupy one storage, updated once).
// One thread per element; 1-D index (wid.x + wid.y·nwg.x)·256 + local index.
//
// `p: Params` and the storage bindings are declared from src/kernels/sgd.rs.

@compute @workgroup_size(256)
fn sgd(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    theta[p.t_off + i] = theta[p.t_off + i] - p.lr * grad[p.g_off + i];
}
