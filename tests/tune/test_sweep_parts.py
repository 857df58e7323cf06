"""The sweep's parts that need no training: the search space, its overrides and overlay through the
real config loader, samplers and pruners, the resume rule on a real SQLite study, and the trial
callback's pruning on a real study."""
import os
import types

import optuna
import pytest
import yaml

from cellpipe.core import config as cfglib
from cellpipe.core.errors import ConfigError
from cellpipe.training.trial import Pruned, TrialCallback, make_pruner
from cellpipe.tune.space import check_space, choices, grid, overlay, overrides, suggest
from cellpipe.tune.study import (
    HEARTBEAT,
    counted,
    load_sweep,
    make_sampler,
    make_storage,
    oof_score,
    reclaim,
    trial_command,
    worker_id,
)

SPACE = {"stages/finetune/scheduler_params/lr_range": [[0.01, 0.0001], [0.03, 0.0001]],
         "stages/warmup/optimizer_params/lr": {"float": [1e-3, 1e-2], "log": True},
         "model_params/model_name": ["cnn4_w16", "cnn4_w32"], "data_params/batch_size": {"int": [16, 64], "step": 16}}


def test_a_trials_values_reach_train_py_and_the_best_overlay_loads(tmp_path):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = suggest(study.ask(), check_space(SPACE, "test"))
    assert values["stages/finetune/scheduler_params/lr_range"] in SPACE["stages/finetune/scheduler_params/lr_range"]
    assert 1e-3 <= values["stages/warmup/optimizer_params/lr"] <= 1e-2 and values["data_params/batch_size"] % 16 == 0
    base = ["configs/model/compact.yml", "configs/data/manifest.yml"]
    cfg = cfglib.load_config("configs/classify.yml", base, overrides(values))  # the real loader, strict keys
    assert cfg["stages"]["finetune"]["scheduler_params"]["lr_range"] == values["stages/finetune/scheduler_params/lr_range"]
    assert cfg["model_params"]["model_name"] == values["model_params/model_name"]
    best = tmp_path / "best.yml"
    best.write_text(yaml.safe_dump(overlay(values)))
    again = cfglib.load_config("configs/classify.yml", [*base, str(best)], [])
    assert again["stages"] == cfg["stages"] and again["data_params"]["batch_size"] == values["data_params/batch_size"]
    with pytest.raises(ConfigError, match="unknown config key 'optimizer_params/lrr'"):
        cfglib.load_config("configs/classify.yml", base, overrides({"optimizer_params/lrr": 0.1}))


def test_bad_spaces_samplers_pruners_and_sweep_files_are_one_line_each(tmp_path):
    with pytest.raises(ConfigError, match="space key 'lr' must be a config key"):
        check_space({"lr": [1, 2]}, "s.yml")
    with pytest.raises(ConfigError, match="float needs \\[low, high\\] with low < high"):
        check_space({"optimizer_params/lr": {"float": [1, 0.1]}}, "s.yml")
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) \\['logg'\\]"):
        check_space({"optimizer_params/lr": {"float": [0.1, 1], "logg": True}}, "s.yml")
    with pytest.raises(ConfigError, match="grid sampler needs a list of values for every key"):
        grid(SPACE, "s.yml")
    assert grid({"a/b": [[1, 2], [3, 4]]}, "s.yml") == {"a/b": choices([[1, 2], [3, 4]])} == {"a/b": ["[1, 2]", "[3, 4]"]}
    with pytest.raises(ConfigError, match="sampler must be one of"):
        make_sampler({"name": "cmaes"}, SPACE, "s.yml")
    with pytest.raises(ConfigError, match="sweep pruner must be one of"):
        make_pruner({"name": "hyperband!"})
    with pytest.raises(ConfigError, match="sweep pruner median"):
        make_pruner({"name": "median", "patience": 3})
    sweep = tmp_path / "s.yml"
    sweep.write_text("train: {config: configs/classify.yml}\nspace: {optimizer_params/lr: [0.1]}\nmetric: x\ntrails: 3\n")
    with pytest.raises(ConfigError, match="unknown sweep key\\(s\\) \\['trails'\\]"):
        load_sweep(sweep)
    sweep.write_text("train: {config: c.yml, folds: [train_0.csv]}\nspace: {optimizer_params/lr: [0.1]}\nmetric: x\n")
    with pytest.raises(ConfigError, match="train/folds must be a non-empty list of overrides"):
        load_sweep(sweep)
    sweep.write_text("train: {config: c.yml}\nspace: {a/b: [1]}\nmetric: x\nheartbeat: {interval: 3}\n")
    with pytest.raises(ConfigError, match="unknown heartbeat key\\(s\\) \\['interval'\\]"):
        load_sweep(sweep)


