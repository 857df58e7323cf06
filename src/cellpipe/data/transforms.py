"""Augmentations declared in YAML (albumentations), seeded per run and per worker."""
import inspect
from typing import List, Optional

import albumentations as A
import numpy as np
import torch

from cellpipe.core.errors import DataError


def build_transforms(specs: Optional[List[dict]], seed: Optional[int] = None) -> Optional[A.Compose]:
    """YAML list of {transform: ClassName, **kwargs} -> albumentations Compose.

    albumentations 2 keeps its own random state, so the run's seed goes in here
    (and worker_init_fn gives each DataLoader worker its own stream).
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
    return A.Compose(out, seed=seed)


def worker_init_fn(worker_id: int) -> None:
    """Distinct, reproducible random streams per DataLoader worker.

    torch seeds python's ``random`` (site choice) per worker; numpy and the
    albumentations pipeline (its own generator) get the same per-worker seed.
    """
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**32
    np.random.seed(seed)
    transforms = getattr(info.dataset, "transforms", None)
    if transforms is not None:
        transforms.set_random_seed(seed)
