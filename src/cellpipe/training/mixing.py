"""Label-mixing augmentation on training batches: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

A mixed batch pairs every image with another of the batch (a random permutation) and mixes
both inputs and losses: loss = lam * loss(logits, y) + (1 - lam) * loss(logits, y[perm]).
``mix_params: {mode: none | mixup | cutmix, alpha, p}``: lam ~ Beta(alpha, alpha), a batch is
mixed with probability ``p``; CutMix pastes a box of area (1 - lam) and sets lam to the exact
kept fraction. Single-label and multi-label targets mix the same way (the loss is linear in it).
"""
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from cellpipe.core.errors import ConfigError

MODES = ("none", "mixup", "cutmix")
Mixed = Tuple[torch.Tensor, torch.Tensor, float]


def check_mix(params: Optional[dict]) -> dict:
    params = dict(params or {})
    mode = params.get("mode", "none")
    if mode not in MODES:
        raise ConfigError(f"config key 'mix_params/mode': unknown '{mode}'; known: {', '.join(MODES)}")
    for key in ("alpha", "p"):
        value = params.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (key == "p" and value > 1):
            raise ConfigError(f"config key 'mix_params/{key}' must be a number in (0, {'1]' if key == 'p' else 'inf)'}, "
                              f"got {value!r}")
    return {"mode": mode, "alpha": float(params.get("alpha", 1.0)), "p": float(params.get("p", 1.0))}


class Mixer:
    """Mixes a training batch in place of the plain one (``mix``), with its own generator."""

    def __init__(self, mode: str = "none", alpha: float = 1.0, p: float = 1.0, seed: int = 0):
        self.mode, self.alpha, self.p = mode, alpha, p
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, Union[torch.Tensor, Mixed]]:
        if self.mode == "none" or len(x) < 2 or self.rng.random() >= self.p:
            return x, y
        lam = float(self.rng.beta(self.alpha, self.alpha))
        perm = torch.from_numpy(self.rng.permutation(len(x))).to(x.device)
        if self.mode == "mixup":
            x = lam * x + (1 - lam) * x[perm]
        else:
            h, w = x.shape[-2:]
            ch, cw = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
            cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
            y0, y1 = max(cy - ch // 2, 0), min(cy + (ch + 1) // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + (cw + 1) // 2, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        return x, (y, y[perm], lam)


class MixedLoss(nn.Module):
    """``base`` on plain targets; the lam-weighted pair of losses on a mixed batch's (y, y[perm], lam)."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def forward(self, logits, targets):
        if isinstance(targets, tuple):
            a, b, lam = targets
            return lam * self.base(logits, a) + (1 - lam) * self.base(logits, b)
        return self.base(logits, targets)
