"""Per-channel (x - mean) / std at a chosen granularity, in 8-bit units.

    none        x / 255
    image       each site's own statistics (the source's precomputed table when it ships one,
                e.g. RxRx1's pixel_stats.csv, else computed from the image itself)
    dataset     one mean/std per channel over the training split (seed 000's table per model);
                stored with the checkpoint and reused at prediction
    <level>     pooled over a group of samples, e.g. plate / experiment (RxRx1) or group (any
                source): removes the batch effect of the group. Statistics of the rows at hand
                are used, so test plates are normalised by their own statistics.
"""
import logging
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.data.stats import site_stats

log = logging.getLogger(__name__)
FIXED_MODES = ("none", "image", "dataset")


def modes(source) -> List[str]:
    """Normalisation modes a source supports."""
    return list(FIXED_MODES) + sorted(source.levels)


def pooled(stats: pd.DataFrame, keys: List[str]) -> pd.DataFrame:
    """Mean and std per (keys, channel), pooling second moments so a group's std covers
    within- and between-site spread."""
    stats = stats.assign(sq=stats["std"] ** 2 + stats["mean"] ** 2)
    grouped = stats.groupby(keys + ["channel"] if keys else ["channel"])[["mean", "sq"]].mean()
    grouped["std"] = np.sqrt(np.maximum(grouped["sq"] - grouped["mean"] ** 2, 0.0))
    return grouped[["mean", "std"]]


class Normalizer:
    """Looks up (mean, std) per channel for a row and site; see the module doc for the modes."""

    def __init__(self, mode: str, keys: Sequence[str] = (), min_std: float = 1.0, source: str = ""):
        self.mode = mode
        self.keys = list(keys)
        self.min_std = float(min_std)
        self.source = source
        self.table: Dict[tuple, np.ndarray] = {}  # key -> (2, n_channels) indexed by channel - 1

    def add(self, stats: pd.DataFrame, n_channels: int) -> "Normalizer":
        """Add the pooled stats of ``stats`` (columns: keys..., channel, mean, std)."""
        grouped = pooled(stats, self.keys)
        if not self.keys:  # one mean/std per channel
            g = grouped.reindex(range(1, n_channels + 1))
            m, s = g["mean"].to_numpy(np.float32), g["std"].to_numpy(np.float32)
            self.table[()] = np.stack([m, np.maximum(s, self.min_std)])
            return self
        mean = grouped["mean"].unstack("channel").reindex(columns=range(1, n_channels + 1))
        std = grouped["std"].unstack("channel").reindex(columns=range(1, n_channels + 1))
        for key, m, s in zip(mean.index, mean.to_numpy(np.float32), std.to_numpy(np.float32)):
            key = key if isinstance(key, tuple) else (key,)
            self.table[key] = np.stack([m, np.maximum(s, self.min_std)])
        return self

    def key(self, row, site) -> tuple:
        return tuple(int(site) if k == "site" else row[k] for k in self.keys)

    def __call__(self, image: np.ndarray, row, site, channels: Sequence[int]) -> np.ndarray:
        """H x W x C normalised float32 (a view of ``chw``'s result)."""
        return self.chw(image, row, site, channels).transpose(1, 2, 0)

    def chw(self, image, row, site, channels: Sequence[int], out: Optional[np.ndarray] = None) -> np.ndarray:
        """An H x W x C image or a list of C H x W planes (uint8, or float in 8-bit units) -> C x H x W
        normalised float32, in one pass per plane: the layout change, the cast and (x - mean) / std
        together (a 256-entry lookup table for uint8), which keeps the loader near the speed of PNG
        decoding (bench/bench_speed.py). ``out``: a C x H x W float32 array to write into."""
        planes = [image[..., c] for c in range(image.shape[-1])] if isinstance(image, np.ndarray) else list(image)
        mean, std = self.mean_std(planes, row, site, channels)
        if out is None:
            out = np.empty((len(planes),) + planes[0].shape, np.float32)
        levels = np.arange(256, dtype=np.float32)
        for c, plane in enumerate(planes):
            if plane.dtype == np.uint8:
                cv2.LUT(plane, ((levels - mean[c]) / std[c]).astype(np.float32), dst=out[c])  # float32: fills out[c]
            else:
                np.subtract(plane, mean[c], out=out[c], dtype=np.float32, casting="unsafe")
                out[c] *= np.float32(1.0 / std[c])
        return out

    def mean_std(self, planes: List[np.ndarray], row, site, channels: Sequence[int]):
        """(mean, std) per channel, float32 vectors."""
        n = len(planes)
        if self.mode == "none":
            return np.zeros(n, np.float32), np.full(n, 255.0, np.float32)
        if self.mode == "image" and not self.table:  # no precomputed stats: the image's own
            return (np.array([p.mean() for p in planes], np.float32),
                    np.maximum(np.array([p.std() for p in planes], np.float32), self.min_std))
        key = self.key(row, site)
        if key not in self.table:
            raise DataError(f"{self.source} has no stats for {dict(zip(self.keys, key))}")
        ms = self.table[key][:, [c - 1 for c in channels]]
        if np.isnan(ms).any():
            raise DataError(f"{self.source} lacks some of channels {list(channels)} for {key}")
        return ms[0], ms[1]

    def state(self) -> Optional[dict]:
        """What a checkpoint must keep: the training split's stats in ``dataset`` mode."""
        if self.mode != "dataset":
            return None
        m, s = self.table[()]
        return {"mode": "dataset", "mean": m.tolist(), "std": s.tolist()}

    @classmethod
    def from_state(cls, state: dict, min_std: float = 1.0) -> "Normalizer":
        norm = cls("dataset", (), min_std, source="checkpoint")
        norm.table[()] = np.stack([np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32)])
        return norm


