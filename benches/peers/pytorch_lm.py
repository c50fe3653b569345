"""PyTorch peer of `metalearn bench --only lm` (src/bench/lm.rs): the same LSTM language model
(embedding V×E, `layers` LSTM layers of H units, output tied to the embedding, a projection
H→E when E ≠ H, bias on the logits), N streams of L random tokens with the state carried from
chunk to chunk (truncated BPTT), tokens per second of

- static training: forward, backward, the mean cross-entropy over the N·L tokens, one Adam
  step (lr 1e-3) of one set of weights (cuDNN LSTM);
- static evaluation: forward only (no_grad);
- dynamic evaluation with SGD: each of the N streams has its own copy of the weights (the
  issue's fast weights), the chunk is scored, then every copy takes one SGD step on its own
  stream's loss — N independent models, run as one batched model with torch.func.vmap over
  the weights when available, else as a loop over streams.

Timing: wall clock around each step with torch.cuda.synchronize(), after a warm-up, median of
`--repeats`. Usage: python3 benches/peers/pytorch_lm.py --json torch_lm.json [--quick]
"""
import argparse
import json
import statistics
import time

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
    # Dynamic evaluation: N independent copies of the weights, one SGD step each per chunk.
    copies = [Lm(v, e, h, layers).to(dev) for _ in range(n)]
    for c in copies:
        c.load_state_dict(model.state_dict())
    states = [None] * n

    def dynamic():
        total = 0.0
        for i, c in enumerate(copies):
            logits, s = c(x[i : i + 1], states[i])
            loss = F.cross_entropy(logits.reshape(-1, v), y[i].reshape(-1))
            grads = torch.autograd.grad(loss, list(c.parameters()))
            with torch.no_grad():
                for p, g in zip(c.parameters(), grads):
                    p.sub_(1e-3 * g)
            states[i] = detach(s)
            total += loss.detach()
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
    a = ap.parse_args()
    dev = torch.device("cuda")
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
