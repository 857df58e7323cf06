#!/usr/bin/env bash
# make demo-<kind>: generate a small data set in an adapter's own format, train, predict, report.
# hpa (multi-label) and moths (hierarchy) train N_FOLDS folds (default 3) and ensemble them out-of-fold.
# Then the runs become a model package that classifies images as a user's new ones would come (NEW).
set -euo pipefail
KIND=${KIND:-manifest}
DEMO_DIR=${DEMO_DIR:-demo_out}/$KIND
PYTHON=${PYTHON:-python}
N_FOLDS=${N_FOLDS:-3}
data="$DEMO_DIR/data"
[ -d "$data" ] || "$PYTHON" src/make_demo_data.py --out_dir "$data" --kind "$KIND"
csv="" folds=0 source=$KIND root=$data data_config=configs/data/$KIND.yml extra=() truth=()
new=() classify=()  # images to classify with the exported package, and how they are named
case "$KIND" in
    folder) new=("$data/test") ;;
    phenix)  # 16-bit TIFFs, one per channel, scaled by the run's rescale rule
        new=("$data/Images") classify=(--pattern "{sample}-ch{channel}sk1fk1fl1.tiff") ;;
    rxrx1_2020)  # no validation split of its own: folds grouped by experiment
        csv="$DEMO_DIR/csv"
        # one plate's sites, one PNG per channel; plate-normalised runs take the plate's own statistics
        new=("$data/images/HUVEC-02/Plate1") classify=(--pattern "{sample}_w{channel}.png" --group_stats inputs)
        [ -f "$csv/folds.json" ] || "$PYTHON" src/make_folds.py "$data" --out_dir "$csv" --n_folds 3 --source "$KIND"
        ;;
    hpa)  # near-duplicates first, then iterative stratification keeping each duplicate group in one fold
        csv="$DEMO_DIR/csv" folds=$(seq -s " " 0 $((N_FOLDS - 1))) truth=(--truth "$data/test_truth.csv")
        extra=("--data_params/source_params={classes: 8}" --data_params/image_size=64)
        new=("$data/test") classify=(--pattern "{sample}_{channel}.png")  # one PNG per stain
        [ -f "$csv/duplicates.csv" ] || "$PYTHON" src/dedup.py "$data" --source hpa --out "$csv/duplicates.csv"
        [ -f "$csv/folds.json" ] || "$PYTHON" src/make_folds.py "$data" --out_dir "$csv" --n_folds "$N_FOLDS" --source hpa \
            --target multilabel --duplicates "$csv/duplicates.csv" --grouped false
        ;;
    moths)  # seed 001: one image folder, cross-validated
        csv="$DEMO_DIR/csv" folds=$(seq -s " " 0 $((N_FOLDS - 1))) source=folder root="$data/image_folder"
        extra=(--data_params/image_size=48)
        # a species family.csv does not list, and a listed one: unsure predictions become Other
        new=("$root/Mythimna albipuncta" "$root/Noctua pronuba") classify=(--min_prob 0.5)
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
"$PYTHON" src/inference.py export --model "$DEMO_DIR/logs/$source" --out "$DEMO_DIR/package"
[ ${#new[@]} -gt 0 ] || new=("$root")
"$PYTHON" src/inference.py classify "${new[@]}" --model "$DEMO_DIR/package" --out "$DEMO_DIR/classified.csv" "${classify[@]}"
echo "package: $DEMO_DIR/package (serve it: make serve MODEL=$DEMO_DIR/package); classified: $DEMO_DIR/classified.csv"
