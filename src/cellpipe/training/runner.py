"""Train one run (the config's stages in order) with Catalyst.

A run is the config's stages in order (a frozen-backbone warm-up, then the
whole model with OneCycle). Each stage writes its Catalyst logs (CSV,
TensorBoard) and checkpoints under LOGDIR/<stage>/ and marks itself done, so a
restarted run skips finished stages; the whole run ends with
LOGDIR/checkpoints/best.pth (+ labels.json beside it), the validation
predictions and per-class scores, and LOGDIR/DONE.json; a finished run is skipped.
Every epoch adds a row to LOGDIR/history.csv; with state_params/sample_logs every
stage ends with per-sample logs of both splits under LOGDIR/training_logs/.
"""
import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch
from catalyst import dl
from catalyst.utils.misc import set_global_seed
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, WeightedRandomSampler

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.fsutil import atomic_path, write_csv, write_text
from cellpipe.core.runlock import check_free_space, run_lock
from cellpipe.data.build import Prepared, augmentation_warnings, prepare_training
from cellpipe.data.dataset import SampleDataset, class_weights, sample_weights
from cellpipe.data.sampling import GroupBatchSampler, SeededBatches, group_codes
from cellpipe.data.transforms import worker_init_fn
from cellpipe.models import call_model, create_model, flatten_sites, load_checkpoint
from cellpipe.tasks import resolve_defaults
from cellpipe.training import distributed, tracking
from cellpipe.training.callbacks import EMACallback, EpochMetricsCallback, GradualUnfreezeCallback, HistoryCallback
from cellpipe.training.checkpoint import RESUME, EpochCheckpointCallback, StatefulEarlyStopping
from cellpipe.training.distributed import ShardSampler
from cellpipe.training.evaluate import predict_logits, prediction_table, write_validation_report
from cellpipe.training.losses import create_criterion
from cellpipe.training.mixing import MixedLoss, Mixer, check_mix
from cellpipe.training.optim import create_optimizer, create_scheduler

log = logging.getLogger("train")
STAGE_DONE = "STAGE_DONE.json"
STAGE_BEST = "checkpoints/model.best.pth"  # written by checkpoint.EpochCheckpointCallback
STAGE_LAST = "checkpoints/model.last.pth"
STAGE_RESUME = f"checkpoints/{RESUME}"
FORBID_TRAINING = "CELLPIPE_FORBID_TRAINING"  # set by the test suite around tests not marked slow


