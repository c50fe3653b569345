// The update of dynamic evaluation (Krause et al. 2018) over the fast weights of N instances,
// one thread per coordinate i < P of instance n:
//
//     θ_n[i] ← θ_n[i] − lr · pre[i] · g_n[i] + decay · rate[i] · (θs[i] − θ_n[i])
//
// θs: the static (trained) values of the fast weights, one block for all instances.
// SGD rule (p.scaled = 0): pre = rate = 1. RMS rule (p.scaled = 1): pre = 1 / (RMS_i + ε) and
// rate = min(RMS_i / mean RMS, 1 / decay), read from scales[i] and scales[P + i] (RMS_i: the
// root mean square of coordinate i's gradient over training chunks). With p.lr = 0 the gradient
// is not read (the decay step after another optimizer's update).
//
// `p: Params` and the storage bindings are declared from src/tasks/lm/dynamic.rs.

@compute @workgroup_size(256)
fn lm_dynamic_update(grid: Grid) {
    let k = flat_index(grid);
    if (k >= p.batch * p.count) { return; }
    let n = k / p.count;
    let i = k % p.count;
    let t = p.t_off + n * p.t_bs + i;
    var pre = 1.0;
    var rate = 1.0;
    if (p.scaled != 0u) {
        pre = scales[i];
        rate = scales[p.count + i];
    }
    var step = p.decay * rate * (statics[p.s_off + i] - theta[t]);
    if (p.lr != 0.0) {
        step = step - p.lr * pre * grad[p.g_off + n * p.g_bs + i];
    }
    theta[t] = theta[t] + step;
}
