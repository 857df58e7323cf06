"""Augmentations declared in YAML (albumentations), seeded per draw."""
import inspect
import random
from typing import List, Optional

import numpy as np
import torch

from cellpipe.core.errors import ConfigError, DataError


def build_transforms(specs: Optional[List[dict]], seed: Optional[int] = None):
    """YAML list of {transform: ClassName, **kwargs} -> albumentations Compose.

    albumentations 2 keeps its own random state; ``reseed`` sets it (the training
    dataset reseeds it for every draw, see data.sampling.SeededBatches).
    """
    if not specs:
        return None
    import albumentations as A  # ~2.4 s to import: only runs that augment pay it

    out = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("transform", None)
        cls = getattr(A, str(name), None)
        if not isinstance(cls, type):
            raise DataError(f"augmentations[{i}]: unknown albumentations transform '{name}'")
        # albumentations only warns about unknown arguments; a typo must not pass silently
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(spec) - set(params))
            if unknown:
                raise DataError(f"augmentations[{i}] {name}: unknown argument(s) {unknown}")
        try:
            out.append(cls(**spec))
        except (TypeError, ValueError) as e:
            raise DataError(f"augmentations[{i}] {name}: {e}") from None
    compose = A.Compose(out)
    reseed(compose, seed)
    return compose


def channel_dropout_warnings(specs: Optional[List[dict]], channels, label_channels=(), names=None) -> List[str]:
    """Warnings for a training ChannelDropout whose drop can hit a channel that alone carries the
    labels (``label_channels``, 1-based source numbers such as HPA's protein stain; ``names``: channel
    number -> name). A drop range that reaches the run's channel count would leave a sample nothing
    (albumentations refuses it at the first draw): a ConfigError at start-up instead."""
    out = []
    channels = list(channels)
    names = names or {}
    for i, spec in enumerate(specs or []):
        if spec.get("transform") != "ChannelDropout":
            continue
        where = f"data_params/augmentations/train[{i}] ChannelDropout"
        drop = spec.get("channel_drop_range", (1, 1))
        if (not isinstance(drop, (list, tuple)) or len(drop) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in drop) or not 1 <= drop[0] <= drop[1]):
            raise ConfigError(f"{where}: channel_drop_range must be [min, max] with 1 <= min <= max, got {drop!r}")
        if drop[1] >= len(channels):
            raise ConfigError(f"{where}: channel_drop_range {list(drop)} can drop all {len(channels)} channel(s) of a "
                              "sample; keep its max below the channel count or remove it")
        carried = [c for c in label_channels if c in channels]
        if carried:
            p = spec.get("p", 0.5)
            shown = ", ".join(f"{c} ({names[c]})" if c in names else str(c) for c in carried)
            out.append(f"{where} (p={p}) can drop channel {shown}, which alone carries the labels of this source, "
                       f"in up to {p:.0%} of training samples; drop only redundant channels (RxRx1's six stains), "
                       "or remove it")
    return out


def reseed(compose, seed: Optional[int]) -> None:
    """One random stream shared by every transform of ``compose``.

    Not ``Compose(seed=)`` / ``set_random_seed``: albumentations 2.0 gives each child transform
    its own generator with the same seed, so HorizontalFlip and VerticalFlip (p=0.5) then fire
    together on every image (only 2 of the 4 flip outcomes ever occur).
    """
    if compose is not None:
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


def worker_init_fn(worker_id: int) -> None:
    """Distinct, reproducible numpy and augmentation streams per DataLoader worker (for draws
    that come without their own seed)."""
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**32
    np.random.seed(seed)
    reseed(getattr(info.dataset, "transforms", None), seed)
