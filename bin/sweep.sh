#!/usr/bin/env bash
# A hyperparameter study: SWEEP=configs/sweep/manifest.yml STUDY_DIR=/logs/sweeps/manifest bash bin/sweep.sh [flags]
# (flags go to src/sweep.py: --n_trials N --n_jobs N --storage URL --engine local|slurm --workers N ...).
# Run it again to continue the study.
set -euo pipefail
SWEEP=${SWEEP:-configs/sweep/manifest.yml}
STUDY_DIR=${STUDY_DIR:-logs/sweeps/$(basename "$SWEEP" .yml)}
PYTHON=${PYTHON:-python}
"$PYTHON" src/sweep.py "$SWEEP" --study_dir "$STUDY_DIR" "$@"
