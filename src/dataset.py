"""Datasets of multi-channel cell sites: tables, normalisation, augmentation.

A dataset is a *table* of wells (experiment, plate, well, dataset, label) plus
an image source (rxrx.load_site). The three table kinds of the seed are
registered in TABLES; new input formats register another builder.
"""
import inspect
import logging
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

import rxrx
from registry import Registry
from rxrx import DataError

log = logging.getLogger(__name__)

TABLES = Registry("dataset")
TABLE_COLUMNS = ["id_code", "experiment", "plate", "well", "dataset", "label"]


def _finish(df: pd.DataFrame, csv) -> pd.DataFrame:
    df = df.copy()
    if "id_code" not in df.columns:
        df["id_code"] = rxrx.id_codes(df)
    bad = ~df["dataset"].isin(rxrx.DATASETS)
    if bad.any():
        raise DataError(
            f"{csv}: column 'dataset' must be train or test, got {sorted(df.loc[bad, 'dataset'].astype(str).unique())}"
        )
    df["label"] = df["label"].astype(int)
    return df[TABLE_COLUMNS + [c for c in df.columns if c not in TABLE_COLUMNS]].reset_index(drop=True)


@TABLES.register("non_pseudo")
def non_pseudo_table(csv, **_) -> pd.DataFrame:
    """Fold CSVs of train.csv rows; images live under train/."""
    df = rxrx.read_csv(csv, ["experiment", "plate", "well", "sirna"])
    return _finish(df.assign(dataset="train", label=df["sirna"]), csv)


@TABLES.register("pseudo")
def pseudo_table(csv, **_) -> pd.DataFrame:
    """Train rows plus pseudo-labelled test rows; `dataset` says which folder."""
    df = rxrx.read_csv(csv, ["experiment", "plate", "well", "sirna", "dataset"])
    return _finish(df.assign(label=df["sirna"]), csv)


@TABLES.register("control")
def control_table(csv, control_offset: int = rxrx.N_TREATMENTS, **_) -> pd.DataFrame:
    """Control wells of train and test; siRNA ids from control_offset map to 0.."""
    df = rxrx.read_csv(csv, ["experiment", "plate", "well", "sirna", "dataset"])
    return _finish(df.assign(label=df["sirna"] - control_offset), csv)


@TABLES.register("test")
def test_table(csv, **_) -> pd.DataFrame:
    """Unlabelled test.csv rows (label -1), for prediction."""
    df = rxrx.read_csv(csv, ["experiment", "plate", "well"])
    return _finish(df.assign(dataset="test", label=-1), csv)


def check_labels(table: pd.DataFrame, num_classes: int, csv) -> None:
    bad = (table["label"] < 0) | (table["label"] >= num_classes)
    if bad.any():
        row = table[bad].iloc[0]
        raise DataError(
            f"{csv}: label {row['label']} of {row['id_code']} is outside 0..{num_classes - 1} "
            f"(model_params/num_classes={num_classes}; check data_params/dataset and control_offset)"
        )


class Normalizer:
    """Per-channel (x - mean) / std from pixel_stats, at the chosen granularity.

    image: each site's own stats; plate / experiment: pooled over the group, which
    removes the batch effects of a plate or experiment; none: x / 255.
    """

    LEVELS = {"image": ["id_code", "site"], "plate": ["experiment", "plate"], "experiment": ["experiment"]}

    def __init__(self, mode: str, stats: Optional[pd.DataFrame] = None, min_std: float = 1.0, source=""):
        if mode != "none" and mode not in self.LEVELS:
            raise DataError(f"unknown normalization '{mode}'; known: {sorted(self.LEVELS) + ['none']}")
        self.mode = mode
        self.min_std = float(min_std)
        self.source = source
        self.table: Dict[tuple, np.ndarray] = {}
        if mode == "none":
            return
        if stats is None:
            raise DataError(f"normalization '{mode}' needs pixel_stats")
        missing = [c for c in (*rxrx.STATS_KEYS, "mean", "std") if c not in stats.columns]
        if missing:
            raise DataError(f"{source} lacks required column(s) {missing}")
        stats = stats.copy()
        if "id_code" not in stats.columns:
            stats["id_code"] = rxrx.id_codes(stats)
        keys = self.LEVELS[mode]
        # Pool second moments so a group's std covers within- and between-site spread.
        stats["sq"] = stats["std"] ** 2 + stats["mean"] ** 2
        grouped = stats.groupby(keys + ["channel"])[["mean", "sq"]].mean()
        grouped["std"] = np.sqrt(np.maximum(grouped["sq"] - grouped["mean"] ** 2, 0.0))
        mean = grouped["mean"].unstack("channel").reindex(columns=list(rxrx.CHANNELS))
        std = grouped["std"].unstack("channel").reindex(columns=list(rxrx.CHANNELS))
        for key, m, s in zip(mean.index, mean.to_numpy(np.float32), std.to_numpy(np.float32)):
            key = key if isinstance(key, tuple) else (key,)
            self.table[key] = np.stack([m, np.maximum(s, self.min_std)])

    def key(self, row, site):
        if self.mode == "image":
            return (row["id_code"], int(site))
        if self.mode == "plate":
            return (row["experiment"], int(row["plate"]))
        return (row["experiment"],)

    def __call__(self, image: np.ndarray, row, site, channels: Sequence[int]) -> np.ndarray:
        image = image.astype(np.float32)
        if self.mode == "none":
            return image / 255.0
        key = self.key(row, site)
        if key not in self.table:
            raise DataError(f"{self.source} has no stats for {dict(zip(self.LEVELS[self.mode], key))}")
        ms = self.table[key][:, [c - 1 for c in channels]]
        if np.isnan(ms).any():
            raise DataError(f"{self.source} lacks some of channels {list(channels)} for {key}")
        return (image - ms[0]) / ms[1]


