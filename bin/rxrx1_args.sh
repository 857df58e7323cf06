# shellcheck shell=bash
# Sourced by train_control.sh and train.sh: the settings and the train.py call they share.
# Every variable can be set from the environment.
PYTHON="${PYTHON:-python}"
LAUNCH="${LAUNCH:-$PYTHON}"           # what runs each command; bin/grid.sh records them for a cluster engine
read -r -a launch <<< "$LAUNCH"
OVERLAY="${OVERLAY:-}"                # extra YAML merged on top (e.g. configs/demo.yml)
MODEL="${MODEL:-cell_senet}"
MODEL_NAME="${MODEL_NAME:-se_resnext50_32x4d}"
DATA_DIR="${DATA_DIR:-/data}"
LOG_DIR="${LOG_DIR:-/logs}"
CSV_DIR="${CSV_DIR:-./csv}"
CHANNELS="${CHANNELS:-[1,2,3,4,5] [1,2,3,4,6] [1,2,3,5,6] [1,2,4,5,6] [1,3,4,5,6] [2,3,4,5,6]}"
# shellcheck disable=SC2034  # used by the scripts that source this file
read -r -a combos <<< "$CHANNELS"     # split on spaces; never glob-expand [1,2,...]

# train_run LOGDIR CHANNELS TRAIN_CSV VALID_CSV [train.py arguments...]
train_run() {
    local logdir="$1" channels="$2" train_csv="$3" valid_csv="$4"
    shift 4
    "${launch[@]}" src/train.py \
        --config "$CONFIG" \
        --overlay "$OVERLAY" \
        --logdir "$logdir" \
        --model_params/model="$MODEL" \
        --model_params/model_name="$MODEL_NAME" \
        --data_params/root="$DATA_DIR" \
        --data_params/channels="$channels" \
        --data_params/train_csv="$train_csv" \
        --data_params/valid_csv="$valid_csv" \
        "$@"
}
