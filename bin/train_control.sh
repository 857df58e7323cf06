#!/usr/bin/env bash
# Part I: 31-class control pretraining, one run per channel combination.
# Output: $LOG_DIR/pretrained_controls/<channels>/<model_name>/
# Extra arguments go to src/train.py, e.g. --data_params/batch_size=32.
set -euo pipefail

PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-$PYTHON}"           # what runs each command; bin/grid.sh records them for a cluster engine
read -r -a launch <<< "$LAUNCH"
CONFIG="${CONFIG:-configs/config_control.yml}"
OVERLAY="${OVERLAY:-}"                # extra YAML merged on top (e.g. configs/demo.yml)
MODEL="${MODEL:-cell_senet}"
MODEL_NAME="${MODEL_NAME:-se_resnext50_32x4d}"
DATA_DIR="${DATA_DIR:-/data}"
LOG_DIR="${LOG_DIR:-/logs}"
CSV_DIR="${CSV_DIR:-./csv}"
CHANNELS="${CHANNELS:-[1,2,3,4,5] [1,2,3,4,6] [1,2,3,5,6] [1,2,4,5,6] [1,3,4,5,6] [2,3,4,5,6]}"

read -r -a combos <<< "$CHANNELS"     # split on spaces; never glob-expand [1,2,...]
for channels in "${combos[@]}"; do
    "${launch[@]}" src/train.py \
        --config "$CONFIG" \
        --overlay "$OVERLAY" \
        --logdir "$LOG_DIR/pretrained_controls/$channels/$MODEL_NAME" \
        --model_params/model="$MODEL" \
        --model_params/model_name="$MODEL_NAME" \
        --data_params/root="$DATA_DIR" \
        --data_params/channels="$channels" \
        --data_params/train_csv="$CSV_DIR/control_train.csv" \
        --data_params/valid_csv="$CSV_DIR/control_valid.csv" \
        "$@"
done
