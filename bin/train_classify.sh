#!/usr/bin/env bash
# Classification of any image collection (single label, multi-label or hierarchy, as the data
# config DATA_CONFIG says; default configs/data/$SOURCE.yml) with the model recipe MODEL_CONFIG
# (default configs/model/compact.yml: the small-image recipe; empty: base.yml's timm resnet18), merged
# in that order (recipe, then data, then OVERLAY, then the flags):
# one run per fold (or one run on the source's own train/valid split when CSV_DIR is empty), in the
# seed's run tree $LOG_DIR/$SOURCE/[channels]/fold_k/<model_name>/. MODEL / MODEL_NAME override the
# recipe's model_params/model and model_name.
set -euo pipefail
SOURCE=${SOURCE:-manifest}
DATA_DIR=${DATA_DIR:-/data}
LOG_DIR=${LOG_DIR:-/logs}
CSV_DIR=${CSV_DIR:-}
FOLDS=${FOLDS:-0}
MODEL=${MODEL:-}
MODEL_NAME=${MODEL_NAME:-}
CHANNELS_TAG=${CHANNELS_TAG:-all}
MODEL_CONFIG=${MODEL_CONFIG-configs/model/compact.yml}
OVERLAY=${OVERLAY:-}
DATA_CONFIG=${DATA_CONFIG:-configs/data/$SOURCE.yml}
PYTHON=${PYTHON:-python}

for fold in $FOLDS; do
    fold_args=()
    if [ -n "$CSV_DIR" ]; then
        fold_args=("--data_params/train_csv=$CSV_DIR/train_$fold.csv" "--data_params/valid_csv=$CSV_DIR/valid_$fold.csv")
    fi
    # train.py names the {model_name} folder after the resolved config
    "$PYTHON" src/train.py --config configs/classify.yml --overlay "$MODEL_CONFIG" --overlay "$DATA_CONFIG" \
        --overlay "$OVERLAY" --logdir "$LOG_DIR/$SOURCE/[$CHANNELS_TAG]/fold_$fold/${MODEL_NAME:-"{model_name}"}" \
        --data_params/root="$DATA_DIR" ${MODEL:+"--model_params/model=$MODEL"} \
        ${MODEL_NAME:+"--model_params/model_name=$MODEL_NAME"} "${fold_args[@]}" "$@"
done
