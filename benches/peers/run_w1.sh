#!/usr/bin/env bash
# W1 side by side on one GPU: metalearn (wgpu/Vulkan), PyTorch eager, JAX jit; results as JSON
# under $OUT (default ./w1-out). BIN is the metalearn binary (default target/release/metalearn).
# Each stage has a wall-clock cap so the whole run stays within about 10 minutes (ours at N = 256 takes ~3 min on an H200).
set -u
OUT=${OUT:-w1-out}
BIN=${BIN:-target/release/metalearn}
mkdir -p "$OUT"
here=$(dirname "$0")
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  python3 -c 'import torch, jax; print("torch", torch.__version__, "cuda", torch.version.cuda, "| jax", jax.__version__, jax.devices())' 2>&1
  "$BIN" info 2>&1 | head -8
  # The agreement file: one outer step of the W1 kind (MLP task, LSTM optimizer, truncated, T = 20).
  "$BIN" export --task mlp --optimizer lstm --unroll 20 --instances 3 --out "$OUT/w1_export.safetensors"
  echo "== metalearn W1, N = 1, 16, 1024"
  timeout 90 "$BIN" bench --only w1 --instances 1,16,1024 --repeats 5 --json "$OUT/ours.json"
  echo "== metalearn W1, N = 256"
  timeout "${OURS_256_S:-240}" "$BIN" bench --only w1 --instances 256 --repeats 5 --json "$OUT/ours_256.json"
  echo "== PyTorch"
  timeout "${TORCH_S:-100}" python3 "$here/pytorch_l2l.py" --instances 1,16,256,1024 --budget-s $(( ${TORCH_S:-100} - 30 )) \
    --check "$OUT/w1_export.safetensors" --json "$OUT/torch.json"
  echo "== JAX"
  timeout "${JAX_S:-130}" python3 "$here/jax_l2l.py" --instances 1,16,256,1024 --budget-s $(( ${JAX_S:-130} - 30 )) \
    --check "$OUT/w1_export.safetensors" --json "$OUT/jax.json"
  date -u
} 2>&1 | tee "$OUT/run.log"
