"""Run or continue a hyperparameter study (Optuna) whose trials are real training runs.

    python src/sweep.py configs/sweep/manifest.yml --study_dir /logs/sweeps/manifest [--n_trials 12]
        [--n_jobs 2] [--storage postgresql://user@host/db]
        [--engine local|slurm --workers 4 [--gpus_per_job 1 --partition gpu --cpus_per_job 8 --mem_gb 32]]
    python src/sweep.py SWEEP --study_dir DIR --worker --n_trials 12 [--storage URL]   # one more worker

The sweep file declares what each trial trains (config, overlays, fixed overrides), the search
space over any ``section/key``, the metric and its direction, the sampler (tpe | random | grid) and
the pruner (median | halving | none); see src/cellpipe/tune/study.py, which also gives the rule for
killed sweeps and workers. Running the same command again continues the study. Results:
{study_dir}/trials.csv, best.yml (ready for --overlay), history.png, importances.png, contour.png,
summary.json; trial k's run in {study_dir}/trials/{k:04d}/.
"""
import json
from typing import Optional

from cellpipe.core import cli


def main(sweep, study_dir, n_trials: Optional[int] = None, n_jobs: Optional[int] = None,
         storage: Optional[str] = None, engine: str = "none", workers: int = 1, gpus_per_job: Optional[int] = None,
         partition: Optional[str] = None, cpus_per_job: Optional[int] = None, mem_gb: Optional[int] = None,
         timeout_min: int = 1440, poll_s: float = 2.0, queue_poll_s: float = 15.0, worker: bool = False):
    """Run the study of ``sweep`` in ``study_dir`` until it holds n_trials counted trials.

    Args:
        sweep: the sweep file (YAML), e.g. configs/sweep/manifest.yml.
        study_dir: the study's folder (trials, database, results).
        n_trials: trials the study should hold (default: the sweep file's n_trials, or the grid's size).
        n_jobs: trials at once per worker, each a train.py process (default: the sweep file's n_jobs, else 1).
        storage: the study's database URL (default sqlite:///{study_dir}/study.db).
        engine: none (this process runs the trials) | local | slurm (``workers`` jobs of the grid engine).
        workers: worker jobs sharing the study (engine local or slurm).
        gpus_per_job, partition, cpus_per_job, mem_gb, timeout_min, queue_poll_s: each worker job's
            resources and the engine's polling, as for src/grid.py run.
        poll_s: seconds between checks of the worker jobs.
        worker: be one worker of an existing study (what the engine's jobs run; needs n_trials).
    """
    from cellpipe.tune.study import run_sweep, work

    if worker:
        if not n_trials:
            raise SystemExit("error: sweep --worker needs --n_trials (the study's total)")
        print(json.dumps({"trials_run": work(sweep, study_dir, n_trials, n_jobs or 1, storage)}))
        return
    engine_params = {"partition": partition, "cpus_per_job": cpus_per_job, "mem_gb": mem_gb,
                     "timeout_min": timeout_min, "queue_poll_s": queue_poll_s}
    print(json.dumps(run_sweep(sweep, study_dir, n_trials, n_jobs, storage, engine=engine, workers=workers,
                               gpus_per_job=gpus_per_job, engine_params=engine_params, poll_s=poll_s),
                     indent=2, default=str))


if __name__ == "__main__":
    cli.run(main)
