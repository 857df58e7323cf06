"""Per-image pixel statistics in Kaggle's ``pixel_stats.csv`` format.

One row per (well, site, channel) of every well listed in train.csv,
test.csv and, when present, the two control CSVs: mean, std, median, min and
max of the 8-bit pixel values. Per-image normalisation reads this file, so it
is written once and reused (``ensure_pixel_stats``).
"""
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

import cli
import fsutil
import rxrx

log = logging.getLogger(__name__)

STATS_COLUMNS = ["id_code", "experiment", "plate", "well", "site", "channel",
                 "mean", "std", "median", "min", "max"]
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
    return wells.drop_duplicates(["dataset", *rxrx.WELL_COLUMNS]).reset_index(drop=True)


def _site_rows(root, well, site):
    img = rxrx.load_site(root, well.dataset, well.experiment, well.plate, well.well, site, rxrx.CHANNELS)
    flat = img.reshape(-1, img.shape[-1]).astype(np.float64)
    mean, std, med = flat.mean(0), flat.std(0), np.median(flat, 0)
    lo, hi = flat.min(0), flat.max(0)
    return [
        (well.id_code, well.experiment, int(well.plate), well.well, site, c,
         mean[i], std[i], med[i], int(lo[i]), int(hi[i]))
        for i, c in enumerate(rxrx.CHANNELS)
    ]


def compute_pixel_stats(data_root, workers: int = 4) -> pd.DataFrame:
    """Stats of every site and channel of every listed well (missing image -> DataError)."""
    root = Path(data_root)
    wells = list_wells(root)
    jobs = [(w, s) for w in wells.itertuples(index=False) for s in rxrx.SITES]
    # PNG decoding in OpenCV releases the GIL, so threads scale without pickling
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        results = pool.map(lambda job: _site_rows(root, *job), jobs)
        rows = [r for site_rows in tqdm(results, total=len(jobs), desc="pixel stats", unit="site")
                for r in site_rows]
    return pd.DataFrame(rows, columns=STATS_COLUMNS)


def stats_path(data_root, path=None) -> Path:
    """``path``, or Kaggle's place for the file: ``{data_root}/pixel_stats.csv``."""
    return Path(path) if path is not None else Path(data_root) / "pixel_stats.csv"


def write_pixel_stats(data_root, path=None, workers: int = 4) -> Path:
    """Compute the stats and write them (default ``{data_root}/pixel_stats.csv``); returns the path."""
    path = stats_path(data_root, path)
    fsutil.write_csv(compute_pixel_stats(data_root, workers=workers), path)
    return path


def ensure_pixel_stats(data_root, path=None, workers: int = 4) -> Path:
    """Return the pixel-stats CSV path, computing and writing it only if absent."""
    path = stats_path(data_root, path)
    if path.is_file():
        return path
    log.info("%s absent: computing pixel stats from the images", path)
    return write_pixel_stats(data_root, path, workers)


def main(data_root, out=None, workers: int = 4):
    """Compute pixel_stats.csv for an RxRx1-layout data set (always recomputes).

    Args:
        data_root: folder holding train.csv, test.csv (required), the control CSVs
            (optional) and the train/ and test/ image trees.
        out: output CSV; default None means ``{data_root}/pixel_stats.csv``.
        workers: threads decoding PNGs in parallel; default 4.
    """
    print(f"wrote {write_pixel_stats(data_root, out, workers)}")


if __name__ == "__main__":
    cli.run(main)
