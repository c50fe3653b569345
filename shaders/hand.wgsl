// Hand-designed inner optimizers over the C coordinates of all instances (one invocation each).
// t counts the steps taken before this one. Slots: θ at slot[0..C], state at slot[C + k·C + i].
//
// adam_step     (m, v):  m' = β1·m + (1 − β1)·g,  v' = β2·v + (1 − β2)·g²
//                        u = −lr·(m'/c1)/(√(v'/c2) + eps),  c1 = 1 − β1^(t+1), c2 = 1 − β2^(t+1)
// momentum_step (m):     m' = μ·m + g,            u = −lr·m'                 (μ = beta1)
// nag_step      (m):     m' = μ·m + g,            u = −lr·(g + μ·m')         (Nesterov, μ = beta1)
// rmsprop_step  (v):     v' = ρ·v + (1 − ρ)·g²,   u = −lr·g/(√v' + eps)      (ρ = beta2)
// θ' = θ + u. The state depends on g only, so in the first-order and truncated modes (g
// detached) the reverse of a step is the identity on θ̄ plus the meta-loss term (vec.wgsl axpy).

struct Params {
    count: u32, _p0: u32, _p1: u32, _p2: u32,
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    c1: f32, c2: f32, _f0: f32, _f1: f32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<storage, read> slot_in: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> slot_out: array<f32>;

fn index(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + li;
}

@compute @workgroup_size(256)
fn adam_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = index(wid, nwg, li);
    let c = p.count;
    if (i >= c) { return; }
    let gi = g[i];
    let m = p.beta1 * slot_in[c + i] + (1.0 - p.beta1) * gi;
    let v = p.beta2 * slot_in[2u * c + i] + (1.0 - p.beta2) * gi * gi;
    let u = -p.lr * (m / p.c1) / (sqrt(v / p.c2) + p.eps);
    slot_out[i] = slot_in[i] + u;
    slot_out[c + i] = m;
    slot_out[2u * c + i] = v;
}

@compute @workgroup_size(256)
fn momentum_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = index(wid, nwg, li);
    let c = p.count;
    if (i >= c) { return; }
    let m = p.beta1 * slot_in[c + i] + g[i];
    slot_out[i] = slot_in[i] - p.lr * m;
    slot_out[c + i] = m;
}

@compute @workgroup_size(256)
fn nag_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = index(wid, nwg, li);
    let c = p.count;
    if (i >= c) { return; }
    let gi = g[i];
    let m = p.beta1 * slot_in[c + i] + gi;
    slot_out[i] = slot_in[i] - p.lr * (gi + p.beta1 * m);
    slot_out[c + i] = m;
}

@compute @workgroup_size(256)
fn rmsprop_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = index(wid, nwg, li);
    let c = p.count;
    if (i >= c) { return; }
    let gi = g[i];
    let v = p.beta2 * slot_in[c + i] + (1.0 - p.beta2) * gi * gi;
    slot_out[i] = slot_in[i] - p.lr * gi / (sqrt(v) + p.eps);
    slot_out[c + i] = v;
}
