#!/usr/bin/env bash
# Runs every experiment of REPRODUCTION.md over several seeds and writes runs, curves and plots
# under $1 (default runs/). Each run's directory ends in _s<seed>; `metalearn eval RUN --compare
# …` over the seeds of one config reports mean ± standard deviation per optimizer and step, with
# every seed's curve in the CSV/JSON and min–max bands in the plots.
#
# METALEARN names the binary (default target/release/metalearn); FMNIST_DIR the Fashion-MNIST
# IDX directory (default /usr/share/datasets/fashion-mnist); SEEDS the seeds of the costly
# experiment (Fashion-MNIST, default "0 1 2") and CHEAP_SEEDS those of the others (default
# "0 1 2 3 4"). The seeds of one experiment run side by side as separate processes. Extra
# arguments after the directory are passed to every `train` (e.g. --set meta.outer_steps=100),
# EVAL_ARGS to every `eval` (e.g. "--set eval.instances=4 --set eval.grid_points=3"); PARTS
# picks experiments (default "1 2 3").
set -euo pipefail
M=${METALEARN:-target/release/metalearn}
R=${1:-runs}
shift || true
FM=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
SEEDS=${SEEDS:-"0 1 2"}
CHEAP_SEEDS=${CHEAP_SEEDS:-"0 1 2 3 4"}
read -r -a EV <<<"${EVAL_ARGS:-}"
PARTS=${PARTS:-"1 2 3"}
part() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$R"

# t LOG ARGS…: run metalearn with ARGS, its output in LOG, its time at the end of LOG.
t() {
    local log=$1 t0 rc=0
    shift
    t0=$(date +%s.%N)
    { echo "== $*"; "$M" "$@" || rc=$?; } >"$log" 2>&1
    awk -v a="$t0" -v b="$(date +%s.%N)" -v rc="$rc" 'BEGIN { printf "   %.1f s, exit %d\n", b - a, rc }' >>"$log"
    return "$rc"
}
# seeds EXPERIMENT "SEEDS" ARGS…: train ARGS once per seed, side by side, into $R/EXPERIMENT_s<seed>.
seeds() {
    local name=$1 list=$2
    shift 2
    local pids=()
    for s in $list; do
        t "$R/$name-train-s$s.log" train "$@" --seed "$s" --out "$R/${name}_s$s" --quiet &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    cat "$R/$name"-train-s*.log
}
# runs EXPERIMENT "SEEDS": the run directories of EXPERIMENT, the first one alone, then --compare.
runs() {
    local name=$1 first="" rest=()
    for s in $2; do
        if [ -z "$first" ]; then first="$R/${name}_s$s"; else rest+=("$R/${name}_s$s"); fi
    done
    echo "$first" --compare "${rest[@]}"
}
# evals LOG… : wait for the evaluations started in the background and print their logs.
show() {
    wait
    for f in "$@"; do cat "$f"; done
}

# 1. L2L on 10-d quadratics: 100 steps, and 200 steps (generalisation in horizon).
if part 1; then
    seeds l2l_quadratic "$CHEAP_SEEDS" --config configs/l2l_quadratic.toml "$@"
    Q=$(runs l2l_quadratic "$CHEAP_SEEDS")
    # shellcheck disable=SC2086
    t "$R/q100.log" eval $Q --out "$R/l2l_quadratic/eval_100" --log-y "${EV[@]}" &
    # shellcheck disable=SC2086
    t "$R/q200.log" eval $Q --steps 200 --out "$R/l2l_quadratic/eval_200" --log-y "${EV[@]}" &
    show "$R/q100.log" "$R/q200.log"
fi

# 2. L2L on Fashion-MNIST MLPs (784-20-10 sigmoid), evaluated on the test split; then the same
#    optimizer on 40 hidden units, on two hidden layers, and with ReLU.
if part 2; then
    F="task.data_dir=\"$FM\""
    seeds l2l_fmnist "$SEEDS" --config configs/l2l_fashion_mnist.toml --set "$F" "$@"
    Q=$(runs l2l_fmnist "$SEEDS")
    E="$R/l2l_fmnist"
    # shellcheck disable=SC2086
    t "$R/f.log" eval $Q --out "$E/eval" --set "$F" "${EV[@]}" &
    # shellcheck disable=SC2086
    t "$R/f40.log" eval $Q --out "$E/eval_hidden40" --set "$F" --set 'task.hidden=[40]' "${EV[@]}" &
    # shellcheck disable=SC2086
    t "$R/f2.log" eval $Q --out "$E/eval_2layers" --set "$F" --set 'task.hidden=[20,20]' "${EV[@]}" &
    # shellcheck disable=SC2086
    t "$R/frelu.log" eval $Q --out "$E/eval_relu" --set "$F" --set task.activation=relu "${EV[@]}" &
    show "$R/f.log" "$R/f40.log" "$R/f2.log" "$R/frelu.log"
fi

# 3. MAML sinusoid: learned initialisation (MAML, first-order MAML) vs a jointly pre-trained one,
#    1 and 10 SGD steps.
if part 3; then
    seeds maml "$CHEAP_SEEDS" --config configs/maml_sinusoid.toml "$@" &
    seeds fomaml "$CHEAP_SEEDS" --config configs/maml_sinusoid.toml --set meta.mode=first-order "$@" &
    seeds maml_pretrain "$CHEAP_SEEDS" --config configs/maml_pretrain.toml "$@" &
    wait
    # shellcheck disable=SC2046
    t "$R/maml.log" eval $(runs maml "$CHEAP_SEEDS") $(runs fomaml "$CHEAP_SEEDS" | sed 's/ --compare//') \
        $(runs maml_pretrain "$CHEAP_SEEDS" | sed 's/ --compare//') --out "$R/maml/eval" "${EV[@]}"
    cat "$R/maml.log"
fi
