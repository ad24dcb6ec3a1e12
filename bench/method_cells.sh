#!/usr/bin/env bash
# One method at a handful of hand-picked configurations ("cells"), on the
# validation split of the embedded digits and of GTSRB (notebook protocol):
# the evidence behind a method's default config (bench/README.md). A cell is
# "key=value,key=value" (--set values: strategy knobs and training loop knobs;
# "default" sets nothing) and its folder is named after it, so a later change
# of the defaults does not change what a recorded cell measures -- name every
# knob a cell is about. Each cell runs SEEDS seeds. EVAL=test reruns chosen
# cells on the test split (trained on train+val) for the final table, once the
# default is chosen on validation.
# Runs go one process each (--sequential, 1 thread), JOBS at a time, seed 0 of
# every cell first so a cut-short run still has every cell once; a run whose
# result.json exists is skipped (resumable). Then one final table per dataset.
#
#   METHOD=ewc CELLS="optimizer=sgd,lr=0.05,ewc_lambda=1 optimizer=adam,lr=0.001,ewc_lambda=10" OUT=runs/ewc bash bench/method_cells.sh
#   METHOD=gem CELLS="lr=0.05,memory_strength=0 lr=0.01,memory_strength=0.5" DATASETS=digits SEEDS=3 bash bench/method_cells.sh
#
# A caller may define and export its own cell_sets function (cell name -> --set
# flags) before running this script (bench/icarl_training_knobs.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
METHOD=${METHOD:?METHOD=name of the method}
OUT=${OUT:-results/$METHOD-cells}
SEEDS=${SEEDS:-3}
JOBS=${JOBS:-$(nproc)}
DATA_DIR=${DATA_DIR:-../shared/data}
DATASETS=${DATASETS:-"digits gtsrb"}
EVAL=${EVAL:-val}
CELLS=${CELLS:?CELLS=space-separated cells, each key=value,key=value or default}

if ! declare -F cell_sets > /dev/null; then
  cell_sets() {  # "lr=0.01,memory=500" -> --set lr=0.01 --set memory=500
    [ "$1" = default ] && return
    local item
    for item in ${1//,/ }; do
      case $item in
        *=*) printf -- '--set %s ' "$item" ;;
        *) echo "bad cell $1: expected key=value,key=value or default" >&2; exit 2 ;;
      esac
    done
  }
fi

jobs_file=$(mktemp)
for seed in $(seq 0 $((SEEDS - 1))); do
  for dataset in $DATASETS; do
    for cell in $CELLS; do
      # one folder per run (a folder is locked by the run writing it), gathered below
      dir="$OUT/$dataset/runs/$cell-seed$seed"
      [ -f "$dir/seed$seed/result.json" ] && continue
      sets=$(cell_sets "$cell")
      echo "$PY search/rerun.py --method $METHOD $sets --dataset $dataset --data-dir $DATA_DIR" \
           "--eval $EVAL --seed $seed --seeds 1 --threads 1 --precision fp32 --sequential --quiet --out '$dir'" \
           "> '$dir.log' 2>&1 || echo '$dataset $cell seed $seed failed: see $dir.log'" >> "$jobs_file"
    done
  done
done
mkdir -p "$OUT"
for dataset in $DATASETS; do mkdir -p "$OUT/$dataset/runs"; done
t0=$SECONDS
xargs -P "$JOBS" -I{} bash -c {} < "$jobs_file"
rm -f "$jobs_file"
echo "runs: $((SECONDS - t0)) s"
for dataset in $DATASETS; do
  dirs=()
  for cell in $CELLS; do  # $OUT/DATASET/CELL/seedN -> the run's own folder, so one table row per cell
    mkdir -p "$OUT/$dataset/$cell"
    for seed in $(seq 0 $((SEEDS - 1))); do
      run_dir="$OUT/$dataset/runs/$cell-seed$seed/seed$seed"
      [ -f "$run_dir/result.json" ] && ln -sfn "../runs/$cell-seed$seed/seed$seed" "$OUT/$dataset/$cell/seed$seed"
    done
    [ -n "$(ls "$OUT/$dataset/$cell")" ] && dirs+=("$OUT/$dataset/$cell")
  done
  echo "== $dataset"
  "$PY" analysis/final_table.py "${dirs[@]}" --out "$OUT/$dataset" || true
done
