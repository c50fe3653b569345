// Prelude of every metalearn shader (prepended at pipeline creation).
//
// Grids wider than max_compute_workgroups_per_dimension are split over x and y by the host
// (gpu::split_grid): a kernel sees its 1-D workgroup number g = wid.x + wid.y·nwg.x and, for
// 256-wide workgroups, the 1-D invocation number g·256 + local index. Invocations past the
// element count return early in each kernel.

fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return flat_group(wid, nwg) * 256u + li;
}
