#!/usr/bin/env bash
# Classification of any image collection (single label, multi-label or hierarchy, as the data
# config DATA_CONFIG says; default configs/data/$SOURCE.yml): one run per fold (or one run on the
# source's own train/valid split when CSV_DIR is empty), in the seed's run tree
# $LOG_DIR/$SOURCE/[channels]/fold_k/$MODEL_NAME/.
set -euo pipefail
SOURCE=${SOURCE:-manifest}
DATA_DIR=${DATA_DIR:-/data}
LOG_DIR=${LOG_DIR:-/logs}
CSV_DIR=${CSV_DIR:-}
FOLDS=${FOLDS:-0}
MODEL=${MODEL:-timm}
MODEL_NAME=${MODEL_NAME:-test_resnet}
CHANNELS_TAG=${CHANNELS_TAG:-all}
OVERLAY=${OVERLAY:-}
DATA_CONFIG=${DATA_CONFIG:-configs/data/$SOURCE.yml}
PYTHON=${PYTHON:-python}

for fold in $FOLDS; do
    fold_args=()
    if [ -n "$CSV_DIR" ]; then
        fold_args=("--data_params/train_csv=$CSV_DIR/train_$fold.csv" "--data_params/valid_csv=$CSV_DIR/valid_$fold.csv")
    fi
    "$PYTHON" src/train.py --config configs/classify.yml --overlay "$DATA_CONFIG" --overlay "$OVERLAY" \
        --logdir "$LOG_DIR/$SOURCE/[$CHANNELS_TAG]/fold_$fold/$MODEL_NAME" \
        --data_params/root="$DATA_DIR" --model_params/model="$MODEL" --model_params/model_name="$MODEL_NAME" \
        "${fold_args[@]}" "$@"
done
