"""An Optuna study whose trials are real runs of src/train.py, declared by a sweep file:

    train:                           # what every trial runs (bin/train_classify.sh's order of files)
      config: configs/classify.yml
      overlays: [configs/model/compact.yml, configs/data/manifest.yml]
      overrides: {data_params/root: data/manifest}      # fixed settings of every trial
      folds:                         # optional: each trial trains every fold (these overrides each)
        - {data_params/train_csv: csv/train_0.csv, data_params/valid_csv: csv/valid_0.csv}
        - {data_params/train_csv: csv/train_1.csv, data_params/valid_csv: csv/valid_1.csv}
    space: {optimizer_params/lr: {float: [1.0e-3, 3.0e-2], log: true}, ...}   # see tune.space
    metric: accuracy01               # a validation metric of the runs (DONE.json's valid scores)
    direction: maximize              # or minimize
    n_trials: 12
    n_jobs: 1                        # trials at once per worker (each a train.py process)
    heartbeat: {interval_s: 30, grace_s: 120, max_retry: 3}   # how a dead worker's trial is noticed
    sampler: {name: tpe, seed: 0}    # tpe | random | grid (every key a list; n_trials defaults to the grid)
    pruner: {name: median, n_startup_trials: 2, n_warmup_steps: 1}   # median | halving | none

With folds, trial k trains fold i in {study_dir}/trials/{k:04d}/fold_{i}/, reporting fold i's epochs
as steps i * 1000 + epoch, and its value is the metric out of fold: the folds' validation
predictions pooled and scored together by the target kind (as the ensemble's OOF scores).
Otherwise trial k trains in {study_dir}/trials/{k:04d}/ (config.yml holds its parameters; train.log beside it)
and reports each epoch's metric to the study, whose pruner may stop it (train.py exits PRUNED_EXIT).
The study lives in a database (default sqlite:///{study_dir}/study.db; any SQLAlchemy URL, e.g.
PostgreSQL for workers on several machines), so running the same command again continues it.

Workers: the driver (src/sweep.py) runs the trials itself (``--engine none``, n_jobs threads), or
starts ``--workers N`` worker processes as jobs of the grid engine (``--engine local``: processes on
this machine; ``--engine slurm``: Slurm jobs through submitit) that share the study's storage; more
workers can join by hand with ``python src/sweep.py worker ...``. Each worker takes the next trial
from the study until it holds n_trials counted trials (workers that start together may add up to
one trial each beyond it).

The rule for a killed sweep or worker: finished, pruned and failed trials are kept and count; a
trial whose worker died is failed and queued again with the same parameters and folder (Optuna's
RetryHeartbeatStaleTrialCallback, inheriting the epochs it reported), so its run resumes from its
last finished epoch; the failed attempt then no longer counts. A worker on this machine that is
gone is noticed at once when a driver or worker starts; one elsewhere once its trial's heartbeat is
older than ``heartbeat.grace_s``. One driver per study folder at a time (a lock).

Results in {study_dir}: trials.csv, best.yml (an overlay of the best parameters), history.png,
importances.png and contour.png (the two most important parameters), summary.json.
"""
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional

import yaml

from cellpipe.core.errors import ConfigError, DataError, UserError
from cellpipe.core.fsutil import write_csv, write_text
from cellpipe.core.runlock import run_lock
from cellpipe.training.trial import PRUNED_EXIT, make_pruner
from cellpipe.tune.space import check_space, grid, overlay, overrides, suggest, value_of

log = logging.getLogger("sweep")
TRAIN = Path(__file__).resolve().parents[2] / "train.py"
SAMPLERS = ("tpe", "random", "grid")
KEYS = {"train", "space", "metric", "direction", "n_trials", "n_jobs", "sampler", "pruner", "study", "heartbeat"}
HEARTBEAT = {"interval_s": 30, "grace_s": 120, "max_retry": 3}
ENGINES = ("none", "local", "slurm")


class TrialFailed(Exception):
    """A trial's run failed (its log names why)."""


