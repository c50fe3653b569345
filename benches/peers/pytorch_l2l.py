#!/usr/bin/env python3
"""W1 peer in PyTorch eager (float32, TF32 off): L2L meta-training of the coordinatewise LSTM
optimizer on N MLPs 784-20-10 sigmoid; the workload is described in benches/peers/common.py.

    python3 benches/peers/pytorch_l2l.py --instances 1,16,256,1024 --json torch.json \
        [--check EXPORT.safetensors] [--variants a,b,c] [--repeats 5] [--budget-s 240]

Variants (same math, different batching):
  a  "seed article" style: per instance, a loop over the model's parameter tensors, one LSTM
     call per tensor with its own hidden state; meta_loss.backward()
  b  the MLPs run one instance at a time, all coordinates of all instances in one LSTM call
  c  batched over N instances: stacked parameters (bmm), one LSTM call over N·P coordinates

Timing: one warm-up outer step, then the median of `--repeats` runs of a few outer steps,
torch.cuda.synchronize() before the clock stops. An outer step = sample batches and initial
parameters, unroll T = 20 steps, meta_loss.backward(), clip to norm 1, Adam on φ. Out of memory
is recorded as "oom". With --check, one `metalearn export` of the W1 kind (`metalearn export
--task mlp --optimizer lstm --unroll 20 --out FILE`) is recomputed by each variant and the
relative differences of the meta-loss (must be ≤ 1e-4) and of ∂M/∂φ are printed and stored.
"""
import argparse
import gc
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")


def phi_parts(phi):
    """(W1 [4H, 2+H], b1, W2 [4H, 2H], b2, wo, bo) as differentiable views of the flat φ."""
    H = C.HIDDEN
    wx1, wh1, b1, wx2, wh2, b2, wo, bo = torch.split(phi, C.PHI_SIZES)
    w1 = torch.cat([wx1.view(4 * H, 2), wh1.view(4 * H, H)], 1)
    w2 = torch.cat([wx2.view(4 * H, H), wh2.view(4 * H, H)], 1)
    return w1, b1, w2, b2, wo, bo


def cell(x, h, c, w, b):
    a = torch.addmm(b, torch.cat([x, h], 1), w.t())
    i, f, gg, o = a.chunk(4, 1)
    i, f, o, gg = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(gg)
    c = f * c + i * gg
    return o * torch.tanh(c), c


def lstm_opt(p, g, state):
    """Update u [C] and the new state for gradients g [C] (a constant)."""
    w1, b1, w2, b2, wo, bo = p
    x1 = torch.clamp(torch.log(g.abs() + C.EPS) / C.LOG_P, -1.0, 1.0)
    x2 = torch.clamp(g * math.exp(C.LOG_P), -1.0, 1.0)
    x = torch.stack([x1, x2], 1)
    h1, c1, h2, c2 = state
    h1, c1 = cell(x, h1, c1, w1, b1)
    h2, c2 = cell(h1, h2, c2, w2, b2)
    u = C.OUT_SCALE * (h2 @ wo + bo)
    return u, (h1, c1, h2, c2)


def zero_state(count, dev):
    return tuple(torch.zeros(count, C.HIDDEN, device=dev) for _ in range(4))


def mlp_losses(theta, x, y):
    """Per-instance mean cross-entropy [N]; theta = [W0 [N,in,out], b0 [N,out], W1, b1, …]."""
    h = x
    L = len(theta) // 2
    for l in range(L):
        h = torch.baddbmm(theta[2 * l + 1][:, None, :], h, theta[2 * l])
        if l + 1 < L:
            h = torch.sigmoid(h)
    n, b, k = h.shape
    return F.cross_entropy(h.reshape(n * b, k), y.reshape(n * b), reduction="none").view(n, b).mean(1)


def mlp_loss_one(theta, x, y):
    """Mean cross-entropy of one instance; theta = [W0 [in,out], b0, W1, b1, …]."""
    h = x
    L = len(theta) // 2
    for l in range(L):
        h = torch.addmm(theta[2 * l + 1], h, theta[2 * l])
        if l + 1 < L:
            h = torch.sigmoid(h)
    return F.cross_entropy(h, y)


def meta_loss_c(phi, theta0, batches, weights):
    """Variant c: batched over instances, one LSTM call per step over all N·P coordinates."""
    p = phi_parts(phi)
    theta = [t.detach().requires_grad_(True) for t in theta0]
    shapes = [t.shape for t in theta]
    sizes = [t.numel() for t in theta]
    state = zero_state(sum(sizes), phi.device)
    T = len(weights) - 1
    M = phi.new_zeros(())
    for t in range(T + 1):
        x, y = batches(t)
        l = mlp_losses(theta, x, y)
        if weights[t] != 0.0:
            M = M + weights[t] * l.mean()
        if t == T:
            break
        g = torch.autograd.grad(l.sum(), theta, retain_graph=True)
        u, state = lstm_opt(p, torch.cat([gi.reshape(-1) for gi in g]), state)
        theta = [th + ui.view(sh) for th, ui, sh in zip(theta, u.split(sizes), shapes)]
    return M


