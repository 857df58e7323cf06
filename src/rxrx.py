"""The RxRx1 data layout: constants, CSV tables, image paths and site loading.

Everything that knows how the Kaggle files are named lives here, so other
input formats (manifests, parquet, arrays) can replace this one module.
"""
from pathlib import Path
from typing import Iterable, List, Sequence

import cv2
import numpy as np
import pandas as pd

CHANNELS = (1, 2, 3, 4, 5, 6)  # Hoechst, ConA, Phalloidin, Syto14, MitoTracker, WGA
SITES = (1, 2)
N_TREATMENTS = 1108  # siRNA ids 0..1107; the 31 controls are 1108..1138
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


class DataError(ValueError):
    """Bad input data; the message names the file, column or channel at fault."""


def read_csv(path, required: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV and check it has the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse CSV {path}: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} lacks required column(s) {missing}; it has {list(df.columns)}"
        )
    return df


def check_channels(channels: Sequence[int]) -> List[int]:
    """Validate a 1-based channel subset of 1-6; returns it as a list of ints."""
    if isinstance(channels, (int, str)) or not len(channels):
        raise DataError(f"channels must be a non-empty list of 1-6, got {channels!r}")
    out = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c not in CHANNELS:
            raise DataError(f"channel {c!r} is outside 1-6 (channels={list(channels)})")
        if c in out:
            raise DataError(f"channel {c} is listed twice (channels={list(channels)})")
        out.append(int(c))
    return out


def channels_tag(channels: Sequence[int]) -> str:
    """Folder name of a channel combination, as in the seed: ``[1,2,3,4,5]``."""
    return "[" + ",".join(str(c) for c in channels) + "]"


def parse_channels_tag(tag: str) -> List[int]:
    text = tag.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise DataError(f"'{tag}' is not a channel folder name like [1,2,3,4,5]")
    try:
        return check_channels([int(x) for x in text[1:-1].split(",")])
    except ValueError:
        raise DataError(f"'{tag}' is not a channel folder name like [1,2,3,4,5]") from None


def id_code(experiment: str, plate: int, well: str) -> str:
    return f"{experiment}_{plate}_{well}"


def id_codes(df: pd.DataFrame) -> pd.Series:
    """``id_code`` of every row of a table with experiment, plate and well columns."""
    return df["experiment"].astype(str) + "_" + df["plate"].astype(str) + "_" + df["well"].astype(str)


def image_path(root, dataset: str, experiment: str, plate: int, well: str, site: int, channel: int) -> Path:
    return Path(root) / dataset / experiment / f"Plate{int(plate)}" / f"{well}_s{int(site)}_w{int(channel)}.png"


def read_png(path: Path) -> np.ndarray:
    """One 8-bit single-channel PNG; missing or undecodable files raise DataError."""
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"cannot decode image (corrupt or not a PNG): {path}")
    if img.ndim != 2:
        raise DataError(f"expected a single-channel image, got shape {img.shape}: {path}")
    return img


def load_site(root, dataset, experiment, plate, well, site, channels: Sequence[int]) -> np.ndarray:
    """Stack the requested channels of one site into an HxWxC uint8 array."""
    planes = [read_png(image_path(root, dataset, experiment, plate, well, site, c)) for c in channels]
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise DataError(
            f"channels of {id_code(experiment, plate, well)} site {site} differ in size: {sorted(shapes)}"
        )
    return np.stack(planes, axis=-1)


def cell_type(experiment: str) -> str:
    """``HEPG2-01`` -> ``HEPG2``."""
    return str(experiment).split("-")[0]
