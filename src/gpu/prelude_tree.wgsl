// Prelude of shaders with a 256-wide workgroup reduction (`tree_reduction` in `shader!`).
//
// tree_sum_256 sums one value per invocation of a 256-wide workgroup by a fixed binary tree
// (pairs at distance 128, 64, …, 1), so the result does not depend on scheduling: every such
// reduction is deterministic and bit-reproducible. The total is left in tree_256[0], visible
// to every invocation after the last barrier. Call it from workgroup-uniform control flow.

var<workgroup> tree_256: array<f32, 256>;

fn tree_sum_256(li: u32, s: f32) {
    tree_256[li] = s;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w >>= 1u) {
        if (li < w) { tree_256[li] = tree_256[li] + tree_256[li + w]; }
        workgroupBarrier();
    }
}