def meta_loss_b(phi, theta0, batches, weights):
    """Variant b: the MLP of each instance on its own, one LSTM call over all coordinates."""
    p = phi_parts(phi)
    n = theta0[0].shape[0]
    theta = [[t[i].detach().clone().requires_grad_(True) for t in theta0] for i in range(n)]
    flat = [t for inst in theta for t in inst]
    shapes = [t.shape for t in flat]
    sizes = [t.numel() for t in flat]
    state = zero_state(sum(sizes), phi.device)
    T = len(weights) - 1
    M = phi.new_zeros(())
    k = len(theta0)
    for t in range(T + 1):
        x, y = batches(t)
        losses = [mlp_loss_one(theta[i], x[i], y[i]) for i in range(n)]
        l = torch.stack(losses)
        if weights[t] != 0.0:
            M = M + weights[t] * l.mean()
        if t == T:
            break
        g = torch.autograd.grad(l.sum(), flat, retain_graph=True)
        u, state = lstm_opt(p, torch.cat([gi.reshape(-1) for gi in g]), state)
        flat = [th + ui.view(sh) for th, ui, sh in zip(flat, u.split(sizes), shapes)]
        theta = [flat[i * k : (i + 1) * k] for i in range(n)]
    return M


def meta_loss_a(phi, theta0, batches, weights):
    """Variant a ("seed article"): for each instance, a loop over its parameter tensors, the
    LSTM applied to each tensor's coordinates with that tensor's own hidden state."""
    p = phi_parts(phi)
    n = theta0[0].shape[0]
    T = len(weights) - 1
    M = phi.new_zeros(())
    theta = [[t[i].detach().clone().requires_grad_(True) for t in theta0] for i in range(n)]
    states = [[zero_state(t.numel(), phi.device) for t in inst] for inst in theta]
    for t in range(T + 1):
        x, y = batches(t)
        for i in range(n):
            l = mlp_loss_one(theta[i], x[i], y[i])
            if weights[t] != 0.0:
                M = M + weights[t] * l / n
            if t == T:
                continue
            g = torch.autograd.grad(l, theta[i], retain_graph=True)
            new = []
            for j, (th, gj) in enumerate(zip(theta[i], g)):
                u, states[i][j] = lstm_opt(p, gj.reshape(-1), states[i][j])
                new.append(th + u.view(th.shape))
            theta[i] = new
    return M


VARIANTS = {"a": meta_loss_a, "b": meta_loss_b, "c": meta_loss_c}
NAMES = {
    "a": "pytorch eager, per-tensor LSTM loop (seed article)",
    "b": "pytorch eager, per-instance MLP, one LSTM call",
    "c": "pytorch eager, batched over N (stacked parameters)",
}


def is_oom(e):
    s = str(e)
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in s or "CUBLAS_STATUS_ALLOC_FAILED" in s


def agreement(path, dev, variants):
    """Recompute a W1-kind export with each variant; relative differences of M and ∂M/∂φ."""
    meta, ts = C.read_safetensors(path)
    C.check_w1_export(meta)
    N, T = int(meta["instances"]), int(meta["unroll"])
    layout = C.export_layout(meta)
    init = torch.tensor(ts["init"], device=dev)
    theta0 = [init[:, off : off + math.prod(shape)].reshape(N, *shape) for _, shape, off in layout]
    xs = [torch.tensor(ts[f"batch.{t}.x"], device=dev) for t in range(T + 1)]
    ys = [torch.tensor(ts[f"batch.{t}.labels"], device=dev).long() for t in range(T + 1)]
    weights = [float(v) for v in ts["weights"]]
    out = {}
    for v in variants:
        phi = torch.tensor(ts["phi"], device=dev).requires_grad_(True)
        M = VARIANTS[v](phi, theta0, lambda t: (xs[t], ys[t]), weights)
        M.backward()
        want = float(ts["meta_loss"][0])
        rel = abs(M.item() - want) / abs(want)
        gw = torch.tensor(ts["grad.phi"], device=dev)
        grel = ((phi.grad - gw).abs().max() / gw.abs().max()).item()
        ok = rel <= 1e-4
        print(f"agreement {v}: meta-loss {M.item():.7f} vs metalearn {want:.7f}: relative difference "
              f"{rel:.2e} ({'OK' if ok else 'MISMATCH'}); d M/d phi {grel:.2e}")
        out[v] = {"meta_loss": M.item(), "metalearn_meta_loss": want, "relative_difference": rel,
                  "grad_phi_relative_difference": grel, "ok": ok}
    return {"export": os.path.basename(path), "unroll": T, "instances": N,
            "widths": meta.get("task.widths"), "batch": int(meta["task.batch"]), "variants": out}


