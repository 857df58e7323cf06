"""Any source -> the RxRx1 image layout: 8-bit PNGs ``{dataset}/{experiment}/Plate{p}/{well}_s{site}_w{ch}.png``.

Deep images go through the source's rescale rule; a large field can be cut into
``tiles x tiles`` sites (site numbers run over fields, then tiles), as RxRx1's
512 px sites are crops of a larger field.
"""
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from tqdm import tqdm

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError


def tile(img: np.ndarray, tiles: int):
    """``tiles x tiles`` equal crops of an H x W x C image, row by row (edges beyond a multiple are dropped)."""
    h, w = img.shape[0] // tiles, img.shape[1] // tiles
    if min(h, w) < 1:
        raise DataError(f"cannot cut a {img.shape[0]}x{img.shape[1]} image into {tiles}x{tiles} tiles")
    return [img[r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(tiles) for c in range(tiles)]


def convert(source, out_dir, experiment: str = "EXP-01", dataset: str = "train", tiles: int = 1,
            table: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Write every sample of ``table`` (default: the source's catalog); returns one row per written site."""
    out_dir = Path(out_dir)
    table = source.catalog() if table is None else table
    channels = list(range(1, source.n_channels + 1))
    rows = []
    for row in tqdm(table.to_dict("records"), desc="convert", unit="sample"):
        well = row.get(source.well_column) if source.well_column else None
        if well is None:
            raise DataError(f"{source.describe()}: source '{source.name}' has no wells; convert needs a plate source")
        plate = int(row.get("plate", 1))
        site_no = 0
        for field in source.sites:
            img = np.rint(source.load(row, field, channels)).astype(np.uint8)
            for crop in tile(img, tiles):
                site_no += 1
                for c in channels:
                    path = out_dir / dataset / experiment / f"Plate{plate}" / f"{well}_s{site_no}_w{c}.png"
                    fsutil.write_png(np.ascontiguousarray(crop[..., c - 1]), path)
                rows.append({"id_code": f"{experiment}_{plate}_{well}", "experiment": experiment, "plate": plate,
                             "well": well, "site": site_no, "field": field, "label": row.get("label")})
    return pd.DataFrame(rows)
