#!/usr/bin/env bash
# The seed's whole flow (bin/flow.sh) as one grid of jobs on a cluster engine (src/grid.py:
# submitit, Slurm job arrays or local processes). With LAUNCH set, the bin/ scripts record each
# command instead of running it; src/grid.py then runs them in dependency order, at most
# MAX_PARALLEL at once, skipping finished runs. Same output trees as the scripts run one by one.
#   ENGINE=slurm MAX_PARALLEL=8 bash bin/grid.sh --partition gpu      # arguments go to grid.py run
# TRAIN_ARGS: extra src/train.py arguments for Parts II and III (e.g. "--overlay configs/recipe_gpu.yml").
set -euo pipefail

PYTHON="${PYTHON:-python}"
GRID="${GRID:-${LOG_DIR:-/logs}/grid/jobs.jsonl}"
ENGINE="${ENGINE:-local}"
MAX_PARALLEL="${MAX_PARALLEL:-}"
read -r -a train_args <<< "${TRAIN_ARGS:-}"

"$PYTHON" src/grid.py new "$GRID"
LAUNCH="$PYTHON src/grid.py add $GRID" bash bin/flow.sh "${train_args[@]}"
"$PYTHON" src/grid.py run "$GRID" --engine "$ENGINE" ${MAX_PARALLEL:+--max_parallel "$MAX_PARALLEL"} "$@"