def bench_case(v, n, dev, data, repeats):
    xs, ys = data
    rng = np.random.default_rng(0)
    phi = torch.tensor(C.lstm_init_phi(rng), device=dev).requires_grad_(True)
    opt = torch.optim.Adam([phi], lr=C.META_LR)
    weights = [0.0] + [1.0 / C.UNROLL] * C.UNROLL
    widths = C.WIDTHS

    def step():
        idx = torch.randint(0, xs.shape[0], (C.UNROLL + 1, n, C.BATCH), device=dev)
        theta0 = []
        for l in range(len(widths) - 1):
            bound = 1.0 / math.sqrt(widths[l])
            theta0.append((torch.rand(n, widths[l], widths[l + 1], device=dev) * 2 - 1) * bound)
            theta0.append((torch.rand(n, widths[l + 1], device=dev) * 2 - 1) * bound)
        M = VARIANTS[v](phi, theta0, lambda t: (xs[idx[t]], ys[idx[t]]), weights)
        opt.zero_grad(set_to_none=True)
        M.backward()
        torch.nn.utils.clip_grad_norm_([phi], C.CLIP)
        opt.step()

    torch.cuda.reset_peak_memory_stats(dev)
    sec, k, warm = C.time_case(step, torch.cuda.synchronize, repeats)
    return sec, k, warm, torch.cuda.max_memory_allocated(dev)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", default="1,16,256,1024")
    ap.add_argument("--variants", default="a,b,c")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--check", default=None, help="a metalearn export of the W1 kind")
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip cases that start after this many seconds")
    ap.add_argument("--max-loop-instances", type=int, default=16,
                    help="largest N for variants a and b (their Python loops grow with N)")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type != "cuda":
        torch.cuda.synchronize = lambda *args: None
        torch.cuda.reset_peak_memory_stats = lambda *args: None
        torch.cuda.max_memory_allocated = lambda *args: 0
    variants = [v for v in a.variants.split(",") if v]
    t_start = time.perf_counter()
    extra = {"torch": torch.__version__, "cuda": torch.version.cuda, "dtype": "float32, TF32 off",
             "workload_detail": "W1: LSTM 2x20 LogAndSign on 784-20-10 sigmoid MLPs, B=128, T=20, truncated"}
    if a.check:
        extra["agreement"] = agreement(a.check, dev, variants)
    px, py = C.synthetic_images(0, 2000)
    data = (torch.tensor(px, device=dev), torch.tensor(py, device=dev))
    results = []
    adapter = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"W1 on {adapter}, torch {torch.__version__}: median of {a.repeats} runs")
    print(f"{'variant':<8} {'N':>6} {'ms/outer':>12} {'steps×inst/s':>14} {'peak MiB':>10}")
    for n in C.parse_instances(a.instances):
        for v in variants:
            case = f"w1 {NAMES[v]} N={n}"
            impl = f"pytorch-{v}"
            if v in "ab" and n > a.max_loop_instances:
                results.append(C.row(case, impl, n, "skipped", reason=f"N > {a.max_loop_instances} for a Python loop over instances"))
                continue
            if time.perf_counter() - t_start > a.budget_s:
                results.append(C.row(case, impl, n, "skipped", reason="time budget"))
                print(f"{v:<8} {n:>6} skipped (time budget)")
                continue
            try:
                sec, k, warm, mem = bench_case(v, n, dev, data, a.repeats)
                results.append(C.row(case, impl, n, "ok", step_seconds=sec, outer_steps_per_run=k,
                                     runs=a.repeats, warm_up_seconds=warm, memory_bytes=mem))
                print(f"{v:<8} {n:>6} {sec * 1e3:>12.2f} {C.UNROLL * n / sec:>14.0f} {mem / 2**20:>10.1f}")
            except Exception as e:  # noqa: BLE001
                if not is_oom(e):
                    raise
                results.append(C.row(case, impl, n, "oom", error=str(e).split("\n")[0][:300]))
                print(f"{v:<8} {n:>6} oom")
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if a.json:
        C.write_json(a.json, adapter, f"CUDA (PyTorch {torch.__version__} eager)", "w1 peers", results, extra)


if __name__ == "__main__":
    main()
