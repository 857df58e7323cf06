"""From ``data_params`` to datasets: source, splits, filters, label map, normaliser, transforms.

``prepare_training`` also resolves the config's ``auto`` values (channels, sites,
num_classes, n_channels) in place, so the run's saved config.yml holds real numbers.
"""
import logging
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.data.dataset import SampleDataset, check_channel_count, verify_files
from cellpipe.data.normalize import Normalizer, make_normalizer
from cellpipe.data.transforms import build_transforms, channel_dropout_warnings
from cellpipe.sources import make_source
from cellpipe.tasks import build_task
from cellpipe.tasks.base import Task
from cellpipe.tasks.single import SingleLabel

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    source: object
    train: SampleDataset
    valid: SampleDataset
    labels: Task
    normalizer: Normalizer


def apply_filter(table: pd.DataFrame, spec: Optional[dict], where: str) -> pd.DataFrame:
    """Keep rows whose columns take the listed values (``data_params/filter: {column: [values]}``)."""
    for column, values in (spec or {}).items():
        if column not in table.columns:
            raise DataError(f"{where}: data_params/filter names column '{column}', which the sample table "
                            f"lacks; it has {list(table.columns)}")
        values = values if isinstance(values, (list, tuple)) else [values]
        table = table[table[column].astype(str).isin([str(v) for v in values])]
    return table.reset_index(drop=True)


def split_table(source, dp: dict, name: str, csv=None) -> pd.DataFrame:
    table = source.split(name, csv if csv is not None else dp.get(f"{name}_csv"))
    return apply_filter(table, dp.get("filter"), f"{source.describe()} {name} split")


def resolve(cfg: dict, source) -> None:
    """Fill channels, sites and n_channels from the source (``auto``), check them against it."""
    dp, mp = cfg["data_params"], cfg["model_params"]
    try:
        dp["channels"] = source.check_channels(dp["channels"])
    except DataError as e:
        raise ConfigError(f"config key 'data_params/channels': {e}") from None
    for key in ("train_sites", "valid_sites"):
        dp[key] = source.check_sites(dp[key], f"data_params/{key}")
    n = len(dp["channels"])
    if mp.get("n_channels") in (None, "auto"):
        mp["n_channels"] = n
    elif mp["n_channels"] != n:
        raise ConfigError(f"config key 'model_params/n_channels'={mp['n_channels']} does not match "
                          f"data_params/channels={dp['channels']} ({n} channels)")


def context_spec(mp: dict):
    """(column, values) of ``model_params/context_column``, or None."""
    return (mp["context_column"], mp["context_values"]) if mp.get("context_column") else None


def resolve_context(mp: dict, train: pd.DataFrame, where: str) -> None:
    """Fill ``model_params/context_values`` (auto) with the training table's values of the context column."""
    column = mp.get("context_column")
    if not column:
        return
    if column not in train.columns:
        raise ConfigError(f"config key 'model_params/context_column'={column!r}: {where} has no such column; "
                          f"it has {list(train.columns)}")
    if mp.get("context_values") in (None, "auto"):
        mp["context_values"] = sorted(train[column].astype(str).unique().tolist())


_PACKED = {}


def packed_images(dp: dict, source):
    """The image cache of ``data_params/cache``: a packed folder (packed or refreshed on first use),
    ``memory`` (decoded images kept in RAM), or None."""
    if not dp.get("cache"):
        return None
    from cellpipe.data.cache import MEMORY, MemoryImages, PackedImages, pack

    # everything that changes the stored pixels: the adapter and its settings, the rescale rule, the size
    key = (source.name, str(source.root), repr(dp.get("source_params")), repr(dp.get("rescale")),
           repr(dp.get("illumination")), str(dp["cache"]),
           int(dp["image_size"]))
    if key not in _PACKED:
        _PACKED[key] = (MemoryImages(dp["image_size"], dp.get("cache_max_gb", 4.0)) if dp["cache"] == MEMORY else
                        PackedImages(pack(source, dp["cache"], dp["image_size"])))
    return _PACKED[key]


def make_eval_dataset(dp: dict, source, table: pd.DataFrame, labels: Task, normalizer: Normalizer,
                      where: str, context=None) -> SampleDataset:
    """A deterministic (all sites, no augmentation) dataset of ``table``; unlabelled rows get target -1."""
    return _dataset(dp, source, table, labels, normalizer, where, context, train=False)


def train_dataset(dp: dict, source, table: pd.DataFrame, labels: Task, normalizer: Normalizer, where: str,
                  seed: Optional[int], context=None) -> SampleDataset:
    """The augmented one-random-site-per-draw dataset of ``table`` (labelled rows only)."""
    return _dataset(dp, source, table, labels, normalizer, where, context, train=True, seed=seed)


