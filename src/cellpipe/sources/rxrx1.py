"""RxRx1 as Kaggle shipped it (2019): CSV tables, image paths, controls, the six stains.

    {root}/train.csv test.csv train_controls.csv test_controls.csv [pixel_stats.csv]
    {root}/{train|test}/{experiment}/Plate{p}/{well}_s{site}_w{channel}.png

A sample is a well; its two sites are views. The part of the pipeline picks the
table kind (``data_params/source_params/dataset``): ``control`` (control wells of train and test,
siRNA ids from ``control_offset`` mapped to 0..), ``non_pseudo`` (fold CSVs of
train.csv), ``pseudo`` (fold CSVs that add pseudo-labelled test rows with a
``dataset`` column) and ``test`` (test.csv, unlabelled).
"""
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.images import read_image
from cellpipe.core.registry import Registry
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source, check_channel_list, finish_table

CHANNELS = (1, 2, 3, 4, 5, 6)
CHANNEL_NAMES = ("Hoechst", "ConA", "Phalloidin", "Syto14", "MitoTracker", "WGA")
SITES = (1, 2)
N_TREATMENTS = 1108  # siRNA ids 0..1107; the 31 controls are 1108..1138
N_CONTROLS = 31
DATASETS = ("train", "test")
# rxrx1-utils montage convention: (RGB colour, intensity window max) per channel
CHANNEL_COLOURS = {
    1: ((19, 0, 249), 51),
    2: ((42, 255, 31), 107),
    3: ((255, 0, 25), 64),
    4: ((45, 255, 252), 191),
    5: ((250, 0, 253), 89),
    6: ((254, 255, 40), 191),
}
WELL_COLUMNS = ("experiment", "plate", "well")
STATS_KEYS = ("experiment", "plate", "well", "site", "channel")
PLATE_LEVELS = {"plate": ["experiment", "plate"], "experiment": ["experiment"], "group": ["group"]}

TABLES = Registry("dataset")

read_csv = read_table  # the Kaggle files are CSVs; one reader for every table


def check_channels(channels: Sequence[int]):
    """Validate a 1-based channel subset of the six stains; returns it as a list of ints."""
    return check_channel_list(channels, len(CHANNELS), "the six RxRx1 stains")


def id_code(experiment: str, plate: int, well: str) -> str:
    return f"{experiment}_{plate}_{well}"


def id_codes(df: pd.DataFrame) -> pd.Series:
    """``id_code`` of every row of a table with experiment, plate and well columns."""
    return df["experiment"].astype(str) + "_" + df["plate"].astype(str) + "_" + df["well"].astype(str)


def image_path(root, dataset: str, experiment: str, plate: int, well: str, site: int, channel: int) -> Path:
    # one Path from one string: the loader builds six of these per site, and joins cost more than the read's stat
    return Path(f"{root}/{dataset}/{experiment}/Plate{int(plate)}/{well}_s{int(site)}_w{int(channel)}.png")


def cell_type(experiment: str) -> str:
    """``HEPG2-01`` -> ``HEPG2``."""
    return str(experiment).split("-")[0]


def load_site(root, dataset, experiment, plate, well, site, channels: Sequence[int]) -> np.ndarray:
    """The requested channels of one site as an H x W x C uint8 array (scripts and tests)."""
    planes = [read_image(image_path(root, dataset, experiment, plate, well, site, c)) for c in channels]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise DataError(f"channels of {id_code(experiment, plate, well)} site {site} differ in size: {sorted(shapes)}")
    return np.concatenate(planes, axis=-1)


# ---------------------------------------------------------------- well tables


def _finish(df: pd.DataFrame, csv) -> pd.DataFrame:
    df = df.copy()
    if "id_code" not in df.columns:
        df["id_code"] = id_codes(df)
    bad = ~df["dataset"].isin(DATASETS)
    if bad.any():
        raise DataError(
            f"{csv}: column 'dataset' must be train or test, got {sorted(df.loc[bad, 'dataset'].astype(str).unique())}"
        )
    df["id"] = df["id_code"].astype(str)
    df["group"] = df["experiment"].astype(str)
    df["cell_type"] = df["experiment"].map(cell_type)  # for model_params/context_column
    df["split"] = "train"  # the caller says which split the rows are for
    return finish_table(df, str(csv))


@TABLES.register("non_pseudo")
def non_pseudo_table(csv, **_) -> pd.DataFrame:
    """Fold CSVs of train.csv rows; images live under train/."""
    df = read_csv(csv, ["experiment", "plate", "well", "sirna"], integers=["plate", "sirna"],
                  unique=["experiment", "plate", "well"])
    return _finish(df.assign(dataset="train", label=df["sirna"]), csv)


@TABLES.register("pseudo")
def pseudo_table(csv, **_) -> pd.DataFrame:
    """Train rows plus pseudo-labelled test rows; `dataset` says which folder."""
    df = read_csv(csv, ["experiment", "plate", "well", "sirna", "dataset"], integers=["plate", "sirna"],
                  unique=["experiment", "plate", "well"])
    return _finish(df.assign(label=df["sirna"]), csv)


@TABLES.register("control")
def control_table(csv, control_offset: int = N_TREATMENTS, **_) -> pd.DataFrame:
    """Control wells of train and test; siRNA ids from control_offset map to 0.."""
    df = read_csv(csv, ["experiment", "plate", "well", "sirna", "dataset"], integers=["plate", "sirna"],
                  unique=["experiment", "plate", "well"])
    return _finish(df.assign(label=df["sirna"] - control_offset), csv)


