#!/usr/bin/env bash
# Profiles on generated screening data (what `make demo-profile` runs): demo plates with control
# replicates and a vignette -> illumination functions -> folds -> one short training run with the
# functions applied -> embeddings of every site, well and treatment -> corrections fitted on the
# controls -> mAP / accuracy table before and after (docs/profiling.md). Arguments go to train.py
# (e.g. --data_params/normalization=dataset: no per-plate input normalisation, more to correct).
set -euo pipefail

PYTHON="${PYTHON:-python}"
OUT="${DEMO_DIR:-demo_out}/profile"
DATA="$OUT/data" ILLUM="$OUT/illum" CSV="$OUT/csv" RUN="$OUT/logs/[1,2,3,4,5,6]/fold_0/cnn4_w16"
EPOCHS="${EPOCHS:-6}"
N_SIRNAS="${N_SIRNAS:-24}"
# the generated screen: plates with 6 negative-control wells each and a vignette to correct
# (the hard benchmark's weak signal and strong batch effects: on the easy demo every score is ~1)
DEMO_ARGS="${DEMO_ARGS:---preset hard --image_size 48 --negative_wells 6 --vignette 0.4}"

SECONDS=0
# shellcheck disable=SC2086  # DEMO_ARGS is a list of flags
[ -f "$DATA/train.csv" ] || "$PYTHON" src/make_demo_data.py --out_dir "$DATA" --n_sirnas "$N_SIRNAS" $DEMO_ARGS
[ -f "$ILLUM/illumination.csv" ] || "$PYTHON" src/prep_illumination.py --root "$DATA" --out_dir "$ILLUM"
[ -f "$CSV/train_0.csv" ] || "$PYTHON" src/make_folds.py --data_root "$DATA" --out_dir "$CSV" --n_folds 3
"$PYTHON" src/train.py --config configs/config.yml --overlay configs/demo.yml --overlay configs/tiny.yml \
    --logdir "$RUN" --model_params/num_classes="$N_SIRNAS" \
    --data_params/source_params/control_offset="$N_SIRNAS" \
    "--data_params/channels=[1,2,3,4,5,6]" --data_params/root="$DATA" --data_params/illumination="$ILLUM" \
    --data_params/train_csv="$CSV/train_0.csv" --data_params/valid_csv="$CSV/valid_0.csv" \
    --stages/finetune/num_epochs="$EPOCHS" "$@"
"$PYTHON" src/profile.py --model "$RUN" --out_dir "$OUT/profiles" --overwrite
echo "profile demo finished in ${SECONDS}s: $OUT/profiles (evaluation.csv, evaluation.png, corrected/)"
