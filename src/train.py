"""Train one run of a pipeline part (control / non_pseudo / pseudo) with Catalyst.

    python src/train.py --config configs/config.yml --logdir LOGDIR \
        [--overlay configs/demo.yml] [--data_params/channels=[1,2,3,4,5] ...]

A run is the config's stages in order (a frozen-backbone warm-up, then the
whole model with OneCycle). Each stage writes its Catalyst logs (CSV,
TensorBoard) and checkpoints under LOGDIR/<stage>/ and marks itself done, so a
restarted run skips finished stages; the whole run ends with
LOGDIR/checkpoints/best.pth and LOGDIR/DONE.json, and a finished run is skipped.
"""
import compat  # noqa: F401  (must precede torchvision users)

import argparse
import json
import logging
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
from catalyst import dl
from catalyst.utils.misc import set_global_seed
from torch.utils.data import DataLoader

import cli
import config as cfglib
import layout
from dataset import load_normalizer, make_dataset, worker_init_fn
from fsutil import atomic_path, write_text
from losses import create_criterion
from metrics import classification_metrics
from models import create_model, load_checkpoint
from optim import create_optimizer, create_scheduler

log = logging.getLogger("train")
STAGE_DONE = "STAGE_DONE.json"
STAGE_BEST = "checkpoints/model.best.pth"  # written by catalyst's CheckpointCallback
STAGE_LAST = "checkpoints/model.last.pth"


class CellRunner(dl.Runner):
    """Forward pass that averages the logits of every site in eval batches."""

    def handle_batch(self, batch):
        x = batch["features"]
        if x.ndim == 5:  # (B, sites, C, H, W)
            b, s = x.shape[:2]
            logits = self.model(x.flatten(0, 1)).view(b, s, -1).mean(dim=1)
        else:
            logits = self.model(x)
        self.batch = {**batch, "logits": logits}


class EpochMetricsCallback(dl.Callback):
    """top-1, top-3 and MAP@3 over a whole loader (not averaged per batch)."""

    def __init__(self):
        super().__init__(order=dl.CallbackOrder.Metric)

    def on_loader_start(self, runner):
        self.logits, self.targets = [], []

    def on_batch_end(self, runner):
        self.logits.append(runner.batch["logits"].detach().float().cpu())
        self.targets.append(runner.batch["targets"].detach().cpu())

    def on_loader_end(self, runner):
        metrics = classification_metrics(torch.cat(self.logits), torch.cat(self.targets))
        runner.loader_metrics.update(metrics)


def make_loaders(cfg) -> "OrderedDict[str, DataLoader]":
    dp = cfg["data_params"]
    num_classes = cfg["model_params"]["num_classes"]
    normalizer = load_normalizer(dp)
    train_ds = make_dataset(dp, "train", num_classes, normalizer, seed=cfg["seed"])
    valid_ds = make_dataset(dp, "valid", num_classes, normalizer, seed=cfg["seed"])
    log.info("train wells: %d, valid wells: %d", len(train_ds), len(valid_ds))
    common = dict(num_workers=dp["num_workers"], worker_init_fn=worker_init_fn,
                  pin_memory=torch.cuda.is_available(), persistent_workers=dp["num_workers"] > 0)
    return OrderedDict(
        train=DataLoader(train_ds, batch_size=dp["batch_size"], shuffle=True, drop_last=dp["drop_last"], **common),
        valid=DataLoader(valid_ds, batch_size=dp["valid_batch_size"] or dp["batch_size"], shuffle=False, **common),
    )


def make_engine(engine_params: dict) -> dl.Engine:
    """CPU, one GPU, or DataParallel over all visible GPUs; fp16 autocast on CUDA with amp.

    Not catalyst's get_available_engine: it passes ``fp16=`` to accelerate's
    Accelerator, which accelerate 0.34 rejects.
    """
    if engine_params["cpu"] or not torch.cuda.is_available():
        return dl.CPUEngine()
    engine = dl.DataParallelEngine if torch.cuda.device_count() > 1 else dl.GPUEngine
    return engine(mixed_precision="fp16" if engine_params["amp"] else "no")


