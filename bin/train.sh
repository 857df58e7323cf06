#!/usr/bin/env bash
# Part II: fine-tuning over channel combinations x folds from the Part I weights.
# Output: $LOG_DIR/non_pseudo/<channels>/fold_<k>/<model_name>/
# Set PRETRAINED_CONTROL= (empty) to start without Part I weights.
# Extra arguments go to src/train.py.
set -euo pipefail

PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-$PYTHON}"           # what runs each command; bin/grid.sh records them for a cluster engine
read -r -a launch <<< "$LAUNCH"
CONFIG="${CONFIG:-configs/config.yml}"
OVERLAY="${OVERLAY:-}"
MODEL="${MODEL:-cell_senet}"
MODEL_NAME="${MODEL_NAME:-se_resnext50_32x4d}"
DATA_DIR="${DATA_DIR:-/data}"
LOG_DIR="${LOG_DIR:-/logs}"
CSV_DIR="${CSV_DIR:-./csv}"
PRETRAINED_CONTROL="${PRETRAINED_CONTROL-$LOG_DIR/pretrained_controls}"
OUT_NAME="${OUT_NAME:-non_pseudo}"
CHANNELS="${CHANNELS:-[1,2,3,4,5] [1,2,3,4,6] [1,2,3,5,6] [1,2,4,5,6] [1,3,4,5,6] [2,3,4,5,6]}"
FOLDS="${FOLDS:-0 1 2 3 4}"

read -r -a combos <<< "$CHANNELS"
read -r -a folds <<< "$FOLDS"
for channels in "${combos[@]}"; do
    for fold in "${folds[@]}"; do
        "${launch[@]}" src/train.py \
            --config "$CONFIG" \
            --overlay "$OVERLAY" \
            --logdir "$LOG_DIR/$OUT_NAME/$channels/fold_$fold/$MODEL_NAME" \
            --model_params/model="$MODEL" \
            --model_params/model_name="$MODEL_NAME" \
            --model_params/weight="${PRETRAINED_CONTROL:+$PRETRAINED_CONTROL/$channels/$MODEL_NAME/checkpoints/best.pth}" \
            --data_params/root="$DATA_DIR" \
            --data_params/channels="$channels" \
            --data_params/train_csv="$CSV_DIR/train_$fold.csv" \
            --data_params/valid_csv="$CSV_DIR/valid_$fold.csv" \
            "$@"
    done
done
