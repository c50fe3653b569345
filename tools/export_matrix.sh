#!/usr/bin/env bash
# Write one export of every optimizer × mode × task × learned-init combination that
# `metalearn export` supports, for a fixed seed, and print their canonical SHA-256 digests
# (tools/export_digest.py: metadata order does not count).
# Usage: tools/export_matrix.sh BIN OUT_DIR   (compare two runs with `diff`)
set -euo pipefail
bin=${1:?binary}; out=${2:?output directory}
mkdir -p "$out"
for task in quadratic mlp; do
  for opt in sgd momentum nag rmsprop adam linear lstm mlp; do
    modes="first-order truncated"
    modes="$modes second-order"
    for mode in $modes; do
      for init in 0 1; do
        flag=""; [ "$init" = 1 ] && flag="--learn-init"
        f="$out/$task-$opt-$mode-init$init.safetensors"
        "$bin" export --out "$f" --task "$task" --optimizer "$opt" --mode "$mode" $flag --seed 3 >/dev/null
      done
    done
  done
done
"$(dirname "$0")/export_digest.py" "$out"/*.safetensors
