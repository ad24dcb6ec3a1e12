#!/usr/bin/env bash
# iCaRL's learning rate, schedule and augmentation, changed one at a time and
# together, on the validation split of GTSRB (notebook protocol) and of the
# embedded digits: the evidence behind iCaRL's default (bench/README.md,
# "iCaRL's training knobs"). A cell is named lrLR+SCHEDULE+AUGMENT and sets all
# three explicitly (so a later change of the defaults does not change what a
# cell measures); memory 200 and every other knob stay at the default. Each
# cell is SEEDS seeds. EVAL=test reruns chosen cells on the test split (trained
# on train+val) for the final table, once the default is chosen on validation;
# the wide* cells are the front of the 20-trial wide search (bench/README.md;
# lr and weight decay as rounded there).
# Runs go one process each (--sequential, 1 thread), JOBS at a time, seed 0 of
# every cell first so a cut-short run still has every cell once; a run whose
# result.json exists is skipped (resumable). Then one final table per dataset.
#
#   OUT=runs/icarl-knobs bash bench/icarl_training_knobs.sh
#   CELLS="lr0.5+cosine+crop lr0.1+multistep+none" DATASETS=digits bash bench/icarl_training_knobs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/icarl-knobs}
SEEDS=${SEEDS:-3}
JOBS=${JOBS:-$(nproc)}
DATA_DIR=${DATA_DIR:-../shared/data}
DATASETS=${DATASETS:-"digits gtsrb"}
EVAL=${EVAL:-val}
CELLS=${CELLS:-"lr0.5+cosine+crop lr0.5+multistep+crop lr0.5+cosine+none lr0.5+multistep+none lr0.1+multistep+crop lr0.1+multistep+none"}

cell_sets() {  # the --set flags of a cell
  case $1 in
    # the wide search's front: #12 (highest accuracy) and #1 (least forgetting)
    wide12) echo "--set lr=0.910 --set memory=1071 --set weight_decay=7.4e-05 --set lr_schedule=multistep --set augment=none" ;;
    wide1) echo "--set lr=0.301 --set memory=1494 --set weight_decay=1.6e-06 --set lr_schedule=multistep --set augment=none" ;;
    lr*+*+*)
      local lr schedule augment
      IFS=+ read -r lr schedule augment <<< "$1"
      echo "--set lr=${lr#lr} --set lr_schedule=$schedule --set augment=$augment" ;;
    *) echo "unknown cell: $1 (lrLR+SCHEDULE+AUGMENT, wide12 or wide1)" >&2; exit 2 ;;
  esac
}

jobs_file=$(mktemp)
for seed in $(seq 0 $((SEEDS - 1))); do
  for dataset in $DATASETS; do
    for cell in $CELLS; do
      # one folder per run (a folder is locked by the run writing it), gathered below
      dir="$OUT/$dataset/runs/$cell-seed$seed"
      [ -f "$dir/seed$seed/result.json" ] && continue
      echo "$PY search/rerun.py --method icarl $(cell_sets "$cell") --dataset $dataset --data-dir $DATA_DIR" \
           "--eval $EVAL --seed $seed --seeds 1 --threads 1 --precision fp32 --sequential --quiet --out $dir" \
           "> $dir.log 2>&1 || echo '$dataset $cell seed $seed failed'" >> "$jobs_file"
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
