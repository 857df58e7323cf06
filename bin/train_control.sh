#!/usr/bin/env bash
# Part I: 31-class control pretraining, one run per channel combination.
# Output: $LOG_DIR/pretrained_controls/<channels>/<model_name>/
# Extra arguments go to src/train.py, e.g. --data_params/batch_size=32.
set -euo pipefail
CONFIG="${CONFIG:-configs/config_control.yml}"
# shellcheck source=bin/rxrx1_args.sh
source "$(dirname "$0")/rxrx1_args.sh"

for channels in "${combos[@]}"; do
    train_run "$LOG_DIR/pretrained_controls/$channels/$MODEL_NAME" "$channels" \
        "$CSV_DIR/control_train.csv" "$CSV_DIR/control_valid.csv" "$@"
done
