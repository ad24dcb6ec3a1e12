#!/usr/bin/env bash
# Every strategy on the GTSRB course-notebook protocol (classes 0..39 in natural
# order, 5 tasks of 8, SimpleCNN, 5 epochs per task, batch 128, crop augmentation),
# default configs, trained on train+validation and scored on test, SEEDS seeds,
# through the rerun path (search/rerun.py --method). Then one table
# (analysis/final_table.py) and where each run's time went.
#
#   bash bench/strategy_table.sh                  # bf16, 3 seeds, ../shared/data
#   SEEDS=1 PRECISION=fp32 OUT=/tmp/t bash bench/strategy_table.sh
#
# DATASET and EVAL run the same rows on another built-in stream or split: the
# default configs' check on the embedded digits, on validation (no test split
# is looked at to judge a default):
#
#   DATASET=digits EVAL=val PRECISION=fp32 THREADS=1 OUT=/tmp/d bash bench/strategy_table.sh
#
# A method whose last seed already has a result.json is skipped, so an
# interrupted run continues where it stopped. ROWS runs only the named rows
# (the defaults record of some methods); FLAGS adds rerun.py flags to every
# row (--sequential: one run at a time, next to other work):
#
#   ROWS="finetune joint" DATASET=gtsrb EVAL=val PRECISION=fp32 THREADS=1 FLAGS=--sequential bash bench/strategy_table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/strategy-table}
SEEDS=${SEEDS:-3}
PRECISION=${PRECISION:-bf16}
DATA_DIR=${DATA_DIR:-../shared/data}
THREADS=${THREADS:-$(nproc)}
DATASET=${DATASET:-gtsrb}
EVAL=${EVAL:-test}
ROWS=${ROWS:-}
read -r -a extra_flags <<< "${FLAGS:-}"
common=(--dataset "$DATASET" --data-dir "$DATA_DIR" --eval "$EVAL" --seeds "$SEEDS" --precision "$PRECISION"
        --threads "$THREADS" --quiet "${extra_flags[@]}")

run() {
  local name=$1; shift
  if [ -n "$ROWS" ] && [[ " $ROWS " != *" $name "* ]]; then return; fi
  if [ -f "$OUT/$name/seed$((SEEDS - 1))/result.json" ]; then
    echo "$name: done already"; return
  fi
  local t0=$SECONDS
  "$PY" search/rerun.py "$@" "${common[@]}" --out "$OUT/$name" > "$OUT/$name.log" 2>&1 \
    || { echo "$name failed: $(tail -1 "$OUT/$name.log")"; return 1; }
  echo "$name: $((SECONDS - t0)) s"
}

mkdir -p "$OUT"
names=(finetune joint replay replay+kd replay+kd-lr0.02 lwf ewc icarl gem der gdumb packnet)
run finetune --method finetune
run joint --method joint
run replay --method replay
run replay+kd --method replay --set kd_weight=1 --set temperature=2
# At the default lr 0.05 replay+KD's start of task 2 is unstable for some seeds
# (loss spike, old classes lost); lr 0.02 is the notebook-style setting that
# is stable. Both rows are kept so the table shows the sensitivity.
run replay+kd-lr0.02 --method replay --set kd_weight=1 --set temperature=2 --set lr=0.02
run lwf --method lwf
run ewc --method ewc
run icarl --method icarl
run gem --method gem
run der --method der
run gdumb --method gdumb
run packnet --method packnet
rows=()
for name in "${names[@]}"; do [ -d "$OUT/$name" ] && rows+=("$OUT/$name"); done
"$PY" analysis/final_table.py "${rows[@]}" --out "$OUT" \
  --title "Strategies on $DATASET (its default protocol), default configs, $EVAL split" \
  --note "command: ${ROWS:+ROWS=\"$ROWS\" }DATASET=$DATASET EVAL=$EVAL SEEDS=$SEEDS PRECISION=$PRECISION bash bench/strategy_table.sh ($(nproc) CPUs, $THREADS threads)" \
  --note "packnet is task-incremental (task identity given at test time): its row is task-IL, the others class-IL"
