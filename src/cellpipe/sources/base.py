"""The input-adapter contract: files -> one sample table, one sample -> an H x W x C array.

Sample table (one row per sample; extra columns of the input are kept):

    id      unique sample id (str)
    split   train | valid | test  (the input's own spelling is mapped by the adapter)
    label   class name (str); empty for unlabelled rows. Multi-label / hierarchy targets
            keep their raw label text here and decode it in their task (next layer up)
    group   grouping for folds (experiment, patient, source folder...); defaults to id

Images are found through columns the adapter adds (a path, one path per channel, or
plate/well coordinates). ``load(row, site, channels)`` returns 8-bit units (uint8 as stored, else float32)
(0..255; see core.images for the rescale rule of deeper images). Sites are the views of
one sample (RxRx1 sites, Phenix fields); adapters without them have the single site 1.
"""
import inspect
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from cellpipe.core import illumination as illum
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.images import read_image, to_8bit_units
from cellpipe.core.tables import read_table

SPLITS = ("train", "valid", "test")
TABLE_COLUMNS = ["id", "split", "label", "group"]
# a default montage palette for sources without their own: (RGB colour, 8-bit window max)
PALETTE = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0),
           (255, 128, 0), (128, 0, 255)]
RGB = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


class Source:
    """Base of every adapter. Subclasses set ``name`` and implement ``catalog`` and ``image_files``."""

    name = ""
    # plate-based sources: columns that identify a plate, and the well column (plate maps, assignment)
    plate_columns: Tuple[str, ...] = ()
    well_column: Optional[str] = None
    # normalisation levels besides image / dataset / none: level name -> grouping columns
    levels: Dict[str, List[str]] = {"group": ["group"]}
    # True: image_files gives one single-channel file per requested channel; False: one file per sample
    per_channel_files = False
    # data_params/illumination (set by make_source): flat fields per plate and channel, applied at load
    illumination: Optional[illum.IlluminationSet] = None

    def __init__(self, root, rescale: Optional[dict] = None, **params):
        self.root = Path(root)
        self.rescale = rescale
        self._catalog: Optional[pd.DataFrame] = None
        if params:
            raise ConfigError(f"source '{self.name}' takes no data_params/source_params {sorted(params)}")

    # ---------------------------------------------------------------- tables
    def catalog(self) -> pd.DataFrame:
        """Every sample of the input (all splits); cached."""
        if self._catalog is None:
            self._catalog = finish_table(self.build_catalog(), self.describe())
        return self._catalog

    def build_catalog(self) -> pd.DataFrame:
        raise NotImplementedError

    def describe(self) -> str:
        return str(self.root)

    def split(self, name: str, csv=None) -> pd.DataFrame:
        """Rows of split ``name``; with ``csv`` (a fold file listing ``id``), exactly those rows."""
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}'; known: {list(SPLITS)}")
        table = self.catalog()
        if csv is None:
            return table[table["split"] == name].reset_index(drop=True)
        ids = read_table(csv, ["id"])["id"].astype(str)
        index = pd.Index(table["id"])
        pos = index.get_indexer(ids)
        if (pos < 0).any():
            raise DataError(f"{csv}: id {ids[pos < 0].iloc[0]!r} is not a sample of {self.describe()} "
                            f"({int((pos < 0).sum())} unknown)")
        return table.iloc[pos].reset_index(drop=True).assign(split=name)

    # ---------------------------------------------------------------- images
    def label_channels(self) -> List[int]:
        """Channels (1-based) that alone carry the labels (HPA: the protein stain): an augmentation
        that drops one of them deletes the sample's evidence (see data.transforms)."""
        return []

    @property
    def channel_names(self) -> List[str]:
        raise NotImplementedError

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @property
    def sites(self) -> List[int]:
        return [1]

    def colours(self) -> List[Tuple[Tuple[int, int, int], float]]:
        """(RGB, 8-bit window max) per channel, for montages: three channels are a colour photo's
        red, green and blue (files decode in RGB order); others take the palette."""
        if self.n_channels == 3:
            return [(RGB[i], 255.0) for i in range(3)]
        return [(PALETTE[i % len(PALETTE)], 255.0) for i in range(self.n_channels)]

    def image_files(self, row, site: int, channels: Sequence[int]) -> List[Path]:
        """The files that hold ``channels`` of ``row``'s ``site`` (one per channel, or one shared)."""
        raise NotImplementedError

    def load(self, row, site: int, channels: Sequence[int]) -> np.ndarray:
        """H x W x len(channels): uint8 as stored, other depths as float32 in 8-bit units."""
        return np.stack(self.load_planes(row, site, channels), axis=-1)

    def read_arrays(self, row, site: int, channels: Sequence[int]) -> Tuple[List[np.ndarray], List]:
        """(the decoded files of ``row``'s ``site`` in their own dtype, their names for messages): one
        per channel, or the one file of the sample. Sources whose images are already in memory
        override this."""
        files = self.image_files(row, site, channels)
        files = files if self.per_channel_files else files[:1]
        return [read_image(f) for f in files], files

    def illumination_functions(self, row, channels: Sequence[int]) -> Optional[List[np.ndarray]]:
        """The flat field of each of ``channels`` on ``row``'s plate (None for a channel without one), or
        None (no correction)."""
        if self.illumination is None:
            return None
        if not self.plate_columns:
            raise ConfigError(f"data_params/illumination needs plates; source '{self.name}' has none")
        plate, names = illum.plate_key(row, self.plate_columns), self.channel_names
        return [self.illumination.function(plate, names[c - 1]) for c in channels]

    def present_sites(self, row, sites: Sequence[int]) -> List[int]:
        """The ``sites`` whose image files exist for ``row`` (a well may lack one: a failed acquisition)."""
        channels = list(range(1, self.n_channels + 1))
        return [s for s in sites if all(Path(f).exists() for f in self.image_files(row, s, channels))]

    def cache_key(self, row, site: int) -> Optional[str]:
        """A site's key in the image caches; None: its first file's path (unique per site, except for
        sources whose samples share one file)."""
        return None

    def pixel_inputs(self) -> List[Path]:
        """Files besides the images whose content changes the loaded pixels (a packed cache's fingerprint)."""
        return self.illumination.inputs() if self.illumination is not None else []

    def load_planes(self, row, site: int, channels: Sequence[int]) -> List[np.ndarray]:
        """The same as ``load``, one H x W plane per channel (what the loader normalises plane by
        plane; 8-bit files of one channel each come back as decoded, without a copy)."""
        arrays, files = self.read_arrays(row, site, channels)
        flat = self.illumination_functions(row, channels)
        if not self.per_channel_files:
            img = arrays[0]
            if img.shape[-1] != self.n_channels:
                raise DataError(f"{files[0]} has {img.shape[-1]} channel(s); {self.describe()} "
                                f"declares {self.n_channels} ({', '.join(self.channel_names)})")
            img = img[..., [c - 1 for c in channels]]
            if flat is not None:
                img = np.stack([img[..., i] if f is None else illum.correct(img[..., i], f, files[0])
                                for i, f in enumerate(flat)], axis=-1)
        else:
            planes = arrays
            for f, p in zip(files, planes):
                if p.shape[-1] != 1:
                    raise DataError(f"{f} has {p.shape[-1]} channels; one file per channel needs single-channel files")
            if flat is not None:
                planes = [p if f is None else illum.correct(p[..., 0], f, name)[..., None]
                          for p, f, name in zip(planes, flat, files)]
            shapes = {p.shape[:2] for p in planes}
            if len(shapes) != 1:
                raise DataError(f"channels of sample {row['id']} site {site} differ in size: {sorted(shapes)} "
                                f"(files {[str(f) for f in files]})")
            if all(p.dtype == np.uint8 for p in planes):
                return [p[..., 0] for p in planes]
            img = np.concatenate(planes, axis=-1)
        img = to_8bit_units(img, self.rescale, files[0], channels)
        return [img[..., i] for i in range(img.shape[-1])]

    @staticmethod
    def submission(table: pd.DataFrame, hits: np.ndarray, labels) -> pd.DataFrame:
        """A multi-label submission: per row of ``table`` the class names of its ``hits`` (0/1 row)."""
        names = np.asarray(labels.classes, dtype=object)
        sep = labels.sep if labels.sep.strip() else " "
        return pd.DataFrame({"id": table["id"].to_numpy(), "pred": [sep.join(names[np.asarray(r, bool)]) for r in hits]})

    def stats_table(self) -> Optional[pd.DataFrame]:
        """Precomputed per (id, site, channel) mean/std, if the input ships them (RxRx1's pixel_stats)."""
        return None

    def check_channels(self, channels) -> List[int]:
        """``auto`` -> every channel; else a 1-based subset, each once."""
        n = self.n_channels
        if channels == "auto" or channels is None:
            return list(range(1, n + 1))
        return check_channel_list(channels, n, f"{self.name} ({', '.join(self.channel_names)})")

    def check_sites(self, sites, key: str) -> List[int]:
        if sites == "auto" or sites is None:
            return list(self.sites)
        if not isinstance(sites, (list, tuple)) or not sites or any(s not in self.sites for s in sites):
            raise ConfigError(f"config key '{key}' must be 'auto' or a non-empty list of {self.sites}, got {sites!r}")
        return [int(s) for s in sites]


