#!/usr/bin/env bash
# Progressive pseudo-labelling: ROUNDS rounds of Part III, each adding the TOP_STEP most confident
# test plates (or experiments: UNIT) more than the round before, labelled by the previous round's
# ensemble (round 0: ENSEMBLE_DIR, e.g. the Part II ensemble).
# Output: $PSEUDO_CSV_ROOT/pseudo_r<k>/ (folds), $LOG_DIR/pseudo_r<k>/..., $PRED_DIR/pseudo_r<k>/...,
# $ENS_DIR/pseudo_r<k>/ (submission.csv).
set -euo pipefail
PYTHON="${PYTHON:-python}"
DATA_DIR="${DATA_DIR:-/data}"
LOG_DIR="${LOG_DIR:-/logs}"
CSV_DIR="${CSV_DIR:-./csv}"
PRED_DIR="${PRED_DIR:-/predictions}"
ENS_DIR="${ENS_DIR:-/predictions/ensemble}"
ENSEMBLE_DIR="${ENSEMBLE_DIR:-$ENS_DIR/non_pseudo}"
MODEL_NAME="${MODEL_NAME:-se_resnext50_32x4d}"
ROUNDS="${ROUNDS:-2}"
TOP_STEP="${TOP_STEP:-4}"
UNIT="${UNIT:-plate}"
PSEUDO_CSV_ROOT="${PSEUDO_CSV_ROOT:-$CSV_DIR}"  # where each round's pseudo-label folds go
PREDICT_ARGS="${PREDICT_ARGS:-}"

previous="$ENSEMBLE_DIR"
for round in $(seq 1 "$ROUNDS"); do
    name="pseudo_r$round"
    "$PYTHON" src/make_pseudo.py --data_root "$DATA_DIR" --ensemble_dir "$previous" --csv_dir "$CSV_DIR" \
        --out_dir "$PSEUDO_CSV_ROOT/$name" --top "$((round * TOP_STEP))" --unit "$UNIT"
    PSEUDO_CSV_DIR="$PSEUDO_CSV_ROOT/$name" PSEUDO_OUT_NAME="$name" MODEL_NAME="$MODEL_NAME" \
        bash "$(dirname "$0")/train_pseudo.sh" "$@"
    # shellcheck disable=SC2086  # PREDICT_ARGS holds several flags
    "$PYTHON" src/inference.py predict-all --data_root "$DATA_DIR" --model_root "$LOG_DIR/$name" \
        --model_name "$MODEL_NAME" --out_dir "$PRED_DIR/$name" $PREDICT_ARGS
    "$PYTHON" src/ensemble.py --data_root "$DATA_DIR" --pred_dirs "$PRED_DIR/$name" --out_dir "$ENS_DIR/$name"
    previous="$ENS_DIR/$name"
done
