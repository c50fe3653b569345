#!/usr/bin/env bash
# The mlp meta-learner over 3 seeds as REPRODUCTION.md §7's gated one (static 500 steps, 170 s
# of meta-training per seed side by side, eval of `learned` on the same test streams), and φ at
# step 0 of gated (no meta-training) on the same streams.
for f in .gl/*.deb; do dpkg -x $f / >/dev/null; done; ldconfig
tar -C / -xJf .corpus/sources.tar.xz
export XDG_RUNTIME_DIR=$(mktemp -d)
B=$PWD/target/release/metalearn
R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/gpu.txt 2>&1
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > $R/mem.csv 2>&1 &
SMI=$!
work() {
DYNLM_CONFIG=configs/dynlm_word_mlp.toml DYNAMIC="{learned={}}" PHI0_CONFIG=configs/dynlm_word.toml \
  bash tools/dynlm_seeds.sh $B $R/mlp 500 170 "0 1 2" > $R/seeds.log 2>&1
echo "rc $?" >> $R/seeds.log
date >> $R/seeds.log
}
work &
W=$!
for i in $(seq 540); do kill -0 $W 2>/dev/null || break; sleep 1; done
echo "stopped after $i s" >> $R/seeds.log
pkill -INT metalearn; sleep 3; pkill -9 metalearn
kill $SMI
tar -C $OUT -czf $OUT/results.tgz r && rm -rf $R