def _dataset(dp: dict, source, table: pd.DataFrame, labels: Task, normalizer: Normalizer, where: str,
             context, train: bool, seed: Optional[int] = None) -> SampleDataset:
    split = "train" if train else "valid"
    sites = dp[f"{split}_sites"]
    targets = labels.encode(table, where)
    cache = packed_images(dp, source)
    if dp.get("check_files", True):
        verify_files(table, source, dp["channels"], sites, where, cache)  # sites in the cache need no files
    augs = (dp.get("augmentations") or {}).get(split)
    return SampleDataset(table, source, dp["channels"], sites, dp["image_size"], normalizer,
                         build_transforms(augs, seed), train=train, targets=targets, context=context,
                         where=where, cache=cache)


def augmentation_warnings(dp: dict, source) -> list:
    """Start-up warnings of training augmentations that can remove a sample's informative channels
    (a ConfigError for one that can remove all of them)."""
    specs = (dp.get("augmentations") or {}).get("train") or []
    if not any(s.get("transform") == "ChannelDropout" for s in specs):
        return []  # (channel names may need an image read)
    labelled = source.label_channels()
    names = dict(enumerate(source.channel_names, start=1)) if labelled else {}
    return channel_dropout_warnings(specs, dp["channels"], labelled, names)


def prepare_training(cfg: dict, workers: int = 4) -> Prepared:
    """Source, train/valid datasets, label map and normaliser of a training run."""
    dp, mp = cfg["data_params"], cfg["model_params"]
    source = make_source(dp)
    resolve(cfg, source)
    train = split_table(source, dp, "train")
    valid = split_table(source, dp, "valid")
    for name, t in (("train", train), ("valid", valid)):
        if t.empty:
            raise DataError(f"{source.describe()}: the {name} split is empty (check the split column, "
                            f"data_params/{name}_csv and data_params/filter)")
    unlabelled = train["label"].isna()
    if unlabelled.any():
        log.warning("%d training sample(s) without a label are left out", int(unlabelled.sum()))
        train = train[~unlabelled].reset_index(drop=True)
    fixed = source.fixed_classes(mp["num_classes"]) if hasattr(source, "fixed_classes") else None
    labels = build_task(train, dp, fixed)
    if mp["num_classes"] in (None, "auto"):
        mp["num_classes"] = labels.n_outputs
    elif mp["num_classes"] != labels.n_outputs:
        raise ConfigError(f"config key 'model_params/num_classes'={mp['num_classes']} but the training split has "
                          f"{labels.describe_outputs()} "
                          f"({', '.join(labels.classes[:8])}...); "
                          f"set it to auto")
    where = f"{source.describe()} train split" + (f" ({dp['train_csv']})" if dp.get("train_csv") else "")
    if dp.get("check_files", True):
        # every file first, so that a missing one is named before a channel-count mismatch
        verify_files(train, source, dp["channels"], dp["train_sites"], where)
        check_channel_count(train, source, dp["channels"], where)
    normalizer = make_normalizer(dp, source, [train, valid], workers=workers)
    resolve_context(mp, train, where)
    context = context_spec(mp)
    train_ds = train_dataset(dict(dp, check_files=False), source, train, labels, normalizer, where, cfg["seed"],
                             context)
    valid_ds = make_eval_dataset(dp, source, valid, labels, normalizer, f"{source.describe()} valid split", context)
    labels.check_training_targets(train_ds.targets, log)
    return Prepared(source, train_ds, valid_ds, labels, normalizer)


def load_normalizer(dp: dict, source=None) -> Normalizer:
    """The normaliser of ``dp`` fitted on the whole catalog of its source (scripts and benchmarks)."""
    source = source or make_source(dp)
    return make_normalizer(dp, source, [source.catalog()])


def make_dataset(dp: dict, split: str, num_classes: Optional[int] = None, normalizer: Optional[Normalizer] = None,
                 csv=None, table: Optional[str] = None, seed: Optional[int] = None) -> SampleDataset:
    """One split's dataset straight from ``data_params`` (``table`` overrides rxrx1's table kind,
    source_params/dataset; ``test`` reads the test split). Labels map to ``range(num_classes)`` for
    sources with fixed classes, else to the table's own sorted labels."""
    if table is not None:
        dp = dict(dp, source_params={**(dp.get("source_params") or {}),
                                     "dataset": "non_pseudo" if table == "test" else table})
    source = make_source(dp)
    dp["channels"] = source.check_channels(dp["channels"])
    for key in ("train_sites", "valid_sites"):
        dp[key] = source.check_sites(dp[key], f"data_params/{key}")
    rows = split_table(source, dp, "test" if table == "test" else split, csv)
    fixed = source.fixed_classes(num_classes) if hasattr(source, "fixed_classes") and num_classes else None
    labels = build_task(rows, dp, fixed) if rows["label"].notna().any() else SingleLabel(["?"])
    normalizer = normalizer or make_normalizer(dp, source, [rows])
    where = f"{csv or dp.get(f'{split}_csv') or source.describe()}"
    if split != "train":
        return make_eval_dataset(dp, source, rows, labels, normalizer, where)
    return train_dataset(dp, source, rows, labels, normalizer, where, seed)
