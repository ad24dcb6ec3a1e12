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
# The runs, resumption and tables are bench/method_cells.sh's (SEEDS, JOBS,
# DATASETS, EVAL, DATA_DIR as there); this script names iCaRL's cells.
#
#   OUT=runs/icarl-knobs bash bench/icarl_training_knobs.sh
#   CELLS="lr0.5+cosine+crop lr0.1+multistep+none" DATASETS=digits bash bench/icarl_training_knobs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export METHOD=icarl
export OUT=${OUT:-results/icarl-knobs}
export CELLS=${CELLS:-"lr0.5+cosine+crop lr0.5+multistep+crop lr0.5+cosine+none lr0.5+multistep+none lr0.1+multistep+crop lr0.1+multistep+none"}

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
export -f cell_sets
exec bash bench/method_cells.sh
