#!/usr/bin/env python3
"""W1 peer in JAX (float32, matmul precision "highest"): L2L meta-training of the coordinatewise
LSTM optimizer on N MLPs 784-20-10 sigmoid; the workload is described in benches/peers/common.py.

    python3 benches/peers/jax_l2l.py --instances 1,16,256,1024 --json jax.json \
        [--check EXPORT.safetensors] [--variants scan,remat] [--repeats 5] [--budget-s 240]

One jitted outer step: sample batch indices and initial parameters, lax.scan over the T inner
steps of one instance, jax.vmap over the N instances, jax.value_and_grad of the meta-loss with
respect to φ through the whole unroll (the inner gradient passes through lax.stop_gradient:
the truncated mode), clipping to norm 1 and Adam on φ.
  scan   the scanned step as it is (XLA keeps what the reverse needs)
  remat  the scanned step wrapped in jax.checkpoint (the reverse recomputes each step)
Timing: compile, one warm-up outer step, then the median of `--repeats` runs of a few outer
steps, block_until_ready before the clock stops. Out of memory is recorded as "oom". With
--check, a `metalearn export` of the W1 kind is recomputed and the relative differences of the
meta-loss (must be ≤ 1e-4) and of ∂M/∂φ are printed and stored.
"""
import argparse
import math
import os
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

OFFSETS = np.cumsum(C.PHI_SIZES)[:-1].tolist()


def phi_parts(phi):
    H = C.HIDDEN
    wx1, wh1, b1, wx2, wh2, b2, wo, bo = jnp.split(phi, OFFSETS)
    w1 = jnp.concatenate([wx1.reshape(4 * H, 2), wh1.reshape(4 * H, H)], 1)
    w2 = jnp.concatenate([wx2.reshape(4 * H, H), wh2.reshape(4 * H, H)], 1)
    return w1, b1, w2, b2, wo, bo


def cell(x, h, c, w, b):
    a = jnp.concatenate([x, h], -1) @ w.T + b
    i, f, gg, o = jnp.split(a, 4, -1)
    i, f, o, gg = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jax.nn.sigmoid(o), jnp.tanh(gg)
    c = f * c + i * gg
    return o * jnp.tanh(c), c


def lstm_opt(p, g, state):
    w1, b1, w2, b2, wo, bo = p
    x1 = jnp.clip(jnp.log(jnp.abs(g) + C.EPS) / C.LOG_P, -1.0, 1.0)
    x2 = jnp.clip(g * math.exp(C.LOG_P), -1.0, 1.0)
    x = jnp.stack([x1, x2], -1)
    h1, c1, h2, c2 = state
    h1, c1 = cell(x, h1, c1, w1, b1)
    h2, c2 = cell(h1, h2, c2, w2, b2)
    return C.OUT_SCALE * (h2 @ wo + bo), (h1, c1, h2, c2)


def mlp_loss(theta, x, y):
    """Mean cross-entropy of one instance; theta = (W0 [in,out], b0, W1, b1, …)."""
    h = x
    L = len(theta) // 2
    for l in range(L):
        h = h @ theta[2 * l] + theta[2 * l + 1]
        if l + 1 < L:
            h = jax.nn.sigmoid(h)
    logp = jax.nn.log_softmax(h, -1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))


def unroll_one(phi, theta0, inputs, weights, fetch, remat):
    """Meta-loss of one instance: Σ_t w_t ℓ_t over an unroll of T = len(weights) − 1 steps;
    `inputs` has T + 1 entries along axis 0, fetch(entry) gives (x, y)."""
    T = weights.shape[0] - 1
    p = phi_parts(phi)
    shapes = [t.shape for t in theta0]
    sizes = [math.prod(s) for s in shapes]
    splits = np.cumsum(sizes)[:-1].tolist()
    count = sum(sizes)
    state0 = tuple(jnp.zeros((count, C.HIDDEN), jnp.float32) for _ in range(4))

    def step(carry, inp):
        theta, state = carry
        x, y = fetch(inp)
        l, g = jax.value_and_grad(mlp_loss)(theta, x, y)
        g = jax.lax.stop_gradient(g)
        u, state = lstm_opt(p, jnp.concatenate([gi.ravel() for gi in g]), state)
        us = jnp.split(u, splits)
        theta = tuple(th + ui.reshape(s) for th, ui, s in zip(theta, us, shapes))
        return (theta, state), l

    if remat:
        step = jax.checkpoint(step)
    head = jax.tree_util.tree_map(lambda a: a[:T], inputs)
    last = jax.tree_util.tree_map(lambda a: a[T], inputs)
    (theta_t, _), ls = jax.lax.scan(step, (tuple(theta0), state0), head)
    x, y = fetch(last)
    return jnp.dot(weights[:T], ls) + weights[T] * mlp_loss(theta_t, x, y)


