"""Shared parts of the W1 peer benchmarks (benches/peers/pytorch_l2l.py and jax_l2l.py).

W1: L2L meta-training of the coordinatewise LSTM optimizer (2 layers × 20 units, LogAndSign
p = 10, output × 0.1; docs/optimizers.md) on N MLPs 784-20-10 sigmoid, batch 128, synthetic
images, unroll T = 20, truncated meta-gradient (the optimizer's input g_t is a constant; the
meta-gradient flows through θ_{t+1} = θ_t + u_t and the losses), meta-loss = mean over
instances of the mean of ℓ_1 … ℓ_T, meta-Adam (lr 1e-3, gradient clipped to norm 1).

Only the standard library and numpy here, so both peers share the file reader, the data
generator, the JSON schema and the timing rule.
"""
import json
import math
import struct
import time

import numpy as np

HIDDEN = 20
LOG_P = 10.0
EPS = 1e-8
OUT_SCALE = 0.1
PHI_LEN = 12 * HIDDEN * HIDDEN + 17 * HIDDEN + 1
# φ blocks in order: Wx1 [4H,2], Wh1 [4H,H], b1 [4H], Wx2 [4H,H], Wh2 [4H,H], b2 [4H], wo [H], bo [1]
PHI_SIZES = [8 * HIDDEN, 4 * HIDDEN * HIDDEN, 4 * HIDDEN, 4 * HIDDEN * HIDDEN, 4 * HIDDEN * HIDDEN, 4 * HIDDEN, HIDDEN, 1]

WIDTHS = [784, 20, 10]
BATCH = 128
UNROLL = 20
META_LR = 1e-3
CLIP = 1.0
PEAK_FLOPS = 44.5e12


def read_safetensors(path):
    """(metadata, {name: float32 numpy array}) of a metalearn export (docs/export.md)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", info
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[base + a : base + b], dtype=np.float32).reshape(info["shape"])
    return meta, out


def check_w1_export(meta):
    """Refuse exports that are not of the W1 kind (MLP task, LSTM optimizer, truncated mode)."""
    want = {"task": "mlp", "optimizer": "lstm", "mode": "truncated", "learn_init": "false"}
    for k, v in want.items():
        if meta.get(k) != v:
            raise SystemExit(f"the export has {k} = {meta.get(k)!r}; the W1 check needs {v!r}")
    if int(meta["optimizer.hidden"]) != HIDDEN:
        raise SystemExit("the export's LSTM is not 2 × 20")


def export_layout(meta):
    """[(name, shape, offset)] of one instance's parameters, in the order l0.w, l0.b, l1.w, …"""
    layout = json.loads(meta["layout"])
    for e in layout:
        if e.get("transposed") or e.get("tied"):
            raise SystemExit("tied layers are not part of W1")
    return [(e["name"], e["shape"], e["offset"]) for e in layout]


def synthetic_images(seed, count, features=784, classes=10):
    """The distribution of metalearn's `data::synthetic_images`: one random prototype per class
    (uniform bytes), each image its class prototype plus uniform integer noise in [−100, 100],
    clamped to [0, 255], scaled by 1/255. Returns (float32 [count, features], int64 [count])."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(classes, features))
    labels = rng.integers(0, classes, size=count)
    noise = rng.integers(-100, 101, size=(count, features))
    pixels = np.clip(protos[labels] + noise, 0, 255).astype(np.float32) / 255.0
    return pixels, labels.astype(np.int64)


def mlp_init(rng, instances, widths=WIDTHS):
    """Per-layer (W [N, in, out], b [N, out]) drawn from U(−1/√fan_in, 1/√fan_in)."""
    out = []
    for l in range(len(widths) - 1):
        bound = 1.0 / math.sqrt(widths[l])
        w = rng.uniform(-bound, bound, size=(instances, widths[l], widths[l + 1])).astype(np.float32)
        b = rng.uniform(-bound, bound, size=(instances, widths[l + 1])).astype(np.float32)
        out.append((w, b))
    return out


def lstm_init_phi(rng):
    """φ initialised as docs/optimizers.md says."""
    H = HIDDEN
    s = 1.0 / math.sqrt(H)
    b = np.zeros(4 * H, np.float32)
    b[H : 2 * H] = 1.0
    parts = [
        rng.uniform(-s, s, 8 * H),
        rng.uniform(-s, s, 4 * H * H),
        b,
        rng.uniform(-s, s, 4 * H * H),
        rng.uniform(-s, s, 4 * H * H),
        b.copy(),
        0.1 * rng.uniform(-s, s, H),
        np.zeros(1),
    ]
    return np.concatenate(parts).astype(np.float32)


def params_per_instance(widths=WIDTHS):
    return sum(widths[l] * widths[l + 1] + widths[l + 1] for l in range(len(widths) - 1))


def steps_per_run(warm_seconds):
    """Outer steps per timed run: enough for about half a second, from 1 to 5 (as metalearn)."""
    if warm_seconds <= 0:
        return 5
    return max(1, min(5, math.ceil(0.5 / warm_seconds)))


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_case(step, sync, repeats):
    """One warm-up outer step, then the median over `repeats` runs of a few outer steps of the
    seconds per outer step, each run ended by a device sync. Returns (seconds, steps per run,
    warm-up seconds)."""
    t0 = time.perf_counter()
    step()
    sync()
    warm = time.perf_counter() - t0
    k = steps_per_run(warm)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        for _ in range(k):
            step()
        sync()
        times.append((time.perf_counter() - t) / k)
    return median(times), k, warm


def row(case, implementation, instances, status, **fields):
    """One result in the schema of `metalearn bench --json`."""
    r = {"case": case, "implementation": implementation, "instances": instances, "status": status}
    r.update(fields)
    if "step_seconds" in fields:
        r["inner_steps_x_instances_per_second"] = UNROLL * instances / fields["step_seconds"]
    return r


def write_json(path, adapter, backend, workload, results, extra=None):
    doc = {"adapter": adapter, "backend": backend, "workload": workload, "results": results}
    if extra:
        doc.update(extra)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def parse_instances(s):
    out = [int(v) for v in s.split(",") if v.strip()]
    if not out or min(out) < 1:
        raise SystemExit(f"bad instance list {s!r}")
    return out
