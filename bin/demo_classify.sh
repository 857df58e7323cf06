#!/usr/bin/env bash
# make demo-<kind>: generate a small data set in an adapter's own format, train, predict, report.
set -euo pipefail
KIND=${KIND:-manifest}
DEMO_DIR=${DEMO_DIR:-demo_out}/$KIND
PYTHON=${PYTHON:-python}
data="$DEMO_DIR/data"
[ -d "$data" ] || "$PYTHON" src/make_demo_data.py --out_dir "$data" --kind "$KIND"
csv=""
if [ "$KIND" = rxrx1_2020 ]; then  # no validation split of its own: folds grouped by experiment
    csv="$DEMO_DIR/csv"
    [ -f "$csv/folds.json" ] || "$PYTHON" src/make_folds.py "$data" --out_dir "$csv" --n_folds 3 --source "$KIND"
fi
SOURCE=$KIND DATA_DIR=$data LOG_DIR="$DEMO_DIR/logs" CSV_DIR=$csv OVERLAY=configs/tiny.yml PYTHON=$PYTHON \
    bash bin/train_classify.sh --stages/finetune/num_epochs=8
run=$(dirname "$(find "$DEMO_DIR/logs" -name DONE.json | head -n 1)")
"$PYTHON" src/inference.py predict --run_dir="$run" --out_dir="$DEMO_DIR/predictions" --overwrite
cat "$run/per_class.csv"
echo "run: $run; predictions: $DEMO_DIR/predictions/pred_test.csv; confusion matrix: $run/confusion_matrix.png"
