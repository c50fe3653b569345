#!/usr/bin/env bash
# One device call: W1 at N = 256 and 1024 (chunks + Revolve in 24 GiB), the dynamical LM at
# N = 16 and 64 documents (store-all, Revolve under a budget, chunks), GPU memory sampled.
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig
tar -C / -xJf .corpus/sources.tar.xz
export XDG_RUNTIME_DIR=$(mktemp -d)
B=./target/release/metalearn
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 250 > $R/mem.csv 2>&1 &
SMI=$!
mark() { echo "$(date +%H:%M:%S.%N) $1" >> $R/marks.txt; }
work() {
$B info > $R/info.txt 2>&1
mark "w1 start"
timeout 170 $B bench --only w1 --instances 256,1024 --repeats 3 --json $R/w1.json > $R/w1.log 2>&1; echo "rc $?" >> $R/w1.log
mark "w1 end"
timeout 120 $B train --config configs/lm_static.toml --out runs/lm_static --set lm.steps=20 --set lm.eval_chunks=5 > $R/static.log 2>&1; echo "rc $?" >> $R/static.log
D="--config configs/dynlm_word.toml --set lm.static_model=\"runs/lm_static\""
for c in "16 none" "16 4096" "64 none" "64 16384"; do
  set -- $c; n=$1; b=$2
  extra=""; [ $b != none ] && extra="--set meta.memory_budget_mib=$b"
  timeout 60 $B train $D --instances $n $extra --dry-run > $R/dry-$n-$b.log 2>&1; echo "rc $?" >> $R/dry-$n-$b.log
done
for c in "16 none" "16 4096" "64 16384"; do
  set -- $c; n=$1; b=$2
  extra=""; [ $b != none ] && extra="--set meta.memory_budget_mib=$b"
  mark "dyn $n $b start"
  timeout 100 $B train $D --instances $n $extra --set meta.outer_steps=3 --out runs/d-$n-$b > $R/train-$n-$b.log 2>&1; echo "rc $?" >> $R/train-$n-$b.log
  mark "dyn $n $b end"
  cp runs/d-$n-$b/metrics.jsonl $R/metrics-$n-$b.jsonl 2>/dev/null
done
mark "eval start"
timeout 150 $B eval runs/d-16-none --instances 16 --out $R/eval16 > $R/eval16.log 2>&1; echo "rc $?" >> $R/eval16.log
mark "eval end"
}
work &
W=$!
for i in $(seq 550); do kill -0 $W 2>/dev/null || break; sleep 1; done
mark "stopped after $i s"
pkill -INT metalearn; sleep 3; pkill -9 metalearn
kill $SMI
tar -C $OUT -czf $OUT/results.tgz r && rm -rf $R