def meta_loss(phi, theta0, inputs, weights, fetch, remat):
    per = jax.vmap(lambda th, inp: unroll_one(phi, th, inp, weights, fetch, remat))(theta0, inputs)
    return jnp.mean(per)


def agreement(path, remat):
    meta, ts = C.read_safetensors(path)
    C.check_w1_export(meta)
    N, T = int(meta["instances"]), int(meta["unroll"])
    layout = C.export_layout(meta)
    init = jnp.asarray(ts["init"])
    theta0 = tuple(init[:, off : off + math.prod(shape)].reshape(N, *shape) for _, shape, off in layout)
    xs = jnp.stack([jnp.asarray(ts[f"batch.{t}.x"]) for t in range(T + 1)], 1)  # [N, T+1, B, F]
    ys = jnp.stack([jnp.asarray(ts[f"batch.{t}.labels"]).astype(jnp.int32) for t in range(T + 1)], 1)
    weights = jnp.asarray(ts["weights"])
    f = jax.jit(jax.value_and_grad(lambda phi: meta_loss(phi, theta0, (xs, ys), weights, lambda i: i, remat)))
    M, g = f(jnp.asarray(ts["phi"]))
    want = float(ts["meta_loss"][0])
    rel = abs(float(M) - want) / abs(want)
    gw = ts["grad.phi"]
    grel = float(np.abs(np.asarray(g) - gw).max() / np.abs(gw).max())
    ok = rel <= 1e-4
    name = "remat" if remat else "scan"
    print(f"agreement {name}: meta-loss {float(M):.7f} vs metalearn {want:.7f}: relative difference "
          f"{rel:.2e} ({'OK' if ok else 'MISMATCH'}); d M/d phi {grel:.2e}")
    return name, {"meta_loss": float(M), "metalearn_meta_loss": want, "relative_difference": rel,
                  "grad_phi_relative_difference": grel, "ok": ok}


def make_step(n, remat, data_x, data_y):
    widths, T, B = C.WIDTHS, C.UNROLL, C.BATCH
    weights = jnp.asarray([0.0] + [1.0 / T] * T, jnp.float32)
    count = data_x.shape[0]

    def fetch(idx):
        return data_x[idx], data_y[idx]

    def outer(phi, m, v, t, key):
        k_idx, k_init, key = jax.random.split(key, 3)
        idx = jax.random.randint(k_idx, (n, T + 1, B), 0, count)
        theta0 = []
        ks = jax.random.split(k_init, 2 * (len(widths) - 1))
        for l in range(len(widths) - 1):
            bound = 1.0 / math.sqrt(widths[l])
            theta0.append(jax.random.uniform(ks[2 * l], (n, widths[l], widths[l + 1]), jnp.float32, -bound, bound))
            theta0.append(jax.random.uniform(ks[2 * l + 1], (n, widths[l + 1]), jnp.float32, -bound, bound))
        M, g = jax.value_and_grad(meta_loss)(phi, tuple(theta0), idx, weights, fetch, remat)
        norm = jnp.sqrt(jnp.sum(g * g))
        g = g * jnp.minimum(1.0, C.CLIP / jnp.maximum(norm, 1e-30))
        t = t + 1
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        mh = m / (1 - 0.9**t)
        vh = v / (1 - 0.999**t)
        phi = phi - C.META_LR * mh / (jnp.sqrt(vh) + 1e-8)
        return phi, m, v, t, key, M

    return jax.jit(outer, donate_argnums=(0, 1, 2))