class WorkersFailed(UserError):
    """A sweep worker job failed (the engine's log names why)."""


def load_sweep(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"sweep file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {unknown}; known: {sorted(KEYS)}")
    for key in ("train", "space", "metric"):
        if key not in spec:
            raise ConfigError(f"{path}: the sweep needs '{key}'")
    train = spec["train"]
    if not isinstance(train, dict) or "config" not in train or set(train) - {"config", "overlays", "overrides", "folds"}:
        raise ConfigError(f"{path}: 'train' takes config, overlays (list), overrides (section/key: value) and "
                          f"folds (a list of overrides, one per fold)")
    folds = train.get("folds")
    if folds is not None and (not isinstance(folds, list) or not folds or not all(isinstance(f, dict) for f in folds)):
        raise ConfigError(f"{path}: train/folds must be a non-empty list of overrides (section/key: value), one per fold")
    check_space(spec["space"], str(path))
    if spec.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: direction must be maximize or minimize, got {spec['direction']!r}")
    unknown = sorted(set(spec.get("heartbeat") or {}) - set(HEARTBEAT))
    if unknown:
        raise ConfigError(f"{path}: unknown heartbeat key(s) {unknown}; known: {sorted(HEARTBEAT)}")
    spec["heartbeat"] = {**HEARTBEAT, **(spec.get("heartbeat") or {})}
    spec.setdefault("study", path.stem)
    return spec


def make_storage(url: str, heartbeat: dict):
    """The study's database, with heartbeats so that a dead worker's trial is retried (module doc)."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: since 2.9
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat["max_retry"],
                                                             inherit_intermediate_values=True)
    return optuna.storages.RDBStorage(url, heartbeat_interval=int(heartbeat["interval_s"]),
                                      grace_period=int(heartbeat["grace_s"]), heartbeat_stale_trial_callback=retry)


def make_sampler(spec: Optional[dict], space: dict, where: str):
    import optuna

    spec = dict(spec or {"name": "tpe"})
    name = spec.pop("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"{where}: sampler must be one of {list(SAMPLERS)}, got {name!r}")
    grid(space, where) if name == "grid" else None  # a grid's keys must all be lists
    # the grid is queued as fixed trials (enqueue_grid): optuna's GridSampler cannot take queued retries
    cls = optuna.samplers.TPESampler if name == "tpe" else optuna.samplers.RandomSampler
    try:
        return cls(**spec)
    except TypeError as e:
        raise ConfigError(f"{where}: sampler {name}: {e}") from None


def _stat(pid: int) -> Optional[List[str]]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _started(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or None."""
    fields = _stat(pid)
    return fields[19] if fields else None


def worker_id() -> str:
    """This process as a trial's worker: host, pid and start time (a reused pid is another process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid()) or ''}"


def _alive(pid: int, started: str = "") -> bool:
    """Whether the worker ``pid`` (started at ``started``, when known) still runs on this machine: a
    zombie is dead (a killed worker whose parent died stays one where PID 1 does not reap it), and so
    is a process that reuses the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    fields = _stat(pid)
    if fields is None:
        return not started  # no /proc: the signal's answer is all there is
    return fields[0] not in ("Z", "X") and (not started or fields[19] == started)


def reclaim(study) -> int:
    """Fail (and so retry, through the storage's heartbeat callback) every RUNNING trial whose worker
    ran on this machine and is gone; trials of workers elsewhere wait for their heartbeat's grace
    period (Optuna's fail_stale_trials). Returns how many were reclaimed here."""
    import copy

    import optuna
    from optuna.trial import TrialState

    storage, n = study._storage, 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, pid, started = (str(t.user_attrs.get("worker", "")).split(":") + ["", ""])[:3]
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid), started):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            continue
        storage.get_heartbeat_stale_trial_callback()(study, copy.deepcopy(storage.get_trial(t._trial_id)))
        log.info("trial %d lost its worker (%s): it runs again in %s", t.number, t.user_attrs["worker"],
                 t.user_attrs.get("logdir"))
        n += 1
    optuna.storages.fail_stale_trials(study)
    return n


