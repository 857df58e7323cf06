"""A Dataset over any source's sample table: load, resize, normalise, augment.

Train mode draws one random site per call (features C x H x W); eval mode
returns every site of ``sites`` stacked (S x C x H x W), so validation and
prediction are deterministic and can average the sites' logits.
"""
import logging
import random
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cellpipe.core.errors import DataError
from cellpipe.core.images import resize_planes
from cellpipe.data.transforms import reseed

log = logging.getLogger(__name__)


class SampleDataset(Dataset):
    """Rows of a sample table and their targets -> {"features", "targets", "index"}."""

    def __init__(self, table: pd.DataFrame, source, channels: Sequence[int], sites: Sequence[int],
                 image_size: int, normalizer, transforms=None, train: bool = True, targets=None,
                 context: Optional[Tuple[str, Sequence[str]]] = None, where: str = "sample table", cache=None):
        self.table = table.reset_index(drop=True)
        if targets is None:
            targets = self.table["target"].to_numpy() if "target" in self.table.columns else np.full(len(table), -1)
        # one index per row (single label), a 0/1 row (multi-label) or one index per level (hierarchy)
        self.targets = np.asarray(targets)
        if len(self.targets) != len(self.table):
            raise ValueError(f"{len(self.targets)} targets for {len(self.table)} rows")
        if self.targets.ndim == 1:
            self.table["target"] = self.targets
        self.rows = self.table.to_dict("records")
        self.source = source
        self.channels = list(channels)
        self.sites = [int(s) for s in sites]
        self.image_size = int(image_size)
        self.normalizer = normalizer
        self.transforms = transforms
        self.train = train
        self.context = context
        self.cache = cache  # data.cache.PackedImages or None
        self.where = where  # for messages: the split and its fold file
        self.context_codes = context_codes(self.table, *context, where) if context else None

    def __len__(self):
        return len(self.rows)

    def load(self, row, site, out: Optional[np.ndarray] = None) -> np.ndarray:
        """One site as C x H x W float32 (into ``out`` when given)."""
        img = None if self.cache is None else self.cache.read(self.source, row, site, self.channels)
        if img is None:
            img = resize_planes(self.source.load_planes(row, site, self.channels), self.image_size)
        if self.transforms is None:
            return self.normalizer.chw(img, row, site, self.channels, out)
        x = self.normalizer.chw(img, row, site, self.channels)  # albumentations works on H x W x C
        x = self.transforms(image=x.transpose(1, 2, 0))["image"].transpose(2, 0, 1)
        if out is None:
            return np.ascontiguousarray(x, np.float32)
        out[...] = x
        return out

    def __getitem__(self, index):
        pick = random
        if isinstance(index, tuple):  # (index, seed) from data.sampling.SeededBatches
            index, seed = index
            pick = random.Random(seed)
            reseed(self.transforms, seed)
        row = self.rows[index]
        if self.train:
            x = self.load(row, pick.choice(self.sites))
        else:
            x = np.empty((len(self.sites), len(self.channels), self.image_size, self.image_size), np.float32)
            for i, s in enumerate(self.sites):  # each site written in place
                self.load(row, s, x[i])
        target = self.targets[index]
        target = int(target) if self.targets.ndim == 1 else torch.as_tensor(target)
        item = {"features": torch.from_numpy(x), "targets": target, "index": index}
        if self.context_codes is not None:
            item["context"] = int(self.context_codes[index])
        return item


def context_codes(table: pd.DataFrame, column: str, values: Sequence[str], where: str = "sample table") -> np.ndarray:
    """Index of each row's ``column`` value in ``values`` (the model's context vocabulary)."""
    if column not in table.columns:
        raise DataError(f"{where}: model_params/context_column '{column}' is not a column; it has {list(table.columns)}")
    index = {str(v): i for i, v in enumerate(values)}
    cells = table[column].astype(str)
    unknown = sorted(set(cells) - set(index))
    if unknown:
        raise DataError(f"{where}: column '{column}' holds {unknown[:5]}, which the model never saw "
                        f"(it knows {list(values)})")
    return cells.map(index).to_numpy(dtype=np.int64)


def verify_files(table: pd.DataFrame, source, channels: Sequence[int], sites: Sequence[int], where="",
                 cache=None) -> None:
    """Fail before training, naming the first missing image, rather than mid-epoch (sites in the
    packed cache need no files)."""
    missing, total = [], 0
    for row in table.to_dict("records"):
        for site in sites:
            if cache is not None and cache.has(source, row, site):
                continue
            for path in dict.fromkeys(source.image_files(row, site, channels)):
                total += 1
                if not path.is_file():
                    missing.append(path)
    if missing:
        raise DataError(f"image file not found: {missing[0]} ({len(missing)} missing of {total} for {where})")


def check_channel_count(table: pd.DataFrame, source, channels, where="") -> None:
    """Every sample's images must have the same channel count and size: compare a few to the first."""
    if table.empty:
        return
    rows = table.to_dict("records")
    picks = sorted({0, len(rows) // 2, len(rows) - 1})
    first = None
    for i in picks:
        shape = source.load(rows[i], source.sites[0], channels).shape[-1:]
        if first is None:
            first = (rows[i]["id"], shape)
        elif shape != first[1]:
            raise DataError(f"{where}: sample {rows[i]['id']} has {shape[0]} channels but {first[0]} has "
                            f"{first[1][0]}")


def class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency, scaled to mean 1 over the classes present (balancing)."""
    counts = np.bincount(targets[targets >= 0], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    present = counts > 0
    return w / w[present].mean()


def sample_weights(targets: np.ndarray, n_classes: int) -> List[float]:
    """Per-sample weights of a class-balanced sampler."""
    return class_weights(targets, n_classes)[targets].tolist()
