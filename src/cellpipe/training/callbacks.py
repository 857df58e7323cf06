"""Catalyst callbacks of our runs: whole-loader metrics, history.csv and the gradual unfreeze schedule."""
import logging
import math
import time
from pathlib import Path

import pandas as pd
import torch
from catalyst import dl

from cellpipe.core.fsutil import write_csv
from cellpipe.training import distributed

log = logging.getLogger(__name__)


class EpochMetricsCallback(dl.Callback):
    """The task's metrics (Task.epoch_metrics) over a whole loader, not averaged per batch."""

    def __init__(self, labels):
        super().__init__(order=dl.CallbackOrder.Metric)
        self.labels = labels

    def on_batch_end(self, runner):
        self.logits.append(runner.batch["logits"].detach().float().cpu())
        self.targets.append(runner.batch["targets"].detach().cpu())
        self.index.append(torch.as_tensor(runner.batch["index"]).cpu())

    def on_loader_start(self, runner):
        self.logits, self.targets, self.index = [], [], []

    def on_loader_end(self, runner):
        logits, targets = torch.cat(self.logits), torch.cat(self.targets)
        shards = distributed.gather((torch.cat(self.index), logits, targets))
        if len(shards) > 1:  # every process's shard, back in sample order: metrics over the whole loader
            index = torch.cat([s[0] for s in shards])
            order = torch.argsort(index)
            logits, targets = torch.cat([s[1] for s in shards])[order], torch.cat([s[2] for s in shards])[order]
        runner.loader_metrics.update(self.labels.epoch_metrics(logits.numpy(), targets.numpy()))


def encoder_blocks(model) -> list:
    """The encoder's top-level blocks that hold parameters, from the stem to the deepest."""
    body = model.encoder.body
    return [m for _, m in body.named_children() if any(True for _ in m.parameters())]


class GradualUnfreezeCallback(dl.Callback):
    """Seed 001's schedule: from ``start_epoch`` (1-based), over ``duration`` epochs, unfreeze the
    deepest ``fraction`` of the encoder's blocks, a few more each epoch (deepest first)."""

    def __init__(self, start_epoch: int, duration: int, fraction: float):
        super().__init__(order=dl.CallbackOrder.Internal)
        self.start, self.duration, self.fraction = int(start_epoch), int(duration), float(fraction)

    def blocks_open(self, epoch: int, n_blocks: int) -> int:
        """How many of the deepest blocks are trainable during ``epoch``."""
        if epoch < self.start:
            return 0
        progress = min(1.0, (epoch - self.start + 1) / max(self.duration, 1))
        return math.ceil(progress * self.fraction * n_blocks - 1e-9)

    def on_epoch_start(self, runner):
        blocks = encoder_blocks(runner.engine.unwrap_model(runner.model))
        k = self.blocks_open(runner.epoch_step, len(blocks))
        for i, block in enumerate(blocks):
            trainable = i >= len(blocks) - k
            for p in block.parameters():
                p.requires_grad = trainable
        log.info("epoch %d: %d of %d encoder blocks trainable", runner.epoch_step, k, len(blocks))


class HistoryCallback(dl.Callback):
    """One row per epoch (stage, epoch, lr, seconds of the epoch's loaders, train_* and valid_*
    metrics) in the run folder's history.csv, rewritten atomically after every epoch; a rerun of a
    stage replaces its rows."""

    def __init__(self, path, stage: str):
        super().__init__(order=dl.CallbackOrder.External)
        self.path, self.stage = Path(path), stage

    def on_experiment_start(self, runner):
        old = pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=["stage"])
        self.rows = old[old["stage"] != self.stage].to_dict("records")

    def on_epoch_start(self, runner):
        self.started = time.perf_counter()

    def on_epoch_end(self, runner):
        row = {"stage": self.stage, "epoch": runner.epoch_step,
               "seconds": round(time.perf_counter() - getattr(self, "started", time.perf_counter()), 3)}
        if runner.optimizer is not None:
            row["lr"] = runner.optimizer.param_groups[0]["lr"]
        for loader, metrics in runner.epoch_metrics.items():
            if loader.startswith("_"):
                continue
            row.update({f"{loader}_{k}": float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not k.startswith("_")})
        self.rows.append(row)
        if distributed.is_main():
            write_csv(pd.DataFrame(self.rows), self.path)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])


def _net(runner):
    """The model without its (Distributed)DataParallel wrapper: state-dict keys stay the same."""
    return runner.engine.unwrap_model(runner.model)


class EMACallback(dl.Callback):
    """Exponential moving average of the weights (state_params/ema_decay): updated after every
    training step; validation, the stage's checkpoints and so the run's model use the average,
    while training continues from the raw weights at the next epoch's start. Float tensors
    (weights and BatchNorm statistics) are averaged; integer buffers are copied."""

    def __init__(self, decay: float):
        super().__init__(order=dl.CallbackOrder.External)
        self.decay = float(decay)
        self.ema, self.raw = None, None

    def on_experiment_start(self, runner):
        self.ema = {k: v.detach().clone() for k, v in _net(runner).state_dict().items()}
        self.raw = None

    @torch.no_grad()
    def on_batch_end(self, runner):
        if not runner.is_train_loader:
            return
        for k, v in _net(runner).state_dict().items():
            if v.dtype.is_floating_point:
                self.ema[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.ema[k].copy_(v)

    def on_loader_start(self, runner):
        if not runner.is_train_loader and self.raw is None:
            self.raw = {k: v.detach().clone() for k, v in _net(runner).state_dict().items()}
            _net(runner).load_state_dict(self.ema)

    def on_epoch_start(self, runner):
        if self.raw is not None:
            _net(runner).load_state_dict(self.raw)
            self.raw = None

    def state_dict(self) -> dict:
        return {"ema": self.ema, "raw": self.raw}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.raw = state["ema"], state["raw"]

