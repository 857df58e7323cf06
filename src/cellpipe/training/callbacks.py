"""Catalyst callbacks of our runs: whole-loader metrics and the gradual unfreeze schedule."""
import logging
import math

import torch
from catalyst import dl

from cellpipe.training.metrics import classification_metrics

log = logging.getLogger(__name__)


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
        blocks = encoder_blocks(runner.model)
        k = self.blocks_open(runner.epoch_step, len(blocks))
        for i, block in enumerate(blocks):
            trainable = i >= len(blocks) - k
            for p in block.parameters():
                p.requires_grad = trainable
        log.info("epoch %d: %d of %d encoder blocks trainable", runner.epoch_step, k, len(blocks))
