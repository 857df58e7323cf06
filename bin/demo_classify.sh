#!/usr/bin/env bash
# make demo-<kind>: generate a small data set in an adapter's own format, train, predict, report.
# hpa (multi-label) and moths (hierarchy) train N_FOLDS folds (default 3) and ensemble them out-of-fold.
set -euo pipefail
KIND=${KIND:-manifest}
DEMO_DIR=${DEMO_DIR:-demo_out}/$KIND
PYTHON=${PYTHON:-python}
N_FOLDS=${N_FOLDS:-3}
data="$DEMO_DIR/data"
[ -d "$data" ] || "$PYTHON" src/make_demo_data.py --out_dir "$data" --kind "$KIND"
csv="" folds=0 source=$KIND root=$data data_config=configs/data/$KIND.yml extra=() truth=()
case "$KIND" in
    rxrx1_2020)  # no validation split of its own: folds grouped by experiment
        csv="$DEMO_DIR/csv"
        [ -f "$csv/folds.json" ] || "$PYTHON" src/make_folds.py "$data" --out_dir "$csv" --n_folds 3 --source "$KIND"
        ;;
    hpa)  # near-duplicates first, then iterative stratification keeping each duplicate group in one fold
        csv="$DEMO_DIR/csv" folds=$(seq -s " " 0 $((N_FOLDS - 1))) truth=(--truth "$data/test_truth.csv")
        extra=("--data_params/source_params={classes: 8}" --data_params/image_size=64)
        [ -f "$csv/duplicates.csv" ] || "$PYTHON" src/dedup.py "$data" --source hpa --out "$csv/duplicates.csv"
        [ -f "$csv/folds.json" ] || "$PYTHON" src/make_folds.py "$data" --out_dir "$csv" --n_folds "$N_FOLDS" --source hpa \
            --target multilabel --duplicates "$csv/duplicates.csv" --grouped false
        ;;
    moths)  # seed 001: one image folder, cross-validated
        csv="$DEMO_DIR/csv" folds=$(seq -s " " 0 $((N_FOLDS - 1))) source=folder root="$data/image_folder"
        extra=(--data_params/image_size=48)
        [ -f "$csv/folds.json" ] || "$PYTHON" src/make_folds.py "$root" --out_dir "$csv" --n_folds "$N_FOLDS" --source folder \
            --grouped false
        ;;
esac
SOURCE=$source DATA_DIR=$root LOG_DIR="$DEMO_DIR/logs" CSV_DIR=$csv FOLDS=$folds OVERLAY=configs/tiny.yml \
    DATA_CONFIG=$data_config PYTHON=$PYTHON bash bin/train_classify.sh --stages/finetune/num_epochs="${EPOCHS:-8}" "${extra[@]}"
if [ "$folds" = 0 ]; then
    run=$(dirname "$(find "$DEMO_DIR/logs" -name DONE.json | head -n 1)")
    "$PYTHON" src/inference.py predict --run_dir="$run" --out_dir="$DEMO_DIR/predictions" --overwrite
    cat "$run/per_class.csv"
    echo "run: $run; predictions: $DEMO_DIR/predictions/pred_test.csv; figures: $run/*.png"
else
    "$PYTHON" src/inference.py predict-all --data_root "$root" --model_root "$DEMO_DIR/logs/$source" \
        --model_name '*' --out_dir "$DEMO_DIR/predictions" --overwrite
    "$PYTHON" src/ensemble.py --pred_dirs "$DEMO_DIR/predictions" --out_dir "$DEMO_DIR/ensemble" "${truth[@]}"
    echo "runs: $DEMO_DIR/logs/$source; ensemble: $DEMO_DIR/ensemble (oof_scores.json, predictions.csv)"
fi
