"""Test-time augmentation: named sets of views, combined by a reducer (mean or max) over the logits."""
from typing import Callable, List

import torch

from cellpipe.core.errors import DataError
from cellpipe.core.registry import Registry

TTA = Registry("tta")
REDUCERS = ("mean", "max")
View = Callable[[torch.Tensor], torch.Tensor]


@TTA.register("none")
def no_views() -> List[View]:
    return [lambda x: x]


@TTA.register("flip")
def flip_views() -> List[View]:
    """Identity plus horizontal and vertical flips."""
    return [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2)]


@TTA.register("d4")
def d4_views() -> List[View]:
    """The 8 dihedral views (rotations by 90 degrees, with and without a transpose)."""
    return [lambda x, k=k, t=t: torch.rot90(x.transpose(-1, -2) if t else x, k, dims=(-2, -1))
            for t in (False, True) for k in range(4)]


def tta_views(name: str) -> List[View]:
    if name not in TTA:
        raise DataError(f"unknown tta '{name}'; known: {TTA.names()}")
    return TTA.build(name)


def check_tta(tta: str, reduce: str = "mean") -> None:
    tta_views(tta)
    if reduce not in REDUCERS:
        raise DataError(f"unknown tta reducer '{reduce}'; known: {list(REDUCERS)}")
