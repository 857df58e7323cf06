"""Test-time augmentation: named sets of views, combined by a reducer (mean or max) over the logits.

``five_crop`` is seed 004's: the four corners and the centre at ``crop`` (a fraction of the side,
or pixels when above 1), best combined by ``max`` so that a protein seen in one crop counts.
"""
from typing import Callable, List, Optional

import torch

from cellpipe.core.errors import DataError
from cellpipe.core.registry import Registry

TTA = Registry("tta")
REDUCERS = ("mean", "max")
FIVE_CROP = 0.875  # seed 004's crop side when predict_params/crop is null
View = Callable[[torch.Tensor], torch.Tensor]


@TTA.register("none")
def no_views(crop=None) -> List[View]:
    return [lambda x: x]


@TTA.register("flip")
def flip_views(crop=None) -> List[View]:
    """Identity plus horizontal and vertical flips."""
    return [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2)]


@TTA.register("d4")
def d4_views(crop=None) -> List[View]:
    """The 8 dihedral views (rotations by 90 degrees, with and without a transpose)."""
    return [lambda x, k=k, t=t: torch.rot90(x.transpose(-1, -2) if t else x, k, dims=(-2, -1))
            for t in (False, True) for k in range(4)]


def crop_size(crop, side: int) -> int:
    c = float(crop)
    size = int(round(c * side)) if c <= 1 else int(c)
    if not 1 <= size <= side:
        raise DataError(f"tta crop {crop} gives {size} px for {side} px images")
    return size


def _crop(x: torch.Tensor, crop, where: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = crop_size(crop, h), crop_size(crop, w)
    top = {"t": 0, "b": h - ch, "c": (h - ch) // 2}[where[0]]
    left = {"l": 0, "r": w - cw, "c": (w - cw) // 2}[where[1]]
    return x[..., top:top + ch, left:left + cw]


CORNERS = ("tl", "tr", "bl", "br", "cc")


@TTA.register("five_crop")
def five_crop_views(crop=FIVE_CROP) -> List[View]:
    """Top-left, top-right, bottom-left, bottom-right and centre crops."""
    return [lambda x, w=w: _crop(x, crop, w) for w in CORNERS]


@TTA.register("five_crop_flip")
def five_crop_flip_views(crop=FIVE_CROP) -> List[View]:
    """The five crops, each also flipped horizontally (10 views)."""
    return [v for w in CORNERS for v in (lambda x, w=w: _crop(x, crop, w), lambda x, w=w: _crop(x, crop, w).flip(-1))]


def tta_views(name: str, crop: Optional[float] = None) -> List[View]:
    if name not in TTA:
        raise DataError(f"unknown tta '{name}'; known: {TTA.names()}")
    return TTA.build(name, crop=FIVE_CROP if crop is None else crop)


def check_tta(tta: str, reduce: str = "mean", crop: Optional[float] = None, where: str = "tta") -> None:
    """The view set, reducer and crop exist (``where`` names their key: a flag or predict_params)."""
    if tta not in TTA:
        raise DataError(f"{where}: unknown tta '{tta}'; known: {', '.join(TTA.names())}")
    if reduce not in REDUCERS:
        raise DataError(f"{where}: unknown tta reducer '{reduce}'; known: {', '.join(REDUCERS)}")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop):
        raise DataError(f"{where}: tta crop must be a fraction in (0, 1] or a size in pixels, got {crop!r}")
