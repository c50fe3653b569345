#!/usr/bin/env bash
# The dynamical language model over seeds, on one GPU: train the static LM of STATIC_CONFIG once
# (its own seed), meta-train DYNLM_CONFIG on top of it once per seed (the seeds side by side as
# processes, each stopped by SIGINT after META_SECONDS, which finishes the outer step and writes a
# checkpoint), then score the test split once per seed: static, state reset, dynamic evaluation
# with the updaters of DYNAMIC (tuned on validation chunks) and that seed's learned optimizer
# (`learned`), every evaluation on the same test streams, chunks of the meta-training's length.
# The seeds' evaluations are then aggregated (`metalearn eval --compare`). Logs, metrics and
# evaluations go to OUT_DIR.
#
#   tools/dynlm_seeds.sh BIN OUT_DIR STATIC_STEPS META_SECONDS "SEEDS" [--set key=value ...]
#
# The --set options apply to the meta-training runs. Environment: STATIC_CONFIG
# (configs/lm_static.toml), DYNLM_CONFIG (configs/dynlm_word.toml), STREAMS (32), CHUNKS (50),
# DYNAMIC (SGD and the RMS rule over three learning rates each), PHI0_CONFIG (when set, the
# optimizer of that config at its initial φ, no meta-training, is scored the same way too, as
# OUT_DIR/phi0).
set -euo pipefail
bin=$1 out=$2 steps=$3 secs=$4 seeds=$5
shift 5
static_config=${STATIC_CONFIG:-configs/lm_static.toml}
dynlm_config=${DYNLM_CONFIG:-configs/dynlm_word.toml}
dynamic=${DYNAMIC:-"{sgd={lr=[0.03,0.1,0.3]},rms={lr=[1e-4,3e-4,1e-3]},learned={}}"}
runs=$(mktemp -d)
mkdir -p "$out"
"$bin" train --config "$static_config" --out "$runs/static" --set "lm.steps=$steps" \
    >"$out/static.log" 2>&1
chunk=$(sed -n 's/^chunk *= *\([0-9]*\).*/\1/p' "$dynlm_config" | head -1)
if [ -n "${PHI0_CONFIG:-}" ]; then
    "$bin" train --config "$PHI0_CONFIG" --out "$runs/dyn-phi0" --set "meta.outer_steps=0" \
        --set "lm.static_model=\"$runs/static\"" >"$out/meta-phi0.log" 2>&1
fi
for s in $seeds; do
    timeout -s INT "$secs" "$bin" train --config "$dynlm_config" --out "$runs/dyn-s$s" \
        --set "seed=$s" --set "lm.static_model=\"$runs/static\"" "$@" \
        >"$out/meta-s$s.log" 2>&1 &
done
wait
runs_to_score=()
for s in $seeds; do runs_to_score+=("s$s"); done
[ -n "${PHI0_CONFIG:-}" ] && runs_to_score+=(phi0)
for s in "${runs_to_score[@]}"; do
    "$bin" eval "$runs/static" --out "$runs/eval-$s" --set "lm.learned=\"$runs/dyn-$s\"" \
        --set "lm.chunk=$chunk" --set "lm.streams=${STREAMS:-32}" \
        --set "lm.eval_chunks=${CHUNKS:-50}" --set "lm.dynamic=$dynamic" \
        >"$out/eval-$s.log" 2>&1 &
done
wait
if [ -n "${PHI0_CONFIG:-}" ]; then
    mkdir -p "$out/phi0"
    cp "$runs/dyn-phi0/config.toml" "$runs"/eval-phi0/lm_eval.* "$out/phi0/"
fi
dirs=()
for s in $seeds; do
    mkdir -p "$out/s$s"
    cp "$runs/dyn-s$s/metrics.jsonl" "$runs/dyn-s$s/config.toml" "$runs"/eval-s$s/lm_eval.* "$runs/eval-s$s/lm_tokens.html" "$out/s$s/"
    dirs+=("$out/s$s")
done
cp "$runs/static/metrics.jsonl" "$out/static-metrics.jsonl"
if [ ${#dirs[@]} -gt 1 ]; then
    "$bin" eval "${dirs[0]}" --compare "${dirs[@]:1}" --out "$out" >"$out/seeds.log" 2>&1
fi
