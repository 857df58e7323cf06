"""Per-image pixel statistics in Kaggle's ``pixel_stats.csv`` format: an explicit prep step.

One row per (well, site, channel) of every well listed in train.csv, test.csv and,
when present, the two control CSVs: mean, std, median, min and max of the 8-bit
pixel values. Training never writes this file (the data folder may be read-only);
without it, statistics are computed in memory from the images at start-up.

    python src/make_pixel_stats.py --data_root /data [--out /cache/pixel_stats.csv]
"""
import logging
from pathlib import Path

import pandas as pd

from cellpipe.core import fsutil
from cellpipe.data.stats import site_stats
from cellpipe.sources import rxrx1 as rxrx

log = logging.getLogger(__name__)

STATS_COLUMNS = ["id_code", "experiment", "plate", "well", "site", "channel", "mean", "std", "median", "min", "max"]
# (csv name, image folder, required?) in the order rows are written
SOURCES = (
    ("train.csv", "train", True),
    ("test.csv", "test", True),
    ("train_controls.csv", "train", False),
    ("test_controls.csv", "test", False),
)


def list_wells(data_root) -> pd.DataFrame:
    """All wells of the data set with the image folder (``dataset``) they live in."""
    root = Path(data_root)
    parts = []
    for name, dataset, required in SOURCES:
        path = root / name
        if not path.is_file() and not required:
            log.info("%s absent: its wells get no pixel stats", path)
            continue
        df = rxrx.read_csv(path, required=("id_code",) + rxrx.WELL_COLUMNS)
        df = df[["id_code", *rxrx.WELL_COLUMNS]].copy()
        df["dataset"] = dataset
        parts.append(df)
    wells = pd.concat(parts, ignore_index=True)
    # a well listed twice (e.g. in train.csv and a control CSV) is one set of images
    wells = wells.drop_duplicates(["dataset", *rxrx.WELL_COLUMNS]).reset_index(drop=True)
    return wells.assign(id=wells["id_code"].astype(str))


def compute_pixel_stats(data_root, workers: int = 4) -> pd.DataFrame:
    """Stats of every site and channel of every listed well (missing image -> DataError)."""
    wells = list_wells(data_root)
    source = rxrx.Rxrx1Source(data_root)
    stats = site_stats(source, wells, rxrx.SITES, workers=workers)
    keys = wells[["id", "id_code", *rxrx.WELL_COLUMNS]].drop_duplicates("id")
    return stats.merge(keys, on="id", how="left")[STATS_COLUMNS]


def stats_path(data_root, path=None) -> Path:
    """``path``, or Kaggle's place for the file: ``{data_root}/pixel_stats.csv``."""
    return Path(path) if path is not None else Path(data_root) / "pixel_stats.csv"


def write_pixel_stats(data_root, path=None, workers: int = 4) -> Path:
    """Compute the stats and write them (default ``{data_root}/pixel_stats.csv``); returns the path."""
    path = stats_path(data_root, path)
    fsutil.write_csv(compute_pixel_stats(data_root, workers=workers), path)
    return path


def main(data_root, out=None, workers: int = 4):
    """Compute pixel_stats.csv for an RxRx1-layout data set (always recomputes).

    Args:
        data_root: folder holding train.csv, test.csv (required), the control CSVs
            (optional) and the train/ and test/ image trees.
        out: output CSV; default None means ``{data_root}/pixel_stats.csv``.
        workers: threads decoding PNGs in parallel; default 4.
    """
    print(f"wrote {write_pixel_stats(data_root, out, workers)}")
