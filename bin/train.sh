#!/usr/bin/env bash
# Part II: fine-tuning over channel combinations x folds from the Part I weights.
# Output: $LOG_DIR/non_pseudo/<channels>/fold_<k>/<model_name>/
# Set PRETRAINED_CONTROL= (empty) to start without Part I weights.
# Extra arguments go to src/train.py.
set -euo pipefail
CONFIG="${CONFIG:-configs/config.yml}"
# shellcheck source=bin/rxrx1_args.sh
source "$(dirname "$0")/rxrx1_args.sh"
PRETRAINED_CONTROL="${PRETRAINED_CONTROL-$LOG_DIR/pretrained_controls}"
OUT_NAME="${OUT_NAME:-non_pseudo}"
FOLDS="${FOLDS:-0 1 2 3 4}"
read -r -a folds <<< "$FOLDS"

for channels in "${combos[@]}"; do
    for fold in "${folds[@]}"; do
        train_run "$LOG_DIR/$OUT_NAME/$channels/fold_$fold/$MODEL_NAME" "$channels" \
            "$CSV_DIR/train_$fold.csv" "$CSV_DIR/valid_$fold.csv" \
            --model_params/weight="${PRETRAINED_CONTROL:+$PRETRAINED_CONTROL/$channels/$MODEL_NAME/checkpoints/best.pth}" \
            "$@"
    done
done