def enqueue_grid(study, space: dict, where: str) -> int:
    """The grid sampler: every combination of the lists queued once (those already in the study are
    skipped), drawn in order; the grid's size."""
    import itertools

    keys, lists = zip(*grid(space, where).items())
    combos = list(itertools.product(*lists))
    for combo in combos:
        study.enqueue_trial(dict(zip(keys, combo)), skip_if_exists=True)
    return len(combos)


def counted(study) -> int:
    """Trials that count towards n_trials: complete, pruned, and failed ones that were not retried."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.number not in retried) for t in trials)


def running(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


FOLD_STEPS = 1000  # fold i's epochs are reported as steps i * FOLD_STEPS + epoch


def trial_command(spec: dict, logdir: Path, values: dict, tune: dict, python: str, fold: Optional[dict] = None) -> list:
    train = spec["train"]
    cmd = [python, str(TRAIN), "--config", str(train["config"]), "--logdir", str(logdir)]
    for o in train.get("overlays") or []:
        cmd += ["--overlay", str(o)]
    cmd += overrides(train.get("overrides") or {}) + overrides(fold or {}) + overrides(values)
    return cmd + overrides({f"tune_params/{k}": v for k, v in tune.items()})


def objective_for(spec: dict, study_dir: Path, storage_url: str, python: str):
    lock = threading.Lock()

    def objective(trial):
        import optuna

        values = suggest(trial, spec["space"])
        logdir = Path(trial.user_attrs.get("logdir") or study_dir / "trials" / f"{trial.number:04d}")
        trial.set_user_attr("logdir", str(logdir))
        trial.set_user_attr("worker", worker_id())
        tune = {"storage": storage_url, "study": spec["study"], "trial_id": trial._trial_id,
                "metric": spec["metric"], "pruner": spec.get("pruner")}
        with lock:
            log.info("trial %d: %s", trial.number, " ".join(f"{k}={v}" for k, v in values.items()))
        folds = spec["train"].get("folds")
        runs = [logdir / f"fold_{i}" for i in range(len(folds))] if folds else [logdir]
        for i, run in enumerate(runs):
            if folds and (run / "DONE.json").is_file():  # a retried trial's finished folds
                continue
            cmd = trial_command(spec, run, values, {**tune, "step_offset": i * FOLD_STEPS}, python,
                                folds[i] if folds else None)
            run.mkdir(parents=True, exist_ok=True)
            with open(run.parent / f"{run.name}.log", "a") as out:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
            if rc == PRUNED_EXIT:
                raise optuna.TrialPruned()
            if rc != 0:
                raise TrialFailed(f"trial {trial.number}: train.py exited with {rc}; see {run.parent / run.name}.log")
        scores = [json.loads((run / "DONE.json").read_text())["valid"] for run in runs]
        if spec["metric"] not in scores[0]:
            raise ConfigError(f"sweep metric {spec['metric']!r} is not a validation score of the runs; they have "
                              f"{sorted(scores[0])}")
        if not folds:
            return float(scores[0][spec["metric"]])
        trial.set_user_attr("fold_values", [float(s[spec["metric"]]) for s in scores])
        return oof_score(runs, spec["metric"])

    return objective


def oof_score(runs, metric: str) -> float:
    """``metric`` over the runs' validation predictions pooled (valid_predictions.csv), scored by the
    runs' target kind (labels.json) as the ensemble scores out-of-fold predictions."""
    import pandas as pd

    from cellpipe.core import layout
    from cellpipe.tasks import load as load_task

    task = load_task(Path(runs[0]) / "checkpoints" / layout.LABELS_FILE)
    table = pd.concat([pd.read_csv(Path(r) / layout.VALID_PREDICTIONS, keep_default_na=False) for r in runs],
                      ignore_index=True)
    targets = task.encode(table.rename(columns={"truth": "label"}), f"{runs[0]}/{layout.VALID_PREDICTIONS}")
    scores = task.score(table[task.prob_columns()].to_numpy(float), targets)
    if metric not in scores:
        raise ConfigError(f"sweep metric {metric!r} has no out-of-fold score for target kind {task.kind}; "
                          f"it has {sorted(scores)}")
    return float(scores[metric])