def _stats_for(source, tables: List[pd.DataFrame], workers: int, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Per-site stats of every row of ``tables``: the source's own table, or computed from the images."""
    rows = pd.concat(tables, ignore_index=True).drop_duplicates("id")
    given = source.stats_table()
    if given is not None and set(keys) <= set(given.columns):
        return given  # the shipped table carries its own keys (RxRx1's pixel_stats: experiment, plate...)
    if given is not None:
        missing = pd.Index(rows["id"]).difference(pd.Index(given["id"]))
        if len(missing):
            raise DataError(f"{given['source'].iloc[0]} has no stats for sample {missing[0]} "
                            f"({len(missing)} missing)")
        stats = given
    else:
        # (training checked every file before this; a profile export embeds wells from the sites they have)
        stats = site_stats(source, rows, workers=workers, desc="normalisation stats", skip_missing=True)
    info = rows.drop(columns=[c for c in ("site", "channel") if c in rows.columns])
    return stats.merge(info, on="id", how="inner", suffixes=("", "_table"))


def make_normalizer(data_params: dict, source, tables: List[pd.DataFrame], state: Optional[dict] = None,
                    workers: int = 4) -> Normalizer:
    """The normaliser ``data_params/normalization`` asks for, fitted on ``tables`` (the training
    split first); ``state`` (from a checkpoint) supplies ``dataset`` stats at prediction."""
    mode = data_params["normalization"]
    min_std = data_params.get("min_std", 1.0)
    known = modes(source)
    if mode not in known:
        raise DataError(f"config key 'data_params/normalization': unknown mode '{mode}' for source "
                        f"'{source.name}'; known: {known}")
    if mode == "none":
        return Normalizer("none")
    if mode == "dataset":
        if state is not None:
            return Normalizer.from_state(state, min_std)
        stats = _stats_for(source, tables[:1], workers)
        return Normalizer("dataset", (), min_std, source="training split").add(stats, source.n_channels)
    if mode == "image":
        given = source.stats_table()
        if given is None:
            return Normalizer("image", ["id", "site"], min_std, source=source.describe())  # per image, on the fly
        norm = Normalizer("image", ["id", "site"], min_std, source=str(given["source"].iloc[0]))
        return norm.add(_stats_for(source, tables, workers, ["id", "site"]), source.n_channels)
    keys = source.levels[mode]
    stats = _stats_for(source, tables, workers, keys)
    return Normalizer(mode, keys, min_std, source=source.describe()).add(stats, source.n_channels)
