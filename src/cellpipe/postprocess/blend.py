"""Blend prediction logits: per-run weights, checked loading, weighted averaging (the softmax is
cellpipe.tasks.base.softmax)."""
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np

from cellpipe.core.errors import DataError
from cellpipe.postprocess.collect import Run


def run_weights(runs: Sequence[Run], weights=None) -> Optional[List[float]]:
    """Per-run weights from None, a {model_name: weight} dict, or one weight per run."""
    if weights is None:
        return None
    if isinstance(weights, dict):
        unknown = sorted({r.model for r in runs} - set(weights))
        if unknown:
            raise DataError(f"weights lack model(s) {unknown}; given for {sorted(weights)}")
        return [float(weights[r.model]) for r in runs]
    weights = list(weights)
    if len(weights) != len(runs):
        raise DataError(f"{len(weights)} weights given for {len(runs)} runs; pass one per run or a dict per model")
    return [float(w) for w in weights]


def load_logits(path: Path, n_rows: Optional[int] = None) -> np.ndarray:
    """A 2-D float logits array; the row count must be ``n_rows`` when given."""
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read logits {path}: {e}") from None
    if arr.ndim != 2:
        raise DataError(f"{path} has shape {arr.shape}, expected (n_wells, n_classes)")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise DataError(f"{path} has {arr.shape[0]} rows but the table has {n_rows} wells")
    if not np.isfinite(arr).all():
        raise DataError(f"{path} contains NaN or infinite logits")
    return arr.astype(np.float32, copy=False)


def average_logits(arrays: Iterable[np.ndarray], weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Weighted mean of logit arrays (weights normalised to sum 1; None = equal).

    ``arrays`` may be a generator: they are summed one at a time, so memory holds two.
    The sum is float32 and in place: float64 is 3-6x slower on full-size arrays and
    float32 rounding is far below any logit difference that matters.
    """
    total, weight_sum, n = None, 0.0, 0
    for i, arr in enumerate(arrays):
        w = 1.0 if weights is None else float(weights[i])
        if w < 0 or not np.isfinite(w):
            raise DataError(f"weight {i} is {w}; weights must be finite and >= 0")
        arr = np.asarray(arr)
        if w != 1.0:
            arr = arr * np.float32(w)
        if total is None:
            total = np.array(arr, dtype=np.float32)  # a copy: callers' arrays stay untouched
        elif arr.shape != total.shape:
            raise DataError(f"logit array {i} has shape {arr.shape}, the first has {total.shape}")
        else:
            np.add(total, arr, out=total, casting="unsafe")
        weight_sum += w
        n += 1
    if n == 0:
        raise DataError("no logit arrays to average")
    if weights is not None and len(weights) != n:
        raise DataError(f"{len(weights)} weights given for {n} logit arrays")
    if weight_sum <= 0:
        raise DataError("weights sum to 0")
    total /= np.float32(weight_sum)
    return total