def write_results(study, spec: dict, study_dir: Path, figures: bool = True) -> dict:
    """trials.csv, best.yml, summary.json and (``figures``) the PNG plots of ``study``."""
    from optuna.trial import TrialState

    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    write_csv(trials, study_dir / "trials.csv")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    summary = {"study": spec["study"], "metric": spec["metric"], "direction": spec.get("direction", "maximize"),
               "trials": len(study.trials), "complete": len(complete),
               "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
               "failed": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))}
    if complete:
        best = study.best_trial
        summary.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                       best_logdir=best.user_attrs.get("logdir"))
        header = (f"# best trial {best.number} of study {spec['study']}: {spec['metric']} = {best.value:.6g}\n"
                  f"# use: --overlay {study_dir / 'best.yml'}\n")
        values = {k: value_of(spec["space"].get(k), v) for k, v in best.params.items()}
        write_text(header + yaml.safe_dump(overlay(values), sort_keys=False), study_dir / "best.yml")
        if figures:
            plots(study, study_dir)
    write_text(json.dumps(summary, indent=2, default=str) + "\n", study_dir / "summary.json")
    return summary


def plots(study, study_dir: Path) -> None:
    """Optuna's matplotlib figures: history, importances, and the contour of the two most important keys."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    figures = [("history.png", lambda: vis.plot_optimization_history(study))]
    params = list(study.best_trial.params)
    order = params
    if len(params) > 1 and len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) > 1:
        try:
            importances = optuna.importance.get_param_importances(study)
            order = list(importances)
            figures.append(("importances.png", lambda: vis.plot_param_importances(study)))
        except (RuntimeError, ValueError) as e:  # e.g. no variation yet
            log.info("no parameter importances yet: %s", e)
        figures.append(("contour.png", lambda: vis.plot_contour(study, params=order[:2])))
    for name, draw in figures:
        try:
            ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 6)
            fig.tight_layout()
            fig.savefig(study_dir / name, dpi=100)
            plt.close(fig)
        except (RuntimeError, ValueError) as e:
            log.info("%s not drawn: %s", name, e)


def open_study(spec: dict, storage_url: str, sampler=None, create: bool = False):
    import optuna

    storage = make_storage(storage_url, spec["heartbeat"])
    if create:
        return optuna.create_study(study_name=spec["study"], storage=storage, sampler=sampler,
                                   pruner=make_pruner(spec.get("pruner")),
                                   direction=spec.get("direction", "maximize"), load_if_exists=True)
    return optuna.load_study(study_name=spec["study"], storage=storage, sampler=sampler,
                             pruner=make_pruner(spec.get("pruner")))


def work(sweep_file, study_dir, n_trials: int, n_jobs: int = 1, storage: Optional[str] = None,
         python: str = sys.executable) -> int:
    """One worker: take trials from the study until it holds ``n_trials`` counted trials (running
    ones included, so that workers do not overshoot). Returns the trials this worker ran."""
    spec = load_sweep(sweep_file)
    study_dir = Path(study_dir).resolve()
    storage_url = storage or f"sqlite:///{study_dir / 'study.db'}"
    study = open_study(spec, storage_url, make_sampler(spec.get("sampler"), spec["space"], str(sweep_file)))
    reclaim(study)
    budget = int(n_trials) - counted(study) - running(study)
    if budget <= 0:
        return 0
    ran = []

    def after(s, t):
        ran.append(t.number)
        write_results(s, spec, study_dir, figures=False)
        if counted(s) + running(s) >= int(n_trials):
            s.stop()

    study.optimize(objective_for(spec, study_dir, storage_url, python), n_trials=budget, n_jobs=int(n_jobs),
                   catch=(TrialFailed,), callbacks=[after])
    return len(ran)


def worker_command(sweep_file, study_dir: Path, n_trials: int, n_jobs: int, storage_url: str) -> list:
    return [str(TRAIN.with_name("sweep.py")), str(Path(sweep_file).resolve()), "--study_dir", str(study_dir),
            "--worker", "--n_trials", str(n_trials), "--n_jobs", str(n_jobs), "--storage", storage_url]


def run_workers(commands, engine: str, study_dir: Path, gpus_per_job: Optional[int], engine_params: dict,
                poll_s: float) -> list:
    """The workers as jobs of the grid engine, waited for; the failures' one-line reasons."""
    import time

    from cellpipe.engine import grid as engine_lib

    gpus = engine_lib.resolve_gpus(engine, engine_params.get("partition"), gpus_per_job)
    params = {"timeout_min": 1440, "partition": None, "cpus_per_job": None, "mem_gb": None, "queue_poll_s": 15.0,
              **engine_params}
    executor = engine_lib.make_executor(engine, study_dir / "engine" / "%j", gpus, max_parallel=len(commands),
                                        **params)
    jobs = engine_lib.submit(executor, engine, [(c, os.getcwd()) for c in commands], gpus,
                             list(range(len(commands) * gpus)))
    log.info("%d worker(s) on %s: %s", len(jobs), engine, ", ".join(str(j.job_id) for j, _ in jobs))
    failures, waiting = [], [j for j, _ in jobs]
    while waiting:
        for job in list(waiting):
            why = engine_lib.outcome(job, engine)
            if why == engine_lib.RUNNING:
                continue
            waiting.remove(job)
            if why:
                failures.append(f"worker {job.job_id}: {why} (log: {job.paths.stderr})")
        time.sleep(poll_s) if waiting else None
    return failures