@TABLES.register("test")
def unlabelled_table(csv, **_) -> pd.DataFrame:
    """Unlabelled test.csv rows, for prediction."""
    df = read_csv(csv, ["experiment", "plate", "well"], integers=["plate"], unique=["experiment", "plate", "well"])
    return _finish(df.assign(dataset="test", label=None), csv)


# ---------------------------------------------------------------- the adapter


class RxrxPlates(Source):
    """What every RxRx release shares: six stains in one PNG each, plates of wells, plate-level normalisation."""

    plate_columns = ("experiment", "plate")
    well_column = "well"
    per_channel_files = True
    levels = PLATE_LEVELS

    @property
    def channel_names(self):
        return list(CHANNEL_NAMES)

    def colours(self):
        return [CHANNEL_COLOURS[c] for c in CHANNELS]


@SOURCES.register("rxrx1")
class Rxrx1Source(RxrxPlates):
    """The Kaggle RxRx1 layout. Its settings (``data_params/source_params``, configs/data/rxrx1.yml):
    ``dataset`` the table kind of train/valid, ``control_offset`` the siRNA id of the first control,
    ``controls_as_classes`` control wells as extra training classes (Part II), ``pixel_stats`` a
    precomputed stats file (null = {root}/pixel_stats.csv when present)."""

    name = "rxrx1"

    def __init__(self, root, rescale: Optional[dict] = None, dataset: str = "non_pseudo",
                 control_offset: int = N_TREATMENTS, controls_as_classes: bool = False,
                 pixel_stats: Optional[str] = None):
        super().__init__(root, rescale)
        TABLES.check(dataset, "data_params/source_params/dataset")
        self.dataset, self.control_offset = dataset, int(control_offset)
        self.controls_as_classes, self.pixel_stats = bool(controls_as_classes), pixel_stats

    @property
    def sites(self):
        return list(SITES)

    def build_catalog(self) -> pd.DataFrame:
        """train.csv and test.csv wells (the labelled test rows of a pseudo fold come via its CSV)."""
        train = non_pseudo_table(self.root / "train.csv")
        test = unlabelled_table(self.root / "test.csv").assign(split="test")
        return pd.concat([train, test], ignore_index=True)

    def cache_extra_rows(self) -> pd.DataFrame:
        """Control wells too (Part I, controls as classes), when the control tables are there."""
        if all((self.root / f"{d}_controls.csv").is_file() for d in DATASETS):
            return self.control_classes()
        return self.catalog().iloc[:0]

    def split(self, name: str, csv=None) -> pd.DataFrame:
        if name == "test":
            return unlabelled_table(csv or self.root / "test.csv").assign(split="test")
        if csv is None:
            raise DataError(f"rxrx1 needs data_params/{name}_csv (a fold CSV; see src/make_folds.py)")
        table = TABLES.build(self.dataset, csv=csv, control_offset=self.control_offset).assign(split=name)
        if name == "train" and self.controls_as_classes:
            table = pd.concat([table, self.control_classes()], ignore_index=True)
        return table

    def control_classes(self) -> pd.DataFrame:
        """Every control well (train and test experiments: Kaggle labels them) as extra training classes:
        the label is the control's own siRNA id (classes control_offset.. after the treatments)."""
        parts = [read_csv(self.root / f"{d}_controls.csv", ["experiment", "plate", "well", "sirna"],
                          integers=["plate", "sirna"]).assign(dataset=d)
                 for d in DATASETS]
        df = pd.concat(parts, ignore_index=True)
        return _finish(df.assign(label=df["sirna"]), f"{self.root}/*_controls.csv").assign(split="train")

    @staticmethod
    def negative_controls(table: pd.DataFrame) -> pd.Series:
        """The untreated wells (well_type negative_control in *_controls.csv): what profile corrections fit on."""
        if "well_type" not in table.columns:
            return pd.Series(False, index=table.index)
        return table["well_type"].astype(str) == "negative_control"

    def image_files(self, row, site: int, channels: Sequence[int]):
        return [image_path(self.root, row["dataset"], row["experiment"], row["plate"], row["well"], site, c)
                for c in channels]

    def stats_table(self) -> Optional[pd.DataFrame]:
        """Kaggle's pixel_stats.csv (or source_params/pixel_stats) when present."""
        path = self.pixel_stats or self.root / "pixel_stats.csv"
        if not Path(path).is_file():
            if self.pixel_stats:
                raise DataError(f"data_params/source_params/pixel_stats file not found: {path}")
            return None
        stats = read_csv(path, [*STATS_KEYS, "mean", "std"], integers=["plate", "site", "channel"],
                         numbers=["mean", "std"], unique=STATS_KEYS)
        stats["id"] = stats["id_code"].astype(str) if "id_code" in stats.columns else id_codes(stats)
        stats["group"] = stats["experiment"].astype(str)
        return stats[["id", "experiment", "plate", "well", "group", "site", "channel", "mean", "std"]].assign(
            source=str(path))

    def auto_classes(self) -> int:
        """num_classes: auto: the 31 controls (Part I), the treatments below control_offset (Part II/III),
        plus the controls' ids above it with controls_as_classes."""
        if self.dataset == "control":
            return N_CONTROLS
        if self.controls_as_classes:
            return int(self.control_classes()["label"].astype(int).max()) + 1
        return self.control_offset

    def fixed_classes(self, num_classes) -> List[str]:
        """siRNA ids index the classes directly (plate assignment needs column = siRNA id)."""
        if num_classes in (None, "auto"):
            num_classes = self.auto_classes()
        return [str(i) for i in range(int(num_classes))]