def check_channel_list(channels, n: int, what: str = "") -> List[int]:
    """A non-empty list of distinct 1-based channel numbers up to ``n``."""
    if isinstance(channels, (int, str)) or not len(channels):
        raise DataError(f"channels must be 'auto' or a non-empty list of 1-{n}, got {channels!r}")
    out = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 1 <= c <= n:
            raise DataError(f"channel {c!r} is outside 1-{n} of {what} (channels={list(channels)})")
        if c in out:
            raise DataError(f"channel {c} is listed twice (channels={list(channels)})")
        out.append(int(c))
    return out


def finish_table(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check and order a sample table: the standard columns first, ids unique, splits known."""
    df = df.copy()
    if "group" not in df.columns:
        df["group"] = df["id"]
    if "label" not in df.columns:
        df["label"] = None
    missing = [c for c in ("id", "split") if c not in df.columns]
    if missing:
        raise DataError(f"{where}: sample table lacks {missing}")
    df["id"] = df["id"].astype(str)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{where}: sample id {dup.iloc[0]!r} appears {int((df['id'] == dup.iloc[0]).sum())} times")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        raise DataError(f"{where}: unknown split value {df.loc[bad, 'split'].iloc[0]!r}; known: {list(SPLITS)}")
    labelled = (df["label"].notna() & (df["label"].astype(str).str.strip() != "")).to_numpy()
    df["label"] = pd.Series([label_text(v) if ok else None for v, ok in zip(df["label"], labelled)],
                            index=df.index, dtype=object)
    if len(df) == 0:
        raise DataError(f"{where}: no samples found")
    order = TABLE_COLUMNS + [c for c in df.columns if c not in TABLE_COLUMNS]
    return df[order].reset_index(drop=True)


def label_text(value) -> str:
    """A label as text; integral floats (pandas' NaN-holding int columns) lose their '.0'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def map_split_values(values: pd.Series, mapping: Dict[str, str], where: str) -> pd.Series:
    """The input's split spelling (e.g. TRAIN/VAL/TEST) -> train/valid/test; unknown -> DataError."""
    key = values.astype(str).str.strip()
    out = key.map(mapping)
    if out.isna().any():
        raise DataError(f"{where}: unknown split value {key[out.isna()].iloc[0]!r}; known: {sorted(mapping)}")
    return out


PLATE_MAP_WELL = ("well", "Metadata_Well", "well_position", "Metadata_well_position")
PLATE_MAP_PLATE = ("plate", "Metadata_Plate")
SPLIT_SPELLING = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "validation": "valid",
                  "test": "test", "TRAIN": "train", "VAL": "valid", "TEST": "test"}


def join_plate_map(table: pd.DataFrame, path: Path, label_column: str = "label") -> pd.DataFrame:
    """Labels (and any other column) of a plate map joined onto a table of wells (``plate``, ``well``):
    on plate and well when the map has a plate column, else on the well (one layout for every plate).
    Wells the map lacks stay unlabelled; a ``split`` column is mapped to train/valid/test, and wells
    without one train when labelled and are test otherwise."""
    pm = read_table(path, text=PLATE_MAP_WELL + PLATE_MAP_PLATE)
    well = next((c for c in PLATE_MAP_WELL if c in pm.columns), None)
    if well is None:
        raise DataError(f"{path} has no well column (one of {list(PLATE_MAP_WELL)}); it has {list(pm.columns)}")
    if label_column not in pm.columns:
        raise DataError(f"{path} has no label column '{label_column}'; it has {list(pm.columns)}")
    plate = next((c for c in PLATE_MAP_PLATE if c in pm.columns), None)
    keys = ["well"] + (["plate"] if plate else [])
    pm = pm.rename(columns={well: "well", **({plate: "plate"} if plate else {}), label_column: "label"})
    pm["well"] = pm["well"].astype(str)
    if plate:
        pm["plate"] = pm["plate"].astype(str)
    dup = pm.duplicated(keys)
    if dup.any():
        raise DataError(f"{path}: {dict(pm.loc[dup, keys].iloc[0])} is listed twice")
    if "split" in pm.columns:
        pm["split"] = map_split_values(pm["split"], SPLIT_SPELLING, f"{path} column 'split'")
    table = table.drop(columns=[c for c in ("label", "split") if c in table.columns and c in pm.columns])
    pm = pm[[c for c in pm.columns if c in keys or c not in table.columns]]
    out = table.merge(pm, on=keys, how="left")
    default = np.where(out["label"].notna(), "train", "test")  # the map's own split where it gives one
    out["split"] = out["split"].where(out["split"].notna(), default) if "split" in out.columns else default
    return out


def accepts(cls, params: dict, name: str) -> None:
    """Raise ConfigError naming the source_params key ``cls.__init__`` does not take."""
    sig = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(params) - set(sig))
    if unknown:
        accepted = [p for p in sig if p not in ("self", "root", "rescale", "params")]
        raise ConfigError(f"source '{name}' has no data_params/source_params {unknown}; accepted: {accepted}")
