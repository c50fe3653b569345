// Element-wise vector operations over ranges of flat buffers (one thread per element; 1-D index
// (wid.x + wid.y·nwg.x)·256 + local index; elements past `count` skip).
//
//   fill:       y[yo + i] = a                                   i < count
//   axpy:       y[yo + i] = y[yo + i] + a · x[xo + i]           i < count
//   axpby:      z[zo + i] = a · x[xo + i] + b · y[yo + i]       i < count
//   broadcast:  y[yo + n·ys + i] = x[xo + i]                    i < count, n < batch
//   copy4:      y[yo + i] = x[xo + i]  i < count; count, xo, yo multiples of 4, one vec4 per
//               invocation (the bandwidth reference of benchmarks)
//
// `p: Params` and the storage bindings are declared from src/kernels/vec.rs.

@compute @workgroup_size(256)
fn fill(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    fill_y[p.yo + i] = p.a;
}

@compute @workgroup_size(256)
fn axpy(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    y[p.yo + i] = y[p.yo + i] + p.a * x[p.xo + i];
}

@compute @workgroup_size(256)
fn axpby(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count) { return; }
    z[p.zo + i] = p.a * x[p.xo + i] + p.b * yin[p.yo + i];
}

@compute @workgroup_size(256)
fn broadcast(grid: Grid) {
    let t = flat_index(grid);
    if (t >= p.count * p.batch) { return; }
    let n = t / p.count;
    let i = t % p.count;
    y[p.yo + n * p.ys + i] = x[p.xo + i];
}

@compute @workgroup_size(256)
fn copy4(grid: Grid) {
    let i = flat_index(grid);
    if (i >= p.count / 4u) { return; }
    y4[p.yo / 4u + i] = x4[p.xo / 4u + i];
}