def save_final(model, cfg, path: Path, metric: dict) -> None:
    """Weights plus what inference needs to rebuild and check the model."""
    payload = {
        "model_state_dict": model.state_dict(),
        "model_params": {k: v for k, v in cfg["model_params"].items() if k not in ("weight", "pretrained")},
        "channels": cfg["data_params"]["channels"],
        "image_size": cfg["data_params"]["image_size"],
        "metric": metric,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def run_stage(cfg, name, model, loaders, logdir: Path, engine) -> dict:
    st = cfglib.stage_settings(cfg, name)
    sp = cfg["state_params"]
    model.freeze_backbone(bool(st.get("freeze_backbone")))
    optimizer = create_optimizer(model.parameters(), **st["optimizer_params"])
    accum = st["accumulation_steps"]
    scheduler = create_scheduler(optimizer, st.get("scheduler_params"), st["num_epochs"], len(loaders["train"]))
    criterion = {
        "train": create_criterion(**cfg["criterion_params"]),
        "valid": create_criterion(**cfg["valid_criterion_params"]),
    }
    callbacks = [
        dl.ControlFlowCallbackWrapper(
            dl.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss", criterion_key="train"),
            loaders="train"),
        dl.ControlFlowCallbackWrapper(
            dl.CriterionCallback(input_key="logits", target_key="targets", metric_key="loss", criterion_key="valid"),
            ignore_loaders="train"),
        dl.BackwardCallback(metric_key="loss"),
        dl.OptimizerCallback(metric_key="loss", accumulation_steps=accum),
        EpochMetricsCallback(),
        dl.CheckpointCallback(logdir=str(logdir / "checkpoints"), loader_key="valid", metric_key=sp["main_metric"],
                              minimize=sp["minimize_metric"], topk=1, load_best_on_end=True),
    ]
    if scheduler is not None:
        callbacks.append(dl.SchedulerCallback(mode="batch"))
    runner = CellRunner()
    runner.train(
        model=model, engine=engine, criterion=criterion, optimizer=optimizer, scheduler=scheduler,
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
    return {"stage": name, "best_epoch": best_epoch, "valid": history[best_epoch]}


def train(cfg, logdir, force: bool = False) -> dict:
    logdir = Path(logdir)
    done = logdir / layout.DONE_FILE
    if done.exists() and not force:
        log.info("run already finished, skipping: %s", logdir)
        return json.loads(done.read_text())
    logdir.mkdir(parents=True, exist_ok=True)
    write_text(cfglib.dump(cfg), logdir / layout.CONFIG_FILE)
    log.info("config:\n%s", cfglib.dump(cfg))
    set_global_seed(cfg["seed"])
    started = time.time()
    loaders = make_loaders(cfg)
    model = create_model(**cfg["model_params"])
    engine = make_engine(cfg["engine_params"])
    result, previous = {}, None
    for name, stage in cfg["stages"].items():
        stage_dir = logdir / name
        marker = stage_dir / STAGE_DONE
        if marker.exists() and (stage_dir / STAGE_BEST).exists() and not force:
            log.info("stage %s already finished, not retraining it", name)
            result = json.loads(marker.read_text())
        else:
            if previous is not None:
                # start where the previous stage ended: its best epoch, or its last one
                start = previous / (STAGE_BEST if stage.get("load_best") else STAGE_LAST)
                model.load_state_dict(load_checkpoint(start))
            result = run_stage(cfg, name, model, loaders, stage_dir, engine)
            write_text(json.dumps(result, indent=2), marker)
        log.info("stage %s best epoch %s: %s", name, result["best_epoch"], result["valid"])
        previous = stage_dir
    # the run's model is the best epoch of its last stage
    model.load_state_dict(load_checkpoint(previous / STAGE_BEST))
    model.freeze_backbone(False)
    save_final(model, cfg, logdir / layout.FINAL_CHECKPOINT, result["valid"])
    summary = {"logdir": str(logdir), "valid": result["valid"], "minutes": round((time.time() - started) / 60, 2),
               "channels": cfg["data_params"]["channels"], "num_classes": cfg["model_params"]["num_classes"]}
    write_text(json.dumps(summary, indent=2), done)
    return summary


def setup_logging(logdir) -> None:
    """Log to stderr and to train.log next to the checkpoints."""
    Path(logdir).mkdir(parents=True, exist_ok=True)
    cli.setup_logging(logging.FileHandler(Path(logdir) / "train.log"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="stage YAML, e.g. configs/config.yml")
    p.add_argument("--logdir", required=True, help="run folder (checkpoints, logs, resolved config)")
    p.add_argument("--overlay", action="append", default=[], help="extra YAML merged on top (repeatable)")
    p.add_argument("--force", action="store_true", help="retrain even if the run or a stage finished")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_known_args(argv)


def main(argv=None) -> int:
    args, overrides = parse_args(argv)
    try:
        cfg = cfglib.load_config(args.config, [o for o in args.overlay if o], overrides)
    except cfglib.ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfglib.dump(cfg))
        return 0
    setup_logging(args.logdir)
    try:
        summary = train(cfg, args.logdir, force=args.force)
    except cli.USER_ERRORS as e:
        log.debug("failed", exc_info=True)
        cli.fail(e)
    log.info("done: %s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