def is_oom(e):
    s = str(e)
    return "RESOURCE_EXHAUSTED" in s or "Out of memory" in s or "out of memory" in s


def bench_case(n, remat, data, repeats):
    dx, dy = data
    f = make_step(n, remat, dx, dy)
    phi = jnp.asarray(C.lstm_init_phi(np.random.default_rng(0)))
    state = [phi, jnp.zeros_like(phi), jnp.zeros_like(phi), jnp.float32(0.0), jax.random.PRNGKey(0)]
    t0 = time.perf_counter()
    compiled = f.lower(*state).compile()
    compile_s = time.perf_counter() - t0
    planned = None
    try:
        ma = compiled.memory_analysis()
        planned = int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes)
    except Exception:  # noqa: BLE001  (not every backend reports it)
        pass

    def step():
        out = compiled(*state)
        state[:] = list(out[:5])

    def sync():
        jax.block_until_ready(state[0])

    sec, k, warm = C.time_case(step, sync, repeats)
    stats = jax.devices()[0].memory_stats() or {}
    return sec, k, warm, compile_s, planned, stats.get("peak_bytes_in_use")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", default="1,16,256,1024")
    ap.add_argument("--variants", default="scan,remat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--check", default=None, help="a metalearn export of the W1 kind")
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip cases that start after this many seconds")
    a = ap.parse_args()
    variants = [v for v in a.variants.split(",") if v]
    t_start = time.perf_counter()
    dev = jax.devices()[0]
    extra = {"jax": jax.__version__, "dtype": "float32, matmul precision highest",
             "workload_detail": "W1: LSTM 2x20 LogAndSign on 784-20-10 sigmoid MLPs, B=128, T=20, truncated",
             "memory_note": "peak_bytes_in_use is the process peak so far (cases run in increasing N); "
                            "planned_bytes is XLA's plan for the compiled outer step"}
    if a.check:
        extra["agreement"] = dict(agreement(a.check, v == "remat") for v in variants)
    px, py = C.synthetic_images(0, 2000)
    data = (jnp.asarray(px), jnp.asarray(py.astype(np.int32)))
    print(f"W1 on {dev.device_kind}, jax {jax.__version__}: median of {a.repeats} runs")
    print(f"{'variant':<8} {'N':>6} {'ms/outer':>12} {'steps×inst/s':>14} {'compile s':>10} {'plan MiB':>10}")
    results = []
    for n in C.parse_instances(a.instances):
        for v in variants:
            remat = v == "remat"
            name = "jax jit + lax.scan + vmap" + (" + jax.checkpoint" if remat else "")
            case = f"w1 {name} N={n}"
            impl = f"jax-{v}"
            if time.perf_counter() - t_start > a.budget_s:
                results.append(C.row(case, impl, n, "skipped", reason="time budget"))
                print(f"{v:<8} {n:>6} skipped (time budget)")
                continue
            try:
                sec, k, warm, comp, planned, peak = bench_case(n, remat, data, a.repeats)
                results.append(C.row(case, impl, n, "ok", step_seconds=sec, outer_steps_per_run=k, runs=a.repeats,
                                     warm_up_seconds=warm, compile_seconds=comp, planned_bytes=planned,
                                     memory_bytes=peak))
                pm = f"{planned / 2**20:.1f}" if planned else "n/a"
                print(f"{v:<8} {n:>6} {sec * 1e3:>12.2f} {C.UNROLL * n / sec:>14.0f} {comp:>10.1f} {pm:>10}")
            except Exception as e:  # noqa: BLE001
                if not is_oom(e):
                    raise
                results.append(C.row(case, impl, n, "oom", error=str(e).split("\n")[0][:300]))
                print(f"{v:<8} {n:>6} oom")
            jax.clear_caches()
    if a.json:
        C.write_json(a.json, dev.device_kind, f"{dev.platform} (JAX {jax.__version__} jit)", "w1 peers", results, extra)


if __name__ == "__main__":
    main()
