#!/usr/bin/env bash
# Train the word-level LM of configs/lm_static.toml once per seed, the seeds side by side as
# processes on one GPU, then evaluate each run (static, state reset, dynamic evaluation with
# every updater of [lm.dynamic], tuned on validation chunks). Everything but the model files
# is copied to OUT_DIR.
#
#   tools/lm_seeds.sh BIN OUT_DIR CORPUS_DIR STEPS "SEEDS" [--set key=value ...]
#
# CORPUS_DIR holds html/_sources of linux-doc-6.1 (the default corpus's layout).
set -euo pipefail
bin=$1 out=$2 corpus=$3 steps=$4 seeds=$5
shift 5
runs=$(mktemp -d)
mkdir -p "$out"
common=(--set "lm.path=\"$corpus\"" --set "lm.steps=$steps" "$@")
for s in $seeds; do
    "$bin" train --config configs/lm_static.toml --out "$runs/s$s" --set "seed=$s" \
        "${common[@]}" >"$out/train-s$s.log" 2>&1 &
done
wait
for s in $seeds; do
    "$bin" eval "$runs/s$s" --out "$runs/s$s/eval" --set "seed=$s" "${common[@]}" \
        >"$out/eval-s$s.log" 2>&1 &
done
wait
for s in $seeds; do
    mkdir -p "$out/s$s"
    cp "$runs/s$s/config.toml" "$runs/s$s/metrics.jsonl" "$runs/s$s"/eval/lm_eval.* "$out/s$s/"
done
