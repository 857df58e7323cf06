"""MLflow tracking of a run (``tracking_params``): one MLflow run per training run, resumed with it.

With ``tracking_params/mlflow: true`` a run logs to ``tracking_params/uri`` (default
sqlite:///mlflow.db in the working directory; a file store or a tracking server URL when given):
the resolved config as parameters (``section/key``), tags (source, target kind, channels, fold,
model, and a sweep trial's study and number), every epoch's metrics of every stage (``valid_*``,
``train_*``, ``lr``; numbered over the stages), and at the end the final validation scores, the
figures, history.csv, config.yml and DONE.json as artefacts and the checkpoint's path as a tag.
The MLflow run id is kept in the run folder (mlflow_run.json), so a resumed run continues its
MLflow run. CSV and TensorBoard logs stay as they are.
"""
import json
import logging
import re
import time
from pathlib import Path
from typing import Optional

from catalyst import dl

from cellpipe.core.fsutil import write_text

log = logging.getLogger("tracking")
RUN_FILE = "mlflow_run.json"
DEFAULT_URI = "sqlite:///mlflow.db"
MAX_PARAM = 6000  # MLflow's limit on a parameter's value


def enabled(cfg: dict) -> bool:
    return bool((cfg.get("tracking_params") or {}).get("mlflow"))


def flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}/"))
        else:
            out[key] = json.dumps(v, default=str) if not isinstance(v, str) else v
    return out


def _client(cfg: dict):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(cfg.get("tracking_params") or {}).get("uri") or DEFAULT_URI)


def artifact_root(uri: str) -> Optional[str]:
    """Artefacts of a SQLite store go beside its database file (MLflow's default, ./mlruns, is
    relative to whichever folder the command ran in); other stores keep their own default."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns").as_uri()
    return None


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(
        name, artifact_location=artifact_root(client.tracking_uri))


def run_id(cfg: dict, logdir: Path) -> str:
    """The MLflow run of ``logdir``: the one recorded there, else a new one with the config and tags."""
    from mlflow.entities import Param, RunTag

    record = Path(logdir) / RUN_FILE
    if record.is_file():
        return json.loads(record.read_text())["run_id"]
    client, tp = _client(cfg), cfg.get("tracking_params") or {}
    dp, tune = cfg["data_params"], cfg.get("tune_params") or {}
    name = tp.get("experiment") or f"cellpipe-{dp['source']}"
    fold = re.search(r"fold_(\d+)", str(logdir))
    tags = {"source": dp["source"], "target": str(dp.get("target", "single")), "channels": json.dumps(dp["channels"]),
            "model": str(cfg["model_params"]["model_name"]), "logdir": str(logdir),
            **({"fold": fold.group(1)} if fold else {}),
            **({"study": str(tune["study"]), "trial_id": str(tune["trial_id"])} if tune.get("study") else {})}
    run = client.create_run(experiment_id(client, name), run_name=tp.get("run_name") or Path(logdir).name,
                            tags={"mlflow.source.name": "src/train.py", **tags})
    params = [Param(k, v[:MAX_PARAM]) for k, v in flatten(cfg).items()]
    for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
        client.log_batch(run.info.run_id, params=params[i:i + 100], tags=[RunTag("logdir", str(logdir))])
    write_text(json.dumps({"run_id": run.info.run_id, "experiment": name}) + "\n", record)
    return run.info.run_id


class MlflowCallback(dl.Callback):
    """Every epoch's metrics of a stage into the run's MLflow run (``offset`` + the stage's epoch)."""

    def __init__(self, cfg: dict, logdir: Path, offset: int):
        super().__init__(order=dl.CallbackOrder.External)
        self.client, self.run_id, self.offset = _client(cfg), run_id(cfg, logdir), offset

    def on_epoch_end(self, runner):
        from mlflow.entities import Metric

        step, now = self.offset + runner.epoch_step, int(time.time() * 1000)
        metrics = [Metric(f"{loader}_{k}".replace("/", "_"), float(v), now, step)
                   for loader, values in runner.epoch_metrics.items() if not loader.startswith("_")
                   for k, v in values.items() if isinstance(v, (int, float))]
        if runner.optimizer is not None:
            metrics.append(Metric("lr", float(runner.optimizer.param_groups[0]["lr"]), now, step))
        self.client.log_batch(self.run_id, metrics=metrics)


def finish(cfg: dict, logdir: Path, summary: dict, checkpoint: Optional[Path] = None) -> None:
    """The final scores, the artefacts and the checkpoint's path; the MLflow run ends FINISHED."""
    from mlflow.entities import Metric

    client, rid, now = _client(cfg), run_id(cfg, logdir), int(time.time() * 1000)
    scores = {**{f"final_{k}": v for k, v in summary.get("valid", {}).items()},
              **{k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    client.log_batch(rid, metrics=[Metric(k.replace("/", "_"), float(v), now, 0) for k, v in scores.items()])
    if checkpoint is not None:
        client.set_tag(rid, "checkpoint", str(checkpoint))
    for path in sorted(Path(logdir).glob("*.png")) + [Path(logdir) / n for n in ("history.csv", "config.yml",
                                                                                   "DONE.json", "per_class.csv")]:
        if path.is_file():
            client.log_artifact(rid, str(path), artifact_path="figures" if path.suffix == ".png" else None)
    client.set_terminated(rid, "FINISHED")
    log.info("MLflow run %s finished (%s)", rid, (cfg.get("tracking_params") or {}).get("uri") or DEFAULT_URI)


def stop(cfg: dict, logdir: Path, status: str, **tags) -> None:
    """End the run's MLflow run with ``status`` (e.g. KILLED for a pruned trial), with ``tags``."""
    client, rid = _client(cfg), run_id(cfg, logdir)
    for k, v in tags.items():
        client.set_tag(rid, k, v)
    client.set_terminated(rid, status)


def log_prediction(uri: Optional[str], experiment: str, command: str, args: dict, out: Path, runs,
                   metrics: dict, files) -> str:
    """One finished MLflow run for a prediction command (predict, predict-all, classify): its
    arguments as parameters; tags for the command, the output and each model run (with the training
    run's own MLflow run id where that run was tracked); ``metrics``; ``files`` as artefacts."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri or DEFAULT_URI)
    runs = [Path(r) for r in runs]
    tags = {"mlflow.source.name": "src/inference.py", "command": command, "out": str(out),
            "models": json.dumps([str(r) for r in runs])[:MAX_PARAM]}
    trained = [json.loads((r / RUN_FILE).read_text())["run_id"] for r in runs if (r / RUN_FILE).is_file()]
    if trained:
        tags["training_runs"] = ",".join(trained)[:MAX_PARAM]
    run = client.create_run(experiment_id(client, experiment), run_name=f"{command} {Path(out).name}", tags=tags)
    now = int(time.time() * 1000)
    params = [Param(k, (v if isinstance(v, str) else json.dumps(v, default=str))[:MAX_PARAM])
              for k, v in args.items() if v is not None]
    client.log_batch(run.info.run_id, params=params[:100],
                     metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], tags=[RunTag("out", str(out))])
    for path in files:
        if Path(path).is_file():
            client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, "FINISHED")
    log.info("MLflow run %s: %s -> %s (%s)", run.info.run_id, command, out, uri or DEFAULT_URI)
    return run.info.run_id
