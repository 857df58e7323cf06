#!/usr/bin/env bash
# The seed's flow once the folds exist: Part I -> Part II -> predict-all -> ensemble -> pseudo
# labels -> Part III -> predict-all -> ensemble. Every command goes through LAUNCH (default:
# run it now with $PYTHON; bin/grid.sh records them for a cluster engine instead).
# Part I trains with CONTROL_OVERLAY (default: OVERLAY); the script's arguments go to Parts II
# and III (e.g. --overlay configs/recipe_cpu.yml).
set -euo pipefail

export PYTHON="${PYTHON:-python}"
export DATA_DIR="${DATA_DIR:-/data}"
export LOG_DIR="${LOG_DIR:-/logs}"
export CSV_DIR="${CSV_DIR:-./csv}"
export PSEUDO_CSV_DIR="${PSEUDO_CSV_DIR:-$CSV_DIR/pseudo}"
export MODEL_NAME="${MODEL_NAME:-se_resnext50_32x4d}"
export LAUNCH="${LAUNCH:-$PYTHON}"
PRED_DIR="${PRED_DIR:-$LOG_DIR/predictions}"
ENS_DIR="${ENS_DIR:-$LOG_DIR/ensemble}"
read -r -a launch <<< "$LAUNCH"

OVERLAY="${CONTROL_OVERLAY:-${OVERLAY:-}}" bash bin/train_control.sh
bash bin/train.sh "$@"
"${launch[@]}" src/inference.py predict-all --data_root "$DATA_DIR" --model_root "$LOG_DIR/non_pseudo" \
    --model_name "$MODEL_NAME" --out_dir "$PRED_DIR/non_pseudo"
"${launch[@]}" src/ensemble.py --data_root "$DATA_DIR" --pred_dirs "$PRED_DIR/non_pseudo" --out_dir "$ENS_DIR/non_pseudo"
"${launch[@]}" src/make_pseudo.py --data_root "$DATA_DIR" --ensemble_dir "$ENS_DIR/non_pseudo" \
    --csv_dir "$CSV_DIR" --out_dir "$PSEUDO_CSV_DIR"
bash bin/train_pseudo.sh "$@"
"${launch[@]}" src/inference.py predict-all --data_root "$DATA_DIR" --model_root "$LOG_DIR/pseudo" \
    --model_name "$MODEL_NAME" --out_dir "$PRED_DIR/pseudo"
"${launch[@]}" src/ensemble.py --data_root "$DATA_DIR" --pred_dirs "$PRED_DIR/pseudo" --out_dir "$ENS_DIR/pseudo"