def load_normalizer(data_params: dict) -> Normalizer:
    mode = data_params["normalization"]
    if mode == "none":
        return Normalizer("none")
    from make_pixel_stats import ensure_pixel_stats

    path = ensure_pixel_stats(data_params["root"], data_params.get("pixel_stats"))
    stats = rxrx.read_csv(path, [*rxrx.STATS_KEYS, "mean", "std"])
    return Normalizer(mode, stats, data_params.get("min_std", 1.0), source=str(path))


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


class CellDataset(Dataset):
    """Rows of a well table -> {"features", "targets", "index"}.

    train mode draws one random site per call (features C x H x W); eval mode
    returns every site of ``sites`` stacked (S x C x H x W), so validation and
    prediction are deterministic and can average the sites' logits.
    """

    def __init__(self, table: pd.DataFrame, root, channels: Sequence[int], sites: Sequence[int],
                 image_size: int, normalizer: Normalizer, transforms=None, train: bool = True):
        self.table = table.reset_index(drop=True)
        self.rows = self.table.to_dict("records")
        self.root = Path(root)
        self.channels = rxrx.check_channels(channels)
        self.sites = [int(s) for s in sites]
        self.image_size = int(image_size)
        self.normalizer = normalizer
        self.transforms = transforms
        self.train = train

    def __len__(self):
        return len(self.rows)

    def load(self, row, site) -> np.ndarray:
        img = rxrx.load_site(self.root, row["dataset"], row["experiment"], row["plate"], row["well"], site, self.channels)
        if img.shape[0] != self.image_size or img.shape[1] != self.image_size:
            img = cv2.resize(img, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
            if img.ndim == 2:  # cv2 drops a trailing axis of size 1
                img = img[..., None]
        img = self.normalizer(img, row, site, self.channels)
        if self.transforms is not None:
            img = self.transforms(image=img)["image"]
        return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)

    def __getitem__(self, index):
        row = self.rows[index]
        if self.train:
            x = self.load(row, random.choice(self.sites))
        else:
            x = np.stack([self.load(row, s) for s in self.sites])
        return {"features": torch.from_numpy(x), "targets": int(row["label"]), "index": index}


def verify_files(table: pd.DataFrame, root, channels: Sequence[int], sites: Sequence[int], source="") -> None:
    """Fail before training, naming the first missing image, rather than mid-epoch."""
    missing = []
    for row in table[["dataset", "experiment", "plate", "well"]].itertuples(index=False):
        for site in sites:
            for c in channels:
                path = rxrx.image_path(root, row.dataset, row.experiment, row.plate, row.well, site, c)
                if not path.is_file():
                    missing.append(path)
    if missing:
        raise DataError(f"image file not found: {missing[0]} ({len(missing)} missing for {source})")


def make_dataset(data_params: dict, split: str, num_classes: Optional[int] = None,
                 normalizer: Optional[Normalizer] = None, csv=None, kind=None, seed: Optional[int] = None) -> CellDataset:
    """Build the train/valid/test dataset that ``data_params`` describes."""
    train = split == "train"
    channels = rxrx.check_channels(data_params["channels"])
    csv = csv or data_params[f"{split}_csv"]
    kind = kind or data_params["dataset"]
    table = TABLES.build(kind, csv=csv, control_offset=data_params.get("control_offset", rxrx.N_TREATMENTS))
    if num_classes is not None and kind != "test":
        check_labels(table, num_classes, csv)
    sites = data_params["train_sites"] if train else data_params["valid_sites"]
    if data_params.get("check_files", True):
        verify_files(table, data_params["root"], channels, sites, source=csv)
    augs = (data_params.get("augmentations") or {}).get("train" if train else "valid")
    return CellDataset(
        table,
        root=data_params["root"],
        channels=channels,
        sites=sites,
        image_size=data_params["image_size"],
        normalizer=normalizer or load_normalizer(data_params),
        transforms=build_transforms(augs, seed),
        train=train,
    )


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
