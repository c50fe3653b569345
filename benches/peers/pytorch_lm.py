"""PyTorch peer of `metalearn bench --only lm` (src/bench/lm.rs): the same LSTM language model
(embedding V×E, `layers` LSTM layers of H units, output tied to the embedding, a projection
H→E when E ≠ H, bias on the logits), N streams of L random tokens with the state carried from
chunk to chunk (truncated BPTT), tokens per second of

- static training: forward, backward, the mean cross-entropy over the N·L tokens, one Adam
  step (lr 1e-3) of one set of weights (cuDNN LSTM);
- static evaluation: forward only (no_grad);
- dynamic evaluation with SGD: each of the N streams has its own copy of the fast weights
  (the LSTM layers, as `lm.fast`'s default; embedding and softmax shared), the chunk is scored,
  then every copy takes one SGD step on its own stream's loss — a loop over the streams.

Timing: wall clock around each step with torch.cuda.synchronize(), after a warm-up, median of
`--repeats`. Usage: python3 benches/peers/pytorch_lm.py --json torch_lm.json [--quick]

Agreement: `python3 benches/peers/pytorch_lm.py --check DIR` reads what
`cargo run --release --example lm_agreement -- DIR` wrote (the weights of metalearn's layout,
the tokens, and metalearn's per-stream loss of every chunk, static and dynamic with SGD on the
LSTM layers), recomputes both with this model (FP32, TF32 off) and exits 1 unless both
perplexities agree within 1e-3 relative.
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Lm(nn.Module):
    def __init__(self, v, e, h, layers):
        super().__init__()
        self.emb = nn.Embedding(v, e)
        self.lstm = nn.LSTM(e, h, layers, batch_first=True)
        self.proj = nn.Linear(h, e, bias=False) if e != h else None
        self.out_b = nn.Parameter(torch.zeros(v))

    def forward(self, x, state):
        y, state = self.lstm(self.emb(x), state)
        if self.proj is not None:
            y = self.proj(y)
        return y @ self.emb.weight.t() + self.out_b, state


def flops_forward(v, e, h, layers):
    lstm = sum(2.0 * ((e if l == 0 else h) + h) * 4.0 * h for l in range(layers))
    proj = 2.0 * h * e if e != h else 0.0
    return lstm + proj + 2.0 * e * v


def timed(repeats, f):
    f()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def sgd_chunk(model, x, y, state, lr):
    """Score one stream's chunk, then one SGD step of its LSTM layers on the chunk's mean loss.
    Returns the loss (before the step) and the carried state."""
    v = model.out_b.shape[0]
    logits, s = model(x, state)
    loss = F.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
    # bias_hh stays 0: metalearn's LSTM has one bias per layer (bias_ih here); stepping both
    # would move the sum by twice the step.
    params = [p for name, p in model.lstm.named_parameters() if not name.startswith("bias_hh")]
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(lr * g)
    return loss.detach(), tuple(t.detach() for t in s)


def load_weights(model, theta, layout, spec):
    """metalearn's parameter block into the PyTorch model: emb [V, E]; lstm{l}.wx [n_l, 4H] and
    .wh [H, 4H] are the transposes of weight_ih / weight_hh (same gate order i, f, g, o), .b is
    bias_ih with bias_hh = 0; proj [H, E] is proj.weight transposed; out.b."""
    t = {e["name"]: torch.from_numpy(theta[e["offset"] : e["offset"] + int(np.prod(e["shape"]))].reshape(e["shape"]).copy()) for e in layout}
    with torch.no_grad():
        model.emb.weight.copy_(t["emb"])
        for l in range(spec["layers"]):
            getattr(model.lstm, f"weight_ih_l{l}").copy_(t[f"lstm{l}.wx"].t())
            getattr(model.lstm, f"weight_hh_l{l}").copy_(t[f"lstm{l}.wh"].t())
            getattr(model.lstm, f"bias_ih_l{l}").copy_(t[f"lstm{l}.b"])
            getattr(model.lstm, f"bias_hh_l{l}").zero_()
        if model.proj is not None:
            model.proj.weight.copy_(t["proj"].t())
        model.out_b.copy_(t["out.b"])


def check(path, dev):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(f"{path}/lm_agreement.json") as f:
        a = json.load(f)
    theta = np.fromfile(f"{path}/theta.f32", dtype="<f4")
    v, e, h, layers, n, l = (a[k] for k in ("vocab", "embed", "hidden", "layers", "streams", "len"))
    base = Lm(v, e, h, layers).to(dev)
    load_weights(base, theta, a["layout"], a)
    base.to(dev)
    tokens = [torch.tensor(t, device=dev).reshape(n, l) for t in a["tokens"]]
    targets = [torch.tensor(t, device=dev).reshape(n, l) for t in a["targets"]]
    # Static: the state carried from chunk to chunk, every stream a row of one batch.
    stat, st = [], None
    with torch.no_grad():
        for x, y in zip(tokens, targets):
            logits, st = base(x, st)
            ce = F.cross_entropy(logits.reshape(-1, v), y.reshape(-1), reduction="none")
            stat.append(ce.reshape(n, l).mean(1).cpu().numpy())
    # Dynamic: each stream its own copy of the LSTM layers, scored then stepped by SGD.
    copies = [Lm(v, e, h, layers).to(dev) for _ in range(n)]
    for c in copies:
        c.load_state_dict(base.state_dict())
    states = [None] * n
    dyn = []
    for x, y in zip(tokens, targets):
        row = []
        for i, c in enumerate(copies):
            loss, states[i] = sgd_chunk(c, x[i : i + 1], y[i], states[i], a["lr"])
            row.append(float(loss))
        dyn.append(np.array(row))
    out = {"adapter": torch.cuda.get_device_name(0), "torch": torch.__version__}
    ok = True
    for name, ours, theirs in (("static", a["static_losses"], stat), ("dynamic", a["dynamic_losses"], dyn)):
        ours, theirs = np.array(ours, dtype=np.float64), np.array(theirs, dtype=np.float64)
        loss_err = float(np.max(np.abs(ours - theirs) / np.abs(theirs)))
        p_ours, p_theirs = float(np.exp(ours.mean())), float(np.exp(theirs.mean()))
        rel = abs(p_ours - p_theirs) / p_theirs
        ok &= rel <= 1e-3
        out[name] = {"metalearn_perplexity": p_ours, "pytorch_perplexity": p_theirs,
                     "perplexity_relative_error": rel, "max_loss_relative_error": loss_err}
        print(f"{name:<8} perplexity metalearn {p_ours:.6f} PyTorch {p_theirs:.6f} relative error {rel:.2e}; largest per-chunk loss error {loss_err:.2e}")
    print(json.dumps(out))
    print("agreement: " + ("within 1e-3" if ok else "FAILED (> 1e-3)"))
    return ok


def case(v, e, h, layers, n, l, repeats, dev):
    torch.manual_seed(0)
    model = Lm(v, e, h, layers).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, v, (n, l), device=dev)
    y = torch.randint(0, v, (n, l), device=dev)
    st = [None]

    def detach(s):
        return tuple(t.detach() for t in s)

    def train():
        logits, s = model(x, st[0])
        loss = F.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        st[0] = detach(s)
        loss.item()

    def evaluate():
        with torch.no_grad():
            logits, s = model(x, st[0])
            F.cross_entropy(logits.reshape(-1, v), y.reshape(-1)).item()
        st[0] = s

    t_train = timed(repeats, train)
    st[0] = None
    t_eval = timed(repeats, evaluate)
    # Dynamic evaluation: N copies of the LSTM layers, one SGD step each per chunk.
    copies = [Lm(v, e, h, layers).to(dev) for _ in range(n)]
    for c in copies:
        c.load_state_dict(model.state_dict())
    states = [None] * n

    def dynamic():
        total = 0.0
        for i, c in enumerate(copies):
            loss, s = sgd_chunk(c, x[i : i + 1], y[i], states[i], 1e-3)
            states[i] = s
            total += loss
        float(total)

    t_dyn = timed(repeats, dynamic)
    tokens = n * l
    fl = flops_forward(v, e, h, layers)
    return {
        "case": f"V={v} E={e} H={h} layers={layers} N={n} L={l}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens_per_second": tokens / t_train,
        "train_gflops": 3 * fl * tokens / t_train * 1e-9,
        "eval_tokens_per_second": tokens / t_eval,
        "eval_gflops": fl * tokens / t_eval * 1e-9,
        "dynamic_tokens_per_second": tokens / t_dyn,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--check", default=None, help="directory written by the lm_agreement example")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.check:
        raise SystemExit(0 if check(a.check, dev) else 1)
    if a.quick:
        cases = [(256, 32, 32, 1, 4, 16)]
    else:
        cases = [(16384, 512, 512, 2, 32, 64), (16384, 512, 512, 2, 64, 64)]
    rows = [case(*c, a.repeats, dev) for c in cases]
    name = torch.cuda.get_device_name(0)
    print(f"{'case':<44} {'train tok/s':>12} {'GFLOP/s':>10} {'eval tok/s':>12} {'dyn tok/s':>12}")
    for r in rows:
        print(
            f"{r['case']:<44} {r['train_tokens_per_second']:>12.0f} {r['train_gflops']:>10.1f} "
            f"{r['eval_tokens_per_second']:>12.0f} {r['dynamic_tokens_per_second']:>12.0f}"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "adapter": name,
                    "backend": f"CUDA (PyTorch {torch.__version__}, cuDNN LSTM)",
                    "workload": "lm peer",
                    "results": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