def test_the_out_of_fold_score_pools_the_folds_predictions(tmp_path):
    """Fold sizes differ, so the pooled accuracy is not the mean of the folds' accuracies."""
    import pandas as pd

    from cellpipe.tasks import from_dict

    task = from_dict({"kind": "single", "classes": ["a", "b"]})
    runs = []
    for k, (preds, truth) in enumerate([(["a", "a", "b", "b", "a", "b"], ["a", "a", "b", "b", "a", "b"]),  # 6/6
                                        (["a", "a"], ["b", "b"])]):  # 0/2
        run = tmp_path / f"fold_{k}"
        task.save(run / "checkpoints" / "labels.json")
        probs = [[0.9, 0.1] if p == "a" else [0.2, 0.8] for p in preds]
        pd.DataFrame({"id": [f"{k}_{i}" for i in range(len(preds))], "pred": preds, "truth": truth,
                      **{c: [p[j] for p in probs] for j, c in enumerate(task.prob_columns())}}).to_csv(
            run / "valid_predictions.csv", index=False)
        runs.append(run)
    assert oof_score(runs, "accuracy01") == pytest.approx(6 / 8)  # the folds' mean would be 0.5
    with pytest.raises(ConfigError, match="no out-of-fold score for target kind single"):
        oof_score(runs, "macro_f1")


def test_a_dead_workers_trial_is_failed_and_queued_again_in_its_folder(tmp_path):
    import socket
    import subprocess
    import sys

    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", HEARTBEAT)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    done = study.ask()
    done.set_user_attr("logdir", "trials/0000")
    study.tell(done, 0.5)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dist = {"optimizer_params/lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)}
    host = socket.gethostname()
    for logdir, worker in (("trials/0001", f"{host}:{gone.stdout.strip()}"),  # its worker died
                           ("trials/0002", worker_id()),  # this one is alive
                           ("trials/0003", "elsewhere:1"),  # another machine's: its heartbeat decides
                           ("trials/0004", f"{host}:{os.getpid()}:1")):  # a live pid, but another process's
        trial = study.ask(dist)
        trial.set_user_attr("logdir", logdir)
        trial.set_user_attr("worker", worker)
        storage.record_heartbeat(trial._trial_id)
    assert counted(study) == 1
    assert reclaim(study) == 2
    states = {t.number: t.state for t in study.trials}
    T = optuna.trial.TrialState
    assert states == {0: T.COMPLETE, 1: T.FAIL, 2: T.RUNNING, 3: T.RUNNING, 4: T.FAIL, 5: T.WAITING, 6: T.WAITING}
    retry = study.ask()  # the queued copy: same parameters, same folder (its run resumes there)
    again = suggest(retry, {"optimizer_params/lr": {"float": [1e-3, 1e-1]}})
    assert again == study.trials[1].params and retry.user_attrs["logdir"] == "trials/0001"
    assert study.trials[retry.number].system_attrs["failed_trial"] == 1 and counted(study) == 1  # the failed attempts do not count
    cmd = trial_command({"train": {"config": "c.yml", "overlays": ["o.yml"], "overrides": {"seed": 1}}},
                        tmp_path / "t", retry.params, {"trial_id": retry._trial_id}, "python")
    assert cmd[2:] == ["--config", "c.yml", "--logdir", str(tmp_path / "t"), "--overlay", "o.yml", "--seed=1",
                       f"--optimizer_params/lr={retry.params['optimizer_params/lr']}", f"--tune_params/trial_id={retry._trial_id}"]


def test_the_trial_callback_reports_each_epoch_and_prunes_below_the_median(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    study = optuna.create_study(study_name="s", storage=url, direction="maximize", pruner=make_pruner(pruner))
    good = study.ask()
    for step in (1, 2, 3):
        good.report(0.9, step)
    study.tell(good, 0.9)
    # the second stage: its epoch 1 is the run's epoch 2; optuna compares a trial's best value so far
    # with the median of the finished trials at that epoch
    calls = []
    for value in (0.95, 0.2):
        trial = study.ask()
        callback = TrialCallback({"storage": url, "study": "s", "trial_id": trial._trial_id, "pruner": pruner},
                                 "accuracy01", offset=1)
        runner = types.SimpleNamespace(epoch_metrics={"valid": {"accuracy01": value}}, epoch_step=1)
        try:
            callback.on_epoch_end(runner)
            calls.append("goes on")
        except Pruned as e:
            calls.append(str(e))
    assert calls[0] == "goes on" and calls[1].startswith(f"trial {trial.number} pruned after epoch 2")
    assert optuna.load_study(study_name="s", storage=url).trials[2].intermediate_values == {2: 0.2}


def test_a_killed_worker_left_as_a_zombie_counts_as_dead():
    """Where PID 1 does not reap orphans (containers), a SIGKILLed worker whose parent died stays a
    zombie: its pid answers signals, yet its trial must be reclaimed."""
    import signal
    import subprocess
    import sys
    import time

    from cellpipe.tune.study import _alive, _started

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = _started(child.pid)
    assert _alive(child.pid, started)
    os.kill(child.pid, signal.SIGKILL)
    for _ in range(100):  # until the kernel has made it a zombie (bounded, not timed)
        if not _alive(child.pid, started):
            break
        time.sleep(0.05)
    assert not _alive(child.pid, started)  # not yet reaped: a zombie
    child.wait()
    assert not _alive(child.pid, started) and _alive(os.getpid(), _started(os.getpid()))
