"""bin/sweep.sh end to end: a one-key grid over a list (hydra-multirun style) of real training runs,
killed in the middle of its first trial and run again: the study continues, the interrupted trial
runs again in its folder and resumes from its last epoch; the results are written. The trials log to
a real MLflow store (SQLite), read back through MLflow's client."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from cellpipe.core import config as cfglib
from cellpipe.demo.generic import write_manifest
from conftest import REPO

pytestmark = pytest.mark.slow


def test_a_killed_sweep_continues_and_writes_its_results(tmp_path):
    root = write_manifest(tmp_path / "data", per_class=24).parent
    sweep = tmp_path / "lr.yml"
    sweep.write_text(yaml.safe_dump({
        "train": {"config": "configs/classify.yml",
                  "overlays": ["configs/model/compact.yml", "configs/data/manifest.yml", "configs/tiny.yml"],
                  "overrides": {"data_params/root": str(root), "stages/finetune/num_epochs": 3,
                                "tracking_params/mlflow": True, "tracking_params/uri": f"sqlite:///{tmp_path / 'ml.db'}",
                                "tracking_params/experiment": "sweep-test"}},
        "space": {"stages/finetune/scheduler_params/lr_range": [[0.01, 0.0001], [0.003, 0.0001]]},
        "metric": "accuracy01", "sampler": {"name": "grid", "seed": 0}, "pruner": {"name": "none"}}))
    study_dir = tmp_path / "study"
    env = {**os.environ, "SWEEP": str(sweep), "STUDY_DIR": str(study_dir), "PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", "bin/sweep.sh"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resume = study_dir / "trials" / "0000" / "finetune" / "checkpoints" / "resume.pth"
    for _ in range(3000):  # until the first trial has finished a finetune epoch (bounded, not timed)
        if resume.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert resume.exists() and proc.poll() is None, "the sweep ended before its first trial's first finetune epoch"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its train.py, as a lost node or Ctrl-C would
    proc.wait()
    r = subprocess.run(["bash", "bin/sweep.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["complete"] == 2 and summary["trials"] == 3 and summary["failed"] == 1
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{study_dir / 'study.db'}")
    first, retry = study.trials[0], next(t for t in study.trials if t.system_attrs.get("failed_trial") == 0)
    assert first.state == optuna.trial.TrialState.FAIL and retry.params == first.params
    assert retry.user_attrs["logdir"] == first.user_attrs["logdir"] == str(study_dir / "trials" / "0000")
    assert "resuming finetune after epoch" in (study_dir / "trials" / "0000.log").read_text()
    assert sorted(len(t.intermediate_values) for t in study.trials[1:]) == [4, 4]  # 1 + 3 epochs reported
    table = pd.read_csv(study_dir / "trials.csv")
    assert len(table) == 3 and {"value", "state", "params_stages/finetune/scheduler_params/lr_range"} <= set(table)
    assert (study_dir / "history.png").stat().st_size > 1000
    # each trial's config holds its parameters; the best one's overlay reproduces them through the loader
    best = json.loads((Path(summary["best_logdir"]) / "DONE.json").read_text())
    cfg = cfglib.read_run_config(os.path.join(summary["best_logdir"], "config.yml"))
    again = cfglib.load_config("configs/classify.yml", ["configs/model/compact.yml", str(study_dir / "best.yml")], [])
    assert again["stages"]["finetune"]["scheduler_params"]["lr_range"] == \
        cfg["stages"]["finetune"]["scheduler_params"]["lr_range"]
    # MLflow: one run per trial folder (the interrupted trial's run continued by its retry), finished,
    # with the config as parameters, tags, every epoch's metrics and the artefacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sweep-test").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["logdir"] for r in runs} == {t.user_attrs["logdir"] for t in study.trials[1:]}
    for r in runs:
        assert r.data.tags["source"] == "manifest" and r.data.tags["study"] == "lr" and "checkpoint" in r.data.tags
        assert r.data.params["stages/finetune/scheduler_params/lr_range"] in ("[0.01, 0.0001]", "[0.003, 0.0001]")
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "valid_accuracy01")]
        assert sorted(set(steps)) == [1, 2, 3, 4]  # warm-up + 3 finetune epochs, the resumed one included
        artefacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"history.csv", "config.yml", "DONE.json", "figures"} <= artefacts
    print(f"sweep: best accuracy01 {summary['best_value']:.3f} (majority {best['baseline_top1_majority']:.3f})")
    assert summary["best_value"] == best["valid"]["accuracy01"] > best["baseline_top1_majority"] + 0.2


def test_a_study_on_slurm_workers_sharing_its_storage(tmp_path, slurm):
    """The docs' Slurm sweep: two worker jobs (one job array) take trials from one SQLite study; each
    trial trains two folds and is scored out of fold."""
    import make_folds

    root = write_manifest(tmp_path / "data", per_class=16).parent
    make_folds.main(str(root), out_dir=str(tmp_path / "csv"), n_folds=2, source="manifest")
    folds = [{"data_params/train_csv": str(tmp_path / "csv" / f"train_{k}.csv"),
              "data_params/valid_csv": str(tmp_path / "csv" / f"valid_{k}.csv")} for k in range(2)]
    sweep = tmp_path / "tpe.yml"
    sweep.write_text(yaml.safe_dump({
        "train": {"config": "configs/classify.yml",
                  "overlays": ["configs/model/compact.yml", "configs/data/manifest.yml", "configs/tiny.yml"],
                  "overrides": {"data_params/root": str(root), "stages/finetune/num_epochs": 2}, "folds": folds},
        "space": {"stages/finetune/optimizer_params/lr": {"float": [1e-3, 3e-2], "log": True}},
        "metric": "accuracy01", "n_trials": 2, "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1}}))
    study_dir = tmp_path / "study"
    env = {**slurm.env, "SWEEP": str(sweep), "STUDY_DIR": str(study_dir), "PYTHON": sys.executable}
    r = subprocess.run(["bash", "bin/sweep.sh", "--engine", "slurm", "--workers", "2", "--gpus_per_job", "0",
                        "--partition", "cpu", "--poll_s", "0.5", "--queue_poll_s", "1"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((study_dir / "summary.json").read_text())
    study = optuna.load_study(study_name="tpe", storage=f"sqlite:///{study_dir / 'study.db'}")
    # the budget is shared: 2 counted trials, not 2 per worker
    assert summary["complete"] + summary["pruned"] == len(study.trials) == 2 and summary["failed"] == 0
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both Slurm jobs ran a trial
    arrays = {p.name.split("_")[0] for p in (study_dir / "engine").iterdir() if p.name[0].isdigit()}
    assert len(arrays) == 1  # submitted together: one job array
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for t in complete:  # the value: both folds' validation predictions pooled, whichever worker ran it
        pooled = pd.concat([pd.read_csv(Path(t.user_attrs["logdir"]) / f"fold_{k}" / "valid_predictions.csv",
                                        keep_default_na=False) for k in range(2)])
        assert len(pooled) == sum(len(pd.read_csv(f["data_params/valid_csv"])) for f in folds)
        assert abs(t.value - (pooled["pred"].astype(str) == pooled["truth"].astype(str)).mean()) < 1e-6
        assert len(t.user_attrs["fold_values"]) == 2
        assert max(t.intermediate_values) >= 1000  # fold 1's epochs reported after fold 0's
    assert (study_dir / "best.yml").is_file() and (study_dir / "history.png").is_file()
