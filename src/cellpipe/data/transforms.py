"""Augmentations declared in YAML (albumentations), seeded per draw."""
import inspect
import random
from typing import List, Optional

import albumentations as A
import numpy as np
import torch

from cellpipe.core.errors import DataError


def build_transforms(specs: Optional[List[dict]], seed: Optional[int] = None) -> Optional[A.Compose]:
    """YAML list of {transform: ClassName, **kwargs} -> albumentations Compose.

    albumentations 2 keeps its own random state; ``reseed`` sets it (the training
    dataset reseeds it for every draw, see data.sampling.SeededBatches).
    """
    if not specs:
        return None
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


def reseed(compose: Optional[A.Compose], seed: Optional[int]) -> None:
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
