"""What a hyperparameter study costs beyond its trials' training (issue 19), in one run here.

    python bench/bench_sweep.py [--out_dir bench_out/sweep] [--n_trials 4] [--epochs 3]   # also rows of `make bench`

A TPE study with median pruning over the finetune rate on a generated manifest set, run by
src/sweep.py's driver in this process (SQLite storage, heartbeats on). Figures:
- the driver's own time (sampling, storage, pruner, results, plots) over the sum of its trials'
  durations                                                                     target <= 0.05
- each trial's time outside its training epochs (a train.py process: imports, data set-up, the
  validation report to the study) over the epochs' time (informational: it shrinks as epochs grow)
- one epoch's report + pruning decision through the study's storage, in ms, and, times the epochs
  the trials ran, over the sum of their durations                               target <= 0.01
"""
import logging
import sys
import time
from pathlib import Path

import fire
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cellpipe.demo.generic import write_manifest  # noqa: E402
from cellpipe.tune.study import HEARTBEAT, make_storage, run_sweep  # noqa: E402


def report_ms(storage_url: str, repeats: int = 20) -> float:
    """Mean ms of one epoch's trial.report + should_prune on a study in ``storage_url`` (as TrialCallback does)."""
    import optuna

    study = optuna.create_study(study_name="report-timing", storage=make_storage(storage_url, HEARTBEAT),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0),
                                direction="maximize", load_if_exists=True)
    for k in range(3):  # trials to compare against
        t = study.ask()
        for step in range(repeats):
            t.report(0.1 * k + 0.01 * step, step)
        study.tell(t, 0.1 * k)
    trial = study.ask()
    started = time.perf_counter()
    for step in range(repeats):
        trial.report(0.5, step)
        trial.should_prune()
    return (time.perf_counter() - started) / repeats * 1000


def run(out_dir: str = "bench_out/sweep", n_trials: int = 4, epochs: int = 3, per_class: int = 24) -> list:
    """Rows (figure, value, goal, target) of the study's overheads."""
    import optuna

    out = Path(out_dir).resolve()
    if out.exists():
        import shutil

        shutil.rmtree(out)
    root = write_manifest(out / "data", per_class=per_class).parent
    sweep = out / "bench.yml"
    sweep.write_text(yaml.safe_dump({
        "train": {"config": str(REPO / "configs/classify.yml"),
                  "overlays": [str(REPO / p) for p in ("configs/model/compact.yml", "configs/data/manifest.yml",
                                                       "configs/tiny.yml")],
                  "overrides": {"data_params/root": str(root), "stages/finetune/num_epochs": epochs}},
        "space": {"stages/finetune/optimizer_params/lr": {"float": [1e-4, 3e-2], "log": True}},
        "metric": "accuracy01", "n_trials": n_trials, "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}}))
    study_dir = out / "study"
    started = time.perf_counter()
    summary = run_sweep(sweep, study_dir)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{study_dir / 'study.db'}")
    trials = [t for t in study.trials if t.state.is_finished()]
    durations = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    histories = [pd.read_csv(Path(t.user_attrs["logdir"]) / "history.csv") for t in trials]
    epoch_s = sum(float(h["seconds"].sum()) for h in histories)
    n_epochs = sum(len(h) for h in histories)
    ms = report_ms(f"sqlite:///{out / 'report.db'}")
    print(f"study: {len(trials)} trials ({summary['pruned']} pruned), wall {wall:.1f} s, trials {durations:.1f} s, "
          f"training epochs {epoch_s:.1f} s over {n_epochs} epochs; report + prune {ms:.1f} ms per epoch")
    return [
        ["sweep: driver time / sum of trial durations", (wall - durations) / durations, "<=", 0.05],
        ["sweep: trial time outside epochs / epochs' time", (durations - epoch_s) / epoch_s, "", None],
        ["sweep: report + prune per epoch (ms)", ms, "", None],
        ["sweep: report + prune, all epochs / trial durations", ms / 1000 * n_epochs / durations, "<=", 0.01],
    ]


def main(out_dir: str = "bench_out/sweep", n_trials: int = 4, epochs: int = 3, per_class: int = 24):
    logging.basicConfig(level=logging.WARNING)
    for figure, value, goal, target in run(out_dir, n_trials, epochs, per_class):
        print(f"{figure:50s} {value:8.3f} {goal} {'' if target is None else target}")


if __name__ == "__main__":
    fire.Fire(main)
