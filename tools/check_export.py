#!/usr/bin/env python3
"""Recompute a metalearn export (docs/export.md) independently with PyTorch autograd, in float64.

    python3 tools/check_export.py FILE.safetensors [--tol 1e-4]

Reads the file with a few lines of Python (no safetensors package needed), rebuilds the task, the
inner optimizer and the unroll from the metadata, differentiates the meta-loss with torch.autograd
(detaching the optimizer inputs as the mode says), and compares the meta-loss, per-step losses and
meta-gradients with the stored ones. Exit status 1 if any relative error exceeds the tolerance.
"""
import json
import math
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", info
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a : base + b]), dtype=torch.float32)
        tensors[name] = t.reshape(info["shape"]).to(torch.float64)
    return meta, tensors


def lstm_step(phi, g, state, H, p, eps, out_scale):
    # φ layout: Wx1 [4H,2], Wh1 [4H,H], b1 [4H], Wx2 [4H,H], Wh2 [4H,H], b2 [4H], wo [H], bo [1]
    sizes = [4 * H * 2, 4 * H * H, 4 * H, 4 * H * H, 4 * H * H, 4 * H, H, 1]
    parts = torch.split(phi, sizes)
    wx1, wh1, b1, wx2, wh2, b2, wo, bo = parts
    wx1, wh1 = wx1.reshape(4 * H, 2), wh1.reshape(4 * H, H)
    wx2, wh2 = wx2.reshape(4 * H, H), wh2.reshape(4 * H, H)
    x1 = torch.clamp(torch.log(g.abs() + eps) / p, -1, 1)
    x2 = torch.clamp(g * math.exp(p), -1, 1)
    x = torch.stack([x1, x2], -1)  # [C, 2]
    h1, c1, h2, c2 = torch.split(state, H, -1)

    def cell(xin, h, c, wx, wh, b):
        a = xin @ wx.T + h @ wh.T + b
        i, f, gg, o = torch.split(a, H, -1)
        i, f, gg, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(gg), torch.sigmoid(o)
        cn = f * c + i * gg
        return o * torch.tanh(cn), cn

    h1n, c1n = cell(x, h1, c1, wx1, wh1, b1)
    h2n, c2n = cell(h1n, h2, c2, wx2, wh2, b2)
    u = out_scale * (h2n @ wo + bo)
    return u, torch.cat([h1n, c1n, h2n, c2n], -1)


DECAYS = [0.1, 0.5, 0.9, 0.99, 0.999]
TIMESCALES = [1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000]


def mlp_opt_step(phi, g, theta, m, v, segments, t, eps, exp_mult, step_mult):
    """Per-parameter MLP optimizer; g [N,P] detached, theta [N,P], momenta m [N,P,5], v [N,P]."""
    m = torch.stack([b * m[..., j] + (1 - b) * g for j, b in enumerate(DECAYS)], -1)
    v = 0.999 * v + 0.001 * g * g
    x = torch.cat([g[..., None], theta[..., None], m, torch.sqrt(v)[..., None]], -1)  # [N,P,8]
    parts = []
    for off, ln in segments:
        xs = x[:, off : off + ln, :]
        parts.append(xs * torch.rsqrt(eps + (xs * xs).mean(1, keepdim=True)))
    xhat = torch.cat(parts, 1)
    e = torch.tanh(torch.tensor([t / tau - 1.0 for tau in TIMESCALES]))
    inp = torch.cat([xhat, e.expand(*xhat.shape[:2], 11)], -1)
    w1, b1, w2, b2, w3, b3 = torch.split(phi, [32 * 19, 32, 32 * 32, 32, 64, 2])
    h1 = torch.relu(inp @ w1.reshape(32, 19).T + b1)
    h2 = torch.relu(h1 @ w2.reshape(32, 32).T + b2)
    o = h2 @ w3.reshape(2, 32).T + b3
    u = o[..., 0] * torch.exp(exp_mult * o[..., 1]) * step_mult
    return u, m, v


class Task:
    def __init__(self, meta, T):
        self.meta, self.T = meta, T
        self.kind = meta["task"]
        if self.kind == "mlp":
            self.widths = json.loads(meta["task.widths"])
            self.act = meta["task.activation"]
            self.layout = json.loads(meta["layout"])

    def loss(self, theta, t):
        """Per-instance losses [N] at parameters theta [N, P] on the data of step t."""
        if self.kind == "quadratic":
            W, y = self.tensors["task.W"], self.tensors["task.y"]
            r = torch.einsum("nij,nj->ni", W, theta) - y
            return (r * r).sum(-1)
        x = self.tensors[f"batch.{t}.x"]
        labels = self.tensors[f"batch.{t}.labels"].long()
        entries = {e["name"]: e for e in self.layout}

        def param(name):
            e = entries[name]
            shape = e["shape"]
            size = math.prod(shape)
            if e["transposed"]:
                stored = theta[:, e["offset"] : e["offset"] + size].reshape(-1, shape[1], shape[0])
                return stored.transpose(1, 2)
            return theta[:, e["offset"] : e["offset"] + size].reshape(-1, *shape)

        h = x
        L = len(self.widths) - 1
        for l in range(L):
            z = torch.bmm(h, param(f"l{l}.w")) + param(f"l{l}.b")[:, None, :]
            if l + 1 < L:
                z = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh, "identity": lambda v: v}[self.act](z)
            h = z
        logp = torch.log_softmax(h, -1)
        return -logp.gather(-1, labels[..., None])[..., 0].mean(-1)