def run_sweep(sweep_file, study_dir, n_trials: Optional[int] = None, n_jobs: Optional[int] = None,
              storage: Optional[str] = None, python: str = sys.executable, engine: str = "none",
              workers: int = 1, gpus_per_job: Optional[int] = None, engine_params: Optional[dict] = None,
              poll_s: float = 2.0) -> dict:
    """Run (or continue) the study of ``sweep_file`` in ``study_dir``; returns summary.json's content."""
    spec = load_sweep(sweep_file)
    if engine not in ENGINES:
        raise ConfigError(f"sweep --engine: unknown engine {engine!r} ({' | '.join(ENGINES)})")
    study_dir = Path(study_dir).resolve()
    study_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{study_dir / 'study.db'}"
    sampler = make_sampler(spec.get("sampler"), spec["space"], str(sweep_file))
    is_grid = (spec.get("sampler") or {}).get("name") == "grid"
    n_jobs = int(n_jobs or spec.get("n_jobs", 1))
    with run_lock(study_dir, "study folder"):
        study = open_study(spec, storage_url, sampler, create=True)
        reclaim(study)
        size = enqueue_grid(study, spec["space"], str(sweep_file)) if is_grid else None
        n_trials = n_trials or spec.get("n_trials") or size
        if size is not None and n_trials > size:  # a grid holds no more trials than combinations
            log.info("the grid has %d combinations: n_trials %d -> %d", size, n_trials, size)
            n_trials = size
        if not n_trials:
            raise ConfigError(f"{sweep_file}: give n_trials (or --n_trials)")
        log.info("study %s in %s: %d trial(s) counted, %d running, %d to run", spec["study"], storage_url,
                 counted(study), running(study), max(0, int(n_trials) - counted(study) - running(study)))
        if engine == "none":
            work(sweep_file, study_dir, n_trials, n_jobs, storage_url, python)
        else:
            cmds = [worker_command(sweep_file, study_dir, n_trials, n_jobs, storage_url) for _ in range(int(workers))]
            failures = run_workers(cmds, engine, study_dir, gpus_per_job, engine_params or {}, poll_s)
            for why in failures:
                log.error("FAILED %s", why)
        summary = write_results(study, spec, study_dir)
        if engine != "none" and failures:
            raise WorkersFailed(f"{len(failures)} sweep worker(s) failed: {failures[0]}")
        return summary
