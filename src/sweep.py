"""Run or continue a hyperparameter study (Optuna) whose trials are real training runs.

    python src/sweep.py configs/sweep/manifest.yml --study_dir /logs/sweeps/manifest [--n_trials 12]
        [--n_jobs 2] [--storage postgresql://user@host/db]

The sweep file declares what each trial trains (config, overlays, fixed overrides), the search
space over any ``section/key``, the metric and its direction, the sampler (tpe | random | grid) and
the pruner (median | halving | none); see src/cellpipe/tune/study.py. Running the same command
again continues the study. Results: {study_dir}/trials.csv, best.yml (ready for --overlay),
history.png, importances.png, contour.png, summary.json; trial k's run in {study_dir}/trials/{k:04d}/.
"""
import json
from typing import Optional

from cellpipe.core import cli


def main(sweep, study_dir, n_trials: Optional[int] = None, n_jobs: Optional[int] = None,
         storage: Optional[str] = None):
    """Run the study of ``sweep`` in ``study_dir`` until it holds n_trials counted trials.

    Args:
        sweep: the sweep file (YAML), e.g. configs/sweep/manifest.yml.
        study_dir: the study's folder (trials, database, results).
        n_trials: trials the study should hold (default: the sweep file's n_trials, or the grid's size).
        n_jobs: trials at once, each a train.py process (default: the sweep file's n_jobs, else 1).
        storage: the study's database URL (default sqlite:///{study_dir}/study.db).
    """
    from cellpipe.tune.study import run_sweep

    print(json.dumps(run_sweep(sweep, study_dir, n_trials, n_jobs, storage), indent=2, default=str))


if __name__ == "__main__":
    cli.run(main)
