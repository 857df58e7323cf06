"""Optimizers and learning-rate schedules by name."""
from typing import Iterable, List

import numpy as np
import torch

from cellpipe.core.registry import Registry

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("Nadam")(torch.optim.NAdam)
OPTIMIZERS.register("Adam")(torch.optim.Adam)
OPTIMIZERS.register("AdamW")(torch.optim.AdamW)
OPTIMIZERS.register("SGD")(torch.optim.SGD)

SCHEDULERS = Registry("scheduler")


def create_optimizer(params: Iterable, optimizer: str, **kwargs) -> torch.optim.Optimizer:
    return OPTIMIZERS.build(optimizer, params=[p for p in params if p.requires_grad], **kwargs)


def _momentum_key(optimizer) -> str:
    group = optimizer.param_groups[0]
    return "betas" if "betas" in group else "momentum"


@SCHEDULERS.register("OneCycleLR")
class OneCycleWarmup(torch.optim.lr_scheduler.LRScheduler):
    """The seed's OneCycle, stepped once per batch.

    lr ramps linearly from the optimizer's lr to ``lr_range[0]`` over
    ``warmup_steps`` epochs, then down to ``lr_range[1]`` by the last batch; momentum (beta1 for Adam-type optimizers) moves
    from ``momentum_range[1]`` to ``[0]`` during warm-up and back afterwards.
    Epoch counts become batch counts via ``steps_per_epoch``, so nothing needs
    the loader length later (catalyst 22's own OneCycle recalculates that wrongly
    after the first epoch).
    """

    def __init__(self, optimizer, num_epochs: int, steps_per_epoch: int, lr_range,
                 warmup_steps: int = 0, momentum_range=(0.85, 0.95), last_epoch: int = -1):
        if len(lr_range) != 2 or len(momentum_range) != 2:
            raise ValueError(f"OneCycleLR takes lr_range [peak, final] and momentum_range [low, high], "
                             f"got {list(lr_range)} and {list(momentum_range)}")
        total = max(1, int(num_epochs) * int(steps_per_epoch))
        warm = min(total, int(warmup_steps) * int(steps_per_epoch))
        init_lr = optimizer.param_groups[0]["lr"]
        peak, low = float(lr_range[0]), float(lr_range[1])
        self.lrs = np.concatenate([np.linspace(init_lr, peak, warm, endpoint=False),
                                   np.linspace(peak, low, total - warm)])
        m_low, m_high = float(momentum_range[0]), float(momentum_range[1])
        self.moms = np.concatenate([np.linspace(m_high, m_low, warm, endpoint=False),
                                    np.linspace(m_low, m_high, total - warm)])
        self.key = _momentum_key(optimizer)
        super().__init__(optimizer, last_epoch)

    def _index(self) -> int:
        return min(max(self.last_epoch, 0), len(self.lrs) - 1)

    def get_lr(self) -> List[float]:
        i = self._index()
        for group in self.optimizer.param_groups:
            if self.key == "betas":
                group["betas"] = (float(self.moms[i]), group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = float(self.moms[i])
        return [float(self.lrs[i]) for _ in self.optimizer.param_groups]

    def get_momentum(self) -> List[float]:
        i = self._index()
        return [float(self.moms[i]) for _ in self.optimizer.param_groups]


@SCHEDULERS.register("ReduceLROnPlateau")
class Plateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch's ReduceLROnPlateau (seed 004's schedule), stepped once per epoch on the stage's main
    validation metric; ``mode`` auto follows state_params/minimize_metric. Its counters are part of
    the resume state like every scheduler's."""

    per_epoch = True

    def __init__(self, optimizer, num_epochs: int, steps_per_epoch: int, mode: str = "auto",
                 minimize: bool = False, **kwargs):
        mode = ("min" if minimize else "max") if mode == "auto" else mode
        super().__init__(optimizer, mode=mode, **kwargs)


def create_scheduler(optimizer, scheduler_params, num_epochs: int, steps_per_epoch: int, minimize: bool = False):
    """None (constant lr), a per-batch scheduler, or a per-epoch one (``per_epoch``: ReduceLROnPlateau,
    on the main metric, improving downwards when ``minimize``) from the stage's settings."""
    if not scheduler_params:
        return None
    params = dict(scheduler_params)
    name = params.pop("scheduler")
    if name == "ReduceLROnPlateau":  # the direction its metric improves in
        params.setdefault("minimize", minimize)
    return SCHEDULERS.build(name, optimizer=optimizer, num_epochs=num_epochs,
                            steps_per_epoch=steps_per_epoch, **params)
