#!/usr/bin/env bash
# The whole seed flow on generated demo data (what `make demo` runs):
# data -> folds -> Part I -> Part II -> predict-all -> ensemble -> pseudo labels
# -> Part III -> predict-all -> ensemble -> submission.csv + report.
# Re-running continues where it stopped (finished runs and predictions are skipped).
set -euo pipefail

export PYTHON="${PYTHON:-python}"
DEMO_DIR="${DEMO_DIR:-demo_out}"
# the folders bin/flow.sh and the train scripts use, all under DEMO_DIR
export DATA_DIR="$DEMO_DIR/data" LOG_DIR="$DEMO_DIR/logs" CSV_DIR="$DEMO_DIR/csv" PSEUDO_CSV_DIR="$DEMO_DIR/csv/pseudo"
# a tiny model, 2 channel combinations x 2 folds
export MODEL="${MODEL:-timm}" MODEL_NAME="${MODEL_NAME:-test_resnet}"
export CHANNELS="${CHANNELS:-[1,2,3,4,5] [2,3,4,5,6]}" FOLDS="${FOLDS:-0 1}"
PRED_DIR="$DEMO_DIR/predictions"
ENS_DIR="$DEMO_DIR/ensemble"
REPORT_DIR="$DEMO_DIR/report"

SECONDS=0
"$PYTHON" src/make_demo_data.py --out_dir "$DATA_DIR"
"$PYTHON" src/make_folds.py --data_root "$DATA_DIR" --out_dir "$CSV_DIR"

# Parts II and III train with the CPU recipe (issue 8)
CONTROL_OVERLAY=configs/demo_control.yml OVERLAY=configs/demo.yml PRED_DIR="$PRED_DIR" ENS_DIR="$ENS_DIR" \
    bash bin/flow.sh --overlay configs/recipe_cpu.yml
cp "$ENS_DIR/pseudo/submission.csv" "$DEMO_DIR/submission.csv"

"$PYTHON" src/report.py ensemble --ensemble_dir "$ENS_DIR/non_pseudo" --data_root "$DATA_DIR" --out_dir "$REPORT_DIR"
"$PYTHON" src/report.py ensemble --ensemble_dir "$ENS_DIR/pseudo" --data_root "$DATA_DIR" --out_dir "$REPORT_DIR"
echo
echo "Validation scores of every run (top1 vs chance = 1/classes):"
"$PYTHON" src/report.py runs --log_dir "$LOG_DIR" --out_csv "$REPORT_DIR/runs.csv"
echo "demo finished in ${SECONDS}s: $DEMO_DIR/submission.csv, report in $REPORT_DIR"