def main():
    path = sys.argv[1]
    tol = float(sys.argv[sys.argv.index("--tol") + 1]) if "--tol" in sys.argv else 1e-4
    meta, ts = read_safetensors(path)
    assert meta["format"] == "metalearn-export-1", meta.get("format")
    N, P, T = int(meta["instances"]), int(meta["params"]), int(meta["unroll"])
    mode, opt = meta["mode"], meta["optimizer"]
    task = Task(meta, T)
    task.tensors = ts
    w = ts["weights"]
    offset = int(meta.get("episode_offset", "0"))
    # Only an episode's first unroll starts from the learned θ0; later ones start from the
    # carried θ (`init`) and optimizer state (`init_state`, [S, N, P]).
    learn_init = meta["learn_init"] == "true" and offset == 0
    init_state = ts.get("init_state")
    if learn_init:
        theta0 = ts["theta0"].clone().requires_grad_(True)
        theta = theta0[None, :].expand(N, P)
    else:
        theta0 = ts["init"].clone().requires_grad_(True)
        theta = theta0
    phi = ts["phi"].clone().requires_grad_(True) if "phi" in ts else None
    C = N * P
    def st(k):
        return init_state[k].clone() if init_state is not None else torch.zeros(N, P)

    if opt == "lstm":
        H = int(meta["optimizer.hidden"])
        state = torch.stack([st(k).reshape(C) for k in range(4 * H)], dim=1)
    elif opt == "adam":
        m, v = st(0), st(1)
    elif opt in ("momentum", "nag", "rmsprop"):
        acc = st(0)
    elif opt == "mlp":
        mm = torch.stack([st(k) for k in range(5)], dim=2)
        vv = st(5)
        layout = json.loads(meta["layout"])
        segments = sorted((e["offset"], math.prod(e["shape"])) for e in layout if not e.get("tied", False))
    M = torch.zeros(())
    losses = []
    for t in range(T + 1):
        l = task.loss(theta, t)
        losses.append(l.detach())
        M = M + w[t] * l.mean()
        if t == T:
            break
        g = torch.autograd.grad(l.sum(), theta, retain_graph=True)[0].detach()
        th_in = theta.detach() if mode == "first-order" else theta
        if opt == "sgd":
            u = -float(meta["optimizer.lr"]) * g
        elif opt == "adam":
            lr, b1, b2, eps = (float(meta[f"optimizer.{k}"]) for k in ("lr", "beta1", "beta2", "eps"))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            ta = t + offset
            u = -lr * (m / (1 - b1 ** (ta + 1))) / (torch.sqrt(v / (1 - b2 ** (ta + 1))) + eps)
        elif opt in ("momentum", "nag"):
            lr, mu = float(meta["optimizer.lr"]), float(meta["optimizer.mu"])
            acc = mu * acc + g
            u = -lr * (g + mu * acc) if opt == "nag" else -lr * acc
        elif opt == "rmsprop":
            lr, rho, eps = float(meta["optimizer.lr"]), float(meta["optimizer.rho"]), float(meta["optimizer.eps"])
            acc = rho * acc + (1 - rho) * g * g
            u = -lr * g / (torch.sqrt(acc) + eps)
        elif opt == "linear":
            u = phi[0] * g + phi[1] * th_in + phi[2]
        elif opt == "mlp":
            t_abs = t + offset
            u, mm, vv = mlp_opt_step(phi, g, th_in, mm, vv, segments, t_abs, float(meta["optimizer.eps"]), float(meta["optimizer.exp_mult"]), float(meta["optimizer.step_mult"]))
        elif opt == "lstm":
            uf, state = lstm_step(phi, g.reshape(C), state, H, float(meta["optimizer.p"]), float(meta["optimizer.eps"]), float(meta["optimizer.out_scale"]))
            u = uf.reshape(N, P)
        theta = theta + u
    M.backward()
    worst = 0.0

    def compare(name, got, want):
        nonlocal worst
        got, want = got.reshape(-1), want.reshape(-1)
        e = ((got - want).abs().max() / want.abs().max().clamp_min(1e-300)).item()
        worst = max(worst, e)
        print(f"{name:<28} relative error {e:.2e}")

    compare("meta_loss", ts["meta_loss"], M.detach().reshape(1))
    compare("losses", ts["losses"], torch.stack(losses))
    if phi is not None:
        compare("grad.phi", ts["grad.phi"], phi.grad)
    if learn_init:
        compare("grad.theta0", ts["grad.theta0"], theta0.grad)
    else:
        compare("grad.theta0_per_instance", ts["grad.theta0_per_instance"], theta0.grad)
        if offset > 0 and ts["grad.theta0"].abs().max().item() != 0.0:
            print("grad.theta0 is not zero inside an episode")
            worst = float("inf")
    print(f"{path}: {'OK' if worst <= tol else 'MISMATCH'} (worst {worst:.2e}, tolerance {tol:.0e})")
    sys.exit(0 if worst <= tol else 1)


if __name__ == "__main__":
    main()
