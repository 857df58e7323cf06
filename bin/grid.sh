#!/usr/bin/env bash
# The seed's whole flow as one grid of jobs on a cluster engine (src/grid.py: submitit, Slurm job
# arrays or local processes): Part I -> Part II -> predict-all -> ensemble -> pseudo labels ->
# Part III -> predict-all -> ensemble. The bin/ scripts run their loops as usual with LAUNCH set
# to record each command; src/grid.py then runs them in dependency order, at most MAX_PARALLEL at
# once, skipping finished runs. Same output trees as the scripts run one by one.
#   ENGINE=slurm MAX_PARALLEL=8 bash bin/grid.sh --partition gpu      # extra arguments go to grid.py run
set -euo pipefail

export PYTHON="${PYTHON:-python}"
export DATA_DIR="${DATA_DIR:-/data}"
export LOG_DIR="${LOG_DIR:-/logs}"
export CSV_DIR="${CSV_DIR:-./csv}"
export PSEUDO_CSV_DIR="${PSEUDO_CSV_DIR:-$CSV_DIR/pseudo}"
export MODEL_NAME="${MODEL_NAME:-se_resnext50_32x4d}"
PRED_DIR="${PRED_DIR:-$LOG_DIR/predictions}"
ENS_DIR="${ENS_DIR:-$LOG_DIR/ensemble}"
GRID="${GRID:-$LOG_DIR/grid/jobs.jsonl}"
ENGINE="${ENGINE:-local}"
MAX_PARALLEL="${MAX_PARALLEL:-}"
CONTROL_OVERLAY="${CONTROL_OVERLAY:-${OVERLAY:-}}"   # e.g. configs/demo_control.yml with OVERLAY=configs/demo.yml

"$PYTHON" src/grid.py new "$GRID"
export LAUNCH="$PYTHON src/grid.py add $GRID"
read -r -a launch <<< "$LAUNCH"

OVERLAY="$CONTROL_OVERLAY" bash bin/train_control.sh
bash bin/train.sh
"${launch[@]}" src/inference.py predict-all --data_root "$DATA_DIR" --model_root "$LOG_DIR/non_pseudo" \
    --model_name "$MODEL_NAME" --out_dir "$PRED_DIR/non_pseudo"
"${launch[@]}" src/ensemble.py --data_root "$DATA_DIR" --pred_dirs "$PRED_DIR/non_pseudo" --out_dir "$ENS_DIR/non_pseudo"
"${launch[@]}" src/make_pseudo.py --data_root "$DATA_DIR" --ensemble_dir "$ENS_DIR/non_pseudo" \
    --csv_dir "$CSV_DIR" --out_dir "$PSEUDO_CSV_DIR"
bash bin/train_pseudo.sh
"${launch[@]}" src/inference.py predict-all --data_root "$DATA_DIR" --model_root "$LOG_DIR/pseudo" \
    --model_name "$MODEL_NAME" --out_dir "$PRED_DIR/pseudo"
"${launch[@]}" src/ensemble.py --data_root "$DATA_DIR" --pred_dirs "$PRED_DIR/pseudo" --out_dir "$ENS_DIR/pseudo"

"$PYTHON" src/grid.py run "$GRID" --engine "$ENGINE" ${MAX_PARALLEL:+--max_parallel "$MAX_PARALLEL"} "$@"
