"""Illumination functions (flat fields) and their application to raw planes at load.

A function is an H x W float array with mean 1 (a plate's channel's smoothed mean image, as
CellProfiler's CorrectIlluminationCalculate and DeepProfiler compute it); a plane is corrected
by dividing by it, in its own dtype (rounded and clipped to the dtype's range), so that every
rescale rule and the packed cache see corrected pixels. A folder written by
src/prep_illumination.py holds ``illumination.csv`` (plate, channel, file) and one ``.npy`` per
plate and channel; ``data_params/illumination`` names that folder.
"""
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table

MANIFEST = "illumination.csv"


def read_function(path: Path) -> np.ndarray:
    """One function: a 2-D array of positive finite floats."""
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read illumination function {path}: {e}") from None
    if f.ndim != 2 or not np.issubdtype(f.dtype, np.floating) or not np.isfinite(f).all() or f.min() <= 0:
        raise DataError(f"{path}: an illumination function must be a 2-D array of positive finite floats "
                        f"(got {f.dtype} {f.shape})")
    return f.astype(np.float32)


def correct(plane: np.ndarray, function: np.ndarray, where) -> np.ndarray:
    """``plane`` (H x W, any dtype) / ``function``, back in the plane's dtype."""
    if plane.shape != function.shape:
        raise DataError(f"{where}: image is {plane.shape[1]}x{plane.shape[0]} but its illumination function is "
                        f"{function.shape[1]}x{function.shape[0]}")
    out = plane.astype(np.float32) / function
    if np.issubdtype(plane.dtype, np.integer):
        info = np.iinfo(plane.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(plane.dtype)
    return out.astype(plane.dtype)


def plate_key(row, columns) -> str:
    """The plate a row belongs to, as the manifest spells it (RxRx1: ``HEPG2-01_1``)."""
    return "_".join(str(row[c]) for c in columns)


class IlluminationSet:
    """The functions of one folder (``illumination.csv``), read on first use."""

    def __init__(self, folder):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise DataError(f"data_params/illumination: {manifest} not found (write it with src/prep_illumination.py)")
        table = read_table(manifest, ["plate", "channel", "file"], text=["plate", "channel", "file"])
        self.files: Dict[Tuple[str, str], Path] = {
            (str(r.plate), str(r.channel)): self.folder / str(r.file) for r in table.itertuples()}
        self._cache: Dict[Tuple[str, str], np.ndarray] = {}

    def function(self, plate: str, channel: str) -> np.ndarray:
        key = (str(plate), str(channel))
        if key not in self._cache:
            if key not in self.files:
                raise DataError(f"{self.folder / MANIFEST}: no illumination function for plate {plate!r} "
                                f"channel {channel!r} (plates: {sorted({p for p, _ in self.files})[:5]}...)")
            self._cache[key] = read_function(self.files[key])
        return self._cache[key]

    def inputs(self):
        """The files whose content changes the corrected pixels (a packed cache's fingerprint)."""
        return [self.folder / MANIFEST, *sorted(set(self.files.values()))]


def load(spec, root: Optional[Path] = None) -> Optional[IlluminationSet]:
    """``data_params/illumination``: null, or the folder of an illumination.csv (relative: to the data root)."""
    if not spec:
        return None
    folder = Path(spec)
    if not folder.is_absolute() and root is not None and not folder.exists():
        folder = Path(root) / folder
    return IlluminationSet(folder)
