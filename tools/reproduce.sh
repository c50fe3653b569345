#!/usr/bin/env bash
# Runs every experiment of REPRODUCTION.md and writes runs, curves and plots under $1 (default
# runs/). METALEARN names the binary (default target/release/metalearn); FMNIST_DIR the
# Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist). Extra arguments after
# the directory are passed to every `train` (e.g. --set meta.outer_steps=100 for a quick pass).
set -euo pipefail
M=${METALEARN:-target/release/metalearn}
R=${1:-runs}
shift || true
FM=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p "$R"
t() { echo "== $*"; /usr/bin/time -f "   %e s" "$M" "$@"; }

# 1. L2L on 10-d quadratics: 100 steps, and 200 steps (generalisation in horizon).
t train --config configs/l2l_quadratic.toml --out "$R/l2l_quadratic" --quiet "$@"
t eval "$R/l2l_quadratic" --out "$R/l2l_quadratic/eval_100" --log-y
t eval "$R/l2l_quadratic" --steps 200 --out "$R/l2l_quadratic/eval_200" --log-y

# 2. L2L on Fashion-MNIST MLPs (784-20-10 sigmoid), evaluated on the test split; then the same
#    optimizer on 40 hidden units, on two hidden layers, and with ReLU.
F="--set task.data_dir=\"$FM\""
t train --config configs/l2l_fashion_mnist.toml --out "$R/l2l_fmnist" --quiet $F "$@"
t eval "$R/l2l_fmnist" --out "$R/l2l_fmnist/eval" $F
t eval "$R/l2l_fmnist" --out "$R/l2l_fmnist/eval_hidden40" $F --set 'task.hidden=[40]'
t eval "$R/l2l_fmnist" --out "$R/l2l_fmnist/eval_2layers" $F --set 'task.hidden=[20,20]'
t eval "$R/l2l_fmnist" --out "$R/l2l_fmnist/eval_relu" $F --set task.activation=relu

# 3. MAML sinusoid: learned initialisation (MAML, first-order MAML) vs a jointly pre-trained one,
#    1 and 10 SGD steps.
t train --config configs/maml_sinusoid.toml --out "$R/maml" --quiet "$@"
t train --config configs/maml_sinusoid.toml --out "$R/fomaml" --quiet --set meta.mode=first-order "$@"
t train --config configs/maml_pretrain.toml --out "$R/maml_pretrain" --quiet "$@"
t eval "$R/maml" --compare "$R/fomaml" --compare "$R/maml_pretrain" --out "$R/maml/eval"