class CellRunner(dl.Runner):
    """Forward pass that averages the logits of every site in eval batches; training batches may be
    mixed (mixup / CutMix), their loss then reads ``loss_targets``.

    Loaders are used as built (make_loaders shards them across processes) and batches are moved
    to the device here, not by accelerate's loader wrapper, which would shard them a second time.
    """

    def __init__(self, mixer: Optional[Mixer] = None):
        super().__init__()
        self.mixer = mixer

    def _setup_loaders(self) -> None:
        self.loaders = self.get_loaders()

    def on_loader_start(self, runner):
        super().on_loader_start(runner)
        if self.engine.num_processes > 1:
            # catalyst seeds each process differently (seed + rank + epoch); the batch order and the
            # per-draw seeds must be the same in every process (data.sampling.SeededBatches shards them)
            set_global_seed(self.seed + self.epoch_step)

    def handle_batch(self, batch):
        batch = {k: v.to(self.engine.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        x, loss_targets, context = batch["features"], batch["targets"], batch.get("context")
        if self.is_train_loader and self.mixer is not None:
            x, loss_targets = self.mixer.mix(x, loss_targets)
        if self.is_train_loader and getattr(self.engine.unwrap_model(self.model), "arc", None) is not None:
            logits, cos = self.model(x, context, with_cosines=True)  # ArcFace trains on the cosines too
            loss_inputs = (logits, cos)
        else:
            logits = forward_sites(self.model, x, context)
            loss_inputs = logits
        self.batch = {**batch, "logits": logits, "loss_inputs": loss_inputs, "loss_targets": loss_targets}


def forward_sites(model, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Logits of a batch; an eval batch (B, sites, C, H, W) averages its sites' logits."""
    sites = x.shape[1] if x.ndim == 5 else 0
    logits = call_model(model, *flatten_sites(x, context))
    return logits.view(-1, sites, logits.shape[-1]).mean(dim=1) if sites else logits


def make_loaders(cfg, prepared: Prepared) -> "OrderedDict[str, DataLoader]":
    """Training batches (seeded per draw, one share of them per process) and the validation loader
    (one strided shard per process)."""
    dp = cfg["data_params"]
    rank, world = distributed.rank(), distributed.world_size()
    log.info("train samples: %d, valid samples: %d, classes: %d",
             len(prepared.train), len(prepared.valid), len(prepared.labels))
    common = dict(num_workers=dp["num_workers"], worker_init_fn=worker_init_fn,
                  pin_memory=torch.cuda.is_available(), persistent_workers=dp["num_workers"] > 0)
    if dp["num_workers"] > 0 and dp.get("prefetch_factor"):
        common["prefetch_factor"] = int(dp["prefetch_factor"])
    if dp.get("batch_by"):
        if dp.get("balance") == "sampler":
            raise ConfigError("data_params/batch_by and data_params/balance=sampler both choose the batches; "
                              "use one")
        groups = group_codes(prepared.train.table, prepared.source, dp["batch_by"])
        batches = GroupBatchSampler(groups, dp["batch_size"], cfg["seed"], dp["drop_last"])
    else:
        # no generator of their own: they draw from torch's, which catalyst reseeds every epoch (resume)
        if dp.get("balance") == "sampler":
            weights = sample_weights(prepared.train.targets, len(prepared.labels))
            sampler = WeightedRandomSampler(weights, len(weights))
        else:
            sampler = RandomSampler(prepared.train)
        batches = BatchSampler(sampler, dp["batch_size"], dp["drop_last"])
    train_batches = SeededBatches(batches, rank, world)
    if len(train_batches) == 0:
        per = f" for each of {world} processes" if world > 1 else ""
        raise DataError(f"{prepared.train.where}: {len(prepared.train)} sample(s) make no training "
                        f"batch{per} of data_params/batch_size={dp['batch_size']} (drop_last={dp['drop_last']})")
    valid_shard = ShardSampler(len(prepared.valid), rank, world) if world > 1 else None
    return OrderedDict(
        train=DataLoader(prepared.train, batch_sampler=train_batches, **common),
        valid=DataLoader(prepared.valid, batch_size=dp["valid_batch_size"] or dp["batch_size"], shuffle=False,
                         sampler=valid_shard, **common),
    )


def make_engine(engine_params: dict) -> dl.Engine:
    """CPU, one GPU, DataParallel over all visible GPUs, or one process of a distributed run (started
    by torchrun: accelerate reads its environment and joins the process group, gloo on CPU, nccl on
    CUDA); fp16 autocast on CUDA with amp.

    Not catalyst's get_available_engine: it passes ``fp16=`` to accelerate's
    Accelerator, which accelerate 0.34 rejects.
    """
    if engine_params["cpu"] or not torch.cuda.is_available():
        return dl.CPUEngine()
    precision = "fp16" if engine_params["amp"] else "no"
    if distributed.world_size() > 1 or torch.cuda.device_count() == 1:
        return dl.GPUEngine(mixed_precision=precision)
    return dl.DataParallelEngine(mixed_precision=precision)


def prepare_model(model, engine_params: dict, device_type: str):
    """engine_params/channels_last (auto: on CUDA) and compile (false | true | a torch.compile backend)."""
    layout_ = engine_params.get("channels_last", "auto")
    if layout_ is True or (layout_ == "auto" and device_type == "cuda"):
        model.to_channels_last()
    backend = engine_params.get("compile") or False
    if backend:
        # in place (nn.Module.compile): the state-dict keys stay those of the plain model
        model.compile(**({} if backend is True else {"backend": str(backend)}))
    return model


def save_final(model, cfg, path: Path, metric: dict, prepared: Prepared) -> None:
    """Weights plus what inference needs to rebuild and check the model, and labels.json beside them."""
    payload = {
        "model_state_dict": model.state_dict(),
        "model_params": {k: v for k, v in cfg["model_params"].items() if k not in ("weight", "pretrained")},
        "channels": cfg["data_params"]["channels"],
        "image_size": cfg["data_params"]["image_size"],
        "source": cfg["data_params"]["source"],
        "labels": prepared.labels.to_dict(),
        "normalization": prepared.normalizer.state(),
        "metric": metric,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    prepared.labels.save(path.parent / layout.LABELS_FILE)


def make_criteria(cfg, prepared: Prepared) -> dict:
    weight, labels = None, prepared.labels
    if cfg["data_params"].get("balance") == "loss":
        weight = torch.tensor(class_weights(prepared.train.targets, len(labels)), dtype=torch.float32)
    return {"train": MixedLoss(create_criterion(**cfg["criterion_params"], weight=weight, labels=labels)),
            "valid": create_criterion(**cfg["valid_criterion_params"], labels=labels)}


def write_sample_logs(model, prepared: Prepared, cfg, run_dir: Path, stage: str) -> None:
    """Seed 004's training logs: per sample of both splits (id, prediction, truth, loss) at a stage's end,
    the training split without augmentation over its training sites."""
    dp = cfg["data_params"]
    tr = prepared.train
    plain_train = SampleDataset(tr.table, tr.source, tr.channels, tr.sites, tr.image_size, tr.normalizer,
                                None, train=False, targets=tr.targets, context=tr.context, cache=tr.cache)
    for split, ds in (("train", plain_train), ("valid", prepared.valid)):
        logits = predict_logits(model, ds, dp["valid_batch_size"] or dp["batch_size"], desc=f"{stage} {split} log")
        table = prediction_table(logits, ds.table, prepared.labels, ds.targets)
        keep = [c for c in table.columns if not c.startswith("prob_")]
        write_csv(table[keep], run_dir / layout.SAMPLE_LOGS.format(stage=stage, split=split))
    model.train()


def run_stage(cfg, name, model, loaders, logdir: Path, engine, criteria, labels) -> dict:
    if os.environ.get(FORBID_TRAINING):
        raise RuntimeError(f"training is switched off here ({FORBID_TRAINING} is set: the unit tests train nothing; "
                           f"mark a test that must train as slow)")
    st = cfglib.stage_settings(cfg, name)
    sp = cfg["state_params"]
    model.freeze_backbone(bool(st.get("freeze_backbone")))
    unfreeze = st.get("unfreeze")
    # a gradual unfreeze opens encoder blocks later, so the optimizer must hold them from the start
    params = model.parameters() if unfreeze else (p for p in model.parameters() if p.requires_grad)
    optimizer = create_optimizer(params, **st["optimizer_params"])
    scheduler = create_scheduler(optimizer, st.get("scheduler_params"), st["num_epochs"], len(loaders["train"]),
                                 minimize=bool(sp["minimize_metric"]))
    callbacks = [
        dl.ControlFlowCallbackWrapper(
            dl.CriterionCallback(input_key="loss_inputs", target_key="loss_targets", metric_key="loss",
                                 criterion_key="train"),
            loaders="train"),
        dl.ControlFlowCallbackWrapper(
            dl.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss", criterion_key="valid"),
            ignore_loaders="train"),
        dl.BackwardCallback(metric_key="loss"),
        dl.OptimizerCallback(metric_key="loss", accumulation_steps=st["accumulation_steps"]),
        EpochMetricsCallback(labels),
    ]
    history_csv = HistoryCallback(logdir.parent / layout.HISTORY, name)
    callbacks.append(history_csv)
    if getattr(scheduler, "per_epoch", False):  # ReduceLROnPlateau: after each epoch, on the main metric
        callbacks.append(dl.SchedulerCallback(mode="epoch", loader_key="valid", metric_key=sp["main_metric"]))
    elif scheduler is not None:
        callbacks.append(dl.SchedulerCallback(mode="batch"))
    stateful = {"history": history_csv}
    if sp.get("early_stopping_patience"):
        stateful["early_stopping"] = StatefulEarlyStopping(
            patience=sp["early_stopping_patience"], loader_key="valid", metric_key=sp["main_metric"],
            minimize=sp["minimize_metric"])
        callbacks.append(stateful["early_stopping"])
    tune = cfg.get("tune_params") or {}
    # epochs numbered over the stages, for a sweep's trial and for MLflow
    offset = sum(cfglib.stage_settings(cfg, s)["num_epochs"] for s in list(cfg["stages"])[:list(cfg["stages"]).index(name)])
    if tune.get("storage"):
        from cellpipe.training.trial import TrialCallback

        callbacks.append(TrialCallback(tune, tune.get("metric") or sp["main_metric"],
                                       offset + int(tune.get("step_offset") or 0)))
    if tracking.enabled(cfg) and distributed.is_main():
        callbacks.append(tracking.MlflowCallback(cfg, logdir.parent, offset))
    if unfreeze:
        callbacks.append(GradualUnfreezeCallback(**unfreeze))
    if sp.get("ema_decay"):
        stateful["ema"] = EMACallback(sp["ema_decay"])
        callbacks.append(stateful["ema"])
    mix = check_mix(cfg.get("mix_params"))
    mixer = Mixer(**mix, seed=cfg["seed"]) if mix["mode"] != "none" else None
    if mixer is not None:
        stateful["mixer"] = mixer
    callbacks.append(EpochCheckpointCallback(logdir / "checkpoints", "valid", sp["main_metric"], sp["minimize_metric"],
                                             keep_epochs=bool(sp.get("keep_epoch_checkpoints")), stateful=stateful))
    runner = CellRunner(mixer)
    runner.train(
        model=model, engine=engine, criterion=criteria, optimizer=optimizer, scheduler=scheduler,
        loaders=loaders, callbacks=callbacks, num_epochs=st["num_epochs"], logdir=str(logdir),
        valid_loader="valid", valid_metric=sp["main_metric"], minimize_valid_metric=sp["minimize_metric"],
        loggers={"console": dl.ConsoleLogger(), "csv": dl.CSVLogger(str(logdir)),
                 "tensorboard": dl.TensorboardLogger(str(logdir))},
        seed=cfg["seed"], verbose=True,
    )
    history = {epoch: m.get("valid", {}) for epoch, m in runner.experiment_metrics.items()}
    scores = {e: h[sp["main_metric"]] for e, h in history.items() if sp["main_metric"] in h}
    pick = min if sp["minimize_metric"] else max
    best_epoch = pick(scores, key=scores.get)
    return {"stage": name, "best_epoch": best_epoch, "epochs_run": len(history),
            "valid": {k: float(v) for k, v in history[best_epoch].items()}}


def checkpoint_bytes(model, cfg) -> int:
    """Disk a run needs for its checkpoints: per stage best + last + resume (weights, optimizer moments,
    EMA copies), the final model, and every epoch with keep_epoch_checkpoints; 20% to spare."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    sp = cfg["state_params"]
    copies = 6 + (2 if sp.get("ema_decay") else 0)
    if sp.get("keep_epoch_checkpoints"):
        copies += max(st["num_epochs"] for st in cfg["stages"].values())
    return int(weights * copies * 1.2)


def finish_run(cfg, logdir: Path, model, prepared: Prepared, result: dict, last_stage: str, started: float,
               warnings=()) -> dict:
    """What ends every run: the final checkpoint (+ labels.json), the validation report and DONE.json.
    ``result`` is the last stage's summary (best_epoch, valid metrics); ``warnings`` are the start-up
    ones, kept in DONE.json with a run that ends below its trivial baseline."""
    model.freeze_backbone(False)
    save_final(model, cfg, logdir / layout.FINAL_CHECKPOINT, result["valid"], prepared)
    logits = predict_logits(model, prepared.valid, cfg["data_params"]["batch_size"])
    report = write_validation_report(logits, prepared.valid.table, prepared.labels, logdir, prepared.valid.targets,
                                     cfg["state_params"].get("threshold_grid"))
    summary = {"logdir": str(logdir), "valid": result["valid"], "minutes": round((time.time() - started) / 60, 2),
               "channels": cfg["data_params"]["channels"], "num_classes": cfg["model_params"]["num_classes"],
               "target": prepared.labels.kind,
               "source": cfg["data_params"]["source"], "best_epoch": result["best_epoch"],
               "last_stage": last_stage, **report}
    below = prepared.labels.below_baseline(report)
    if below:
        log.warning(below)
    summary["warnings"] = [*warnings, *([below] if below else [])]
    write_text(json.dumps(summary, indent=2), logdir / layout.DONE_FILE)
    return summary


def train(cfg, logdir, force: bool = False) -> dict:
    """Train a run into ``logdir`` (locked against a second process), or return its finished summary."""
    logdir = Path(logdir)
    done = logdir / layout.DONE_FILE
    if done.exists() and not force:
        log.info("run already finished, skipping: %s", logdir)
        return json.loads(done.read_text())
    if not distributed.is_main():  # rank 0 holds the run's lock for every process
        return _train(cfg, logdir, force)
    with run_lock(logdir, "run folder"):
        return _train(cfg, logdir, force)


def _train(cfg, logdir: Path, force: bool) -> dict:
    resolve_defaults(cfg)  # auto criterion / main metric (train.py's start-up checks did it already)
    set_global_seed(cfg["seed"])
    started = time.time()
    prepared = prepare_training(cfg)  # resolves the config's auto values
    prepared.labels.check_metric(cfg["state_params"]["main_metric"])
    warnings = augmentation_warnings(cfg["data_params"], prepared.source)
    for w in warnings:
        log.warning(w)
    main = distributed.is_main()
    if main:
        write_text(cfglib.dump(cfg), logdir / layout.CONFIG_FILE)
        log.info("config:\n%s", cfglib.dump(cfg))
    loaders = make_loaders(cfg, prepared)
    model = create_model(**cfg["model_params"])
    check_free_space(logdir, checkpoint_bytes(model, cfg), "this run's checkpoints")
    engine = make_engine(cfg["engine_params"])
    model = prepare_model(model, cfg["engine_params"], engine.device.type)
    criteria = make_criteria(cfg, prepared)
    result, previous = {}, None
    for name, stage in cfg["stages"].items():
        stage_dir = logdir / name
        marker = stage_dir / STAGE_DONE
        if marker.exists() and (stage_dir / STAGE_BEST).exists() and not force:
            log.info("stage %s already finished, not retraining it", name)
            result = json.loads(marker.read_text())
        else:
            if force:  # --force retrains from the first epoch, not from a killed run's resume state
                (stage_dir / STAGE_RESUME).unlink(missing_ok=True)
            if previous is not None:
                # start where the previous stage ended: its best epoch, or its last one
                start = previous / (STAGE_BEST if stage.get("load_best") else STAGE_LAST)
                model.load_state_dict(load_checkpoint(start))
            distributed.barrier()  # every process starts the stage from the same files
            result = run_stage(cfg, name, model, loaders, stage_dir, engine, criteria, prepared.labels)
            if main:
                if cfg["state_params"].get("sample_logs"):
                    write_sample_logs(model, prepared, cfg, logdir, name)
                write_text(json.dumps(result, indent=2), marker)
                (stage_dir / STAGE_RESUME).unlink(missing_ok=True)  # the stage is done: no resume state needed
            distributed.barrier()
        log.info("stage %s best epoch %s: %s", name, result["best_epoch"], result["valid"])
        previous = stage_dir
    if not main:  # rank 0 writes the run's model and reports
        distributed.barrier()
        return {"logdir": str(logdir), "valid": result["valid"], "rank": distributed.rank()}
    # the run's model is the best epoch of its last stage
    model.load_state_dict(load_checkpoint(previous / STAGE_BEST))
    summary = finish_run(cfg, logdir, model, prepared, result, previous.name, started, warnings)
    distributed.barrier()
    return summary
