// Prelude of every metalearn shader (prepended at pipeline creation).
//
// Grids wider than max_compute_workgroups_per_dimension are split over x and y by the host
// (gpu::split_grid): a kernel takes the builtins as one `grid: Grid` argument and sees its 1-D
// workgroup number g = wid.x + wid.y·nwg.x (flat_group) and, for 256-wide workgroups, the 1-D
// invocation number g·256 + local index (flat_index). Invocations past the element count return
// early in each kernel.

struct Grid {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
}

fn flat_group(grid: Grid) -> u32 {
    return grid.wid.x + grid.wid.y * grid.nwg.x;
}

fn flat_index(grid: Grid) -> u32 {
    return flat_group(grid) * 256u + grid.li;
}

// Where coordinate i's φ starts when blocks of `block` coordinates each have their own φ,
// `stride` floats apart from `off` (the particles of an evolution-strategies estimate);
// block = 0: every coordinate reads φ at `off`.
fn phi_block_offset(off: u32, i: u32, block: u32, stride: u32) -> u32 {
    if (block == 0u) { return off; }
    return off + (i / block) * stride;
}

// The PCG output permutation of a 32-bit counter (mod 2³²): s = v·747796405 + 2891336453,
// w = ((s >> ((s >> 28) + 4)) ^ s)·277803737, (w >> 22) ^ w — the counter hash of batch sampling
// and of ES noise (`kernels::gather::pcg` on the CPU).
fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}
