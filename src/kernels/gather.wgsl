// Sample a batch per instance from a dataset held on the GPU as bytes, and gather it.
//
// Images: `count` images of F = features bytes each, packed four per u32 (little-endian), pixel
// value v ∈ 0..255 read as v · (1/255) (a correctly rounded product, so
// exactly reproducible on the CPU). Labels: one u32 per image.
// For instance n < batch and row b < rows, at inner step `step` with seed `seed` (instances that
// are copies of the first `period` draw the rows of instance n mod period; a shard of a larger set
// starting at instance `first` draws those of first + n mod period):
//     idx = pcg(pcg(pcg(pcg(seed) ^ (first + n mod period)) ^ step) ^ b) mod count   (counter-based)
//     x[x_off + (n·rows + b)·F + f] = byte(idx·F + f) · (1/255)              for f < F
//     y[y_off + n·rows + b]        = labels[idx]
// with pcg from the prelude. One thread per output element of x.
//
// `p: Params` and the storage bindings are declared from src/kernels/gather.rs.

@compute @workgroup_size(256)
fn gather(grid: Grid) {
    let t = flat_index(grid);
    let per_inst = p.rows * p.features;
    if (t >= p.batch * per_inst) { return; }
    let n = t / per_inst;
    let b = (t % per_inst) / p.features;
    let f = t % p.features;
    let idx = pcg(pcg(pcg(pcg(p.seed) ^ (p.first + n % p.period)) ^ p.step) ^ b) % p.count;
    let byte_index = idx * p.features + f;
    let word = images[byte_index / 4u];
    let v = (word >> (8u * (byte_index % 4u))) & 0xffu;
    x[p.x_off + t] = f32(v) * (1.0 / 255.0);
    if (f == 0u) { y[p.y_off + n * p.rows + b] = labels[idx]; }
}
