#!/usr/bin/env bash
# Part III: as Part II on the pseudo-label CSVs, again from the Part I weights.
# Output: $LOG_DIR/${PSEUDO_OUT_NAME:-pseudo}/<channels>/fold_<k>/<model_name>/
set -euo pipefail
CSV_DIR="${PSEUDO_CSV_DIR:-./csv/pseudo}" \
CONFIG="${PSEUDO_CONFIG:-configs/config_pseudo.yml}" \
OUT_NAME="${PSEUDO_OUT_NAME:-pseudo}" \
    bash "$(dirname "$0")/train.sh" "$@"
