"""Single-cell crops: one fixed-size crop per nucleus, packed into one memmap for the ``cells`` source.

Nuclei come from a CSV (CellProfiler's Nuclei.csv: ``Metadata_Plate``, ``Metadata_Well``,
``Metadata_Site``, ``Location_Center_X``, ``Location_Center_Y``; or ``id``, ``site``, ``x``, ``y``
with the source's sample ids), or from the built-in detector on the DNA channel (Gaussian
smoothing, Otsu threshold, connected components of at least ``min_area`` pixels, their
centroids; scikit-image). Crops are cut from the loaded planes (rescaled to 8-bit units and
illumination-corrected as training sees them), padded with zeros at the image border, and
stored as uint8 in two passes (find the nuclei, then cut), so one site is in memory at a time:

    {out}/cells.parquet   one row per cell: id, well_id (the sample), well_group (the sample's
                          group: RxRx1's experiment), plate, well, site, x, y, label, split, group
                          (= the well: folds keep a well's cells together), control, and the
                          sample's other columns
    {out}/crops.npy       N x C x S x S uint8, row i = cells.parquet row i
    {out}/cells.json      source, root, channels, crop size, counts
"""
import json
import logging
from typing import Optional

import numpy as np
import pandas as pd
from tqdm import tqdm

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.sources.cells import CELLS, CROPS, META

log = logging.getLogger(__name__)
CP_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Location_Center_X", "Location_Center_Y")


def detect_nuclei(plane: np.ndarray, sigma: float = 2.0, min_area: int = 20, max_cells: Optional[int] = None):
    """(x, y) centroids of the bright blobs of a DNA plane, largest first (at most ``max_cells``)."""
    from scipy import ndimage
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(plane.astype(np.float32), sigma=sigma, preserve_range=True)
    if float(smooth.max() - smooth.min()) <= 1e-6:
        return np.zeros((0, 2))
    mask = smooth > threshold_otsu(smooth)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 2))
    areas = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(areas >= min_area) + 1
    if len(keep) == 0:
        return np.zeros((0, 2))
    keep = keep[np.argsort(-areas[keep - 1], kind="stable")][:max_cells]
    centres = np.array(ndimage.center_of_mass(mask, labels, keep))  # (row, col)
    return centres[:, ::-1]


def nuclei_table(path, source, rows: pd.DataFrame) -> pd.DataFrame:
    """A nucleus CSV as (id, site, x, y) rows of ``source``'s samples ``rows``."""
    head = read_table(path, text=["Metadata_Plate", "Metadata_Well", "id"])
    if all(c in head.columns for c in CP_COLUMNS):
        df = read_table(path, CP_COLUMNS, integers=["Metadata_Site"], numbers=list(CP_COLUMNS[3:]),
                        text=["Metadata_Plate", "Metadata_Well"])
        key = (df["Metadata_Plate"].astype(str), df["Metadata_Well"].astype(str))
        if not source.plate_columns or not source.well_column:
            raise DataError(f"{path}: CellProfiler plate/well columns, but source '{source.name}' has no wells")
        from cellpipe.core.illumination import plate_key

        ids = {(plate_key(r, source.plate_columns), str(r[source.well_column])): r["id"] for r in rows.to_dict("records")}
        df["id"] = [ids.get(k) for k in zip(*key)]
        unknown = df["id"].isna()
        if unknown.any():
            r = df[unknown].iloc[0]
            raise DataError(f"{path}: plate {r['Metadata_Plate']!r} well {r['Metadata_Well']!r} is not a sample of "
                            f"{source.describe()}")
        return pd.DataFrame({"id": df["id"], "site": df["Metadata_Site"], "x": df["Location_Center_X"],
                             "y": df["Location_Center_Y"]})
    df = read_table(path, ["id", "site", "x", "y"], integers=["site"], numbers=["x", "y"], text=["id"])
    df["id"] = df["id"].astype(str)
    return df[["id", "site", "x", "y"]]


def cut(img: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """A size x size x C crop centred on (x, y), zero-padded where it leaves the image."""
    h, w = img.shape[:2]
    x0, y0 = int(round(x)) - size // 2, int(round(y)) - size // 2
    out = np.zeros((size, size, img.shape[2]), img.dtype)
    sx, sy = max(0, -x0), max(0, -y0)
    ex, ey = min(size, w - x0), min(size, h - y0)
    if ex > sx and ey > sy:
        out[sy:ey, sx:ex] = img[y0 + sy:y0 + ey, x0 + sx:x0 + ex]
    return out


def make_crops(source, out_dir, crop_size: int = 32, nuclei: Optional[str] = None, nucleus_channel: int = 1,
               sigma: float = 2.0, min_area: int = 20, max_cells: Optional[int] = 50, sites=None,
               overwrite: bool = False) -> dict:
    """Find (or read) the nuclei of every sample and site of ``source`` and pack their crops."""
    out_dir = fsutil.check_replaceable(out_dir, overwrite)
    if crop_size < 4:
        raise DataError(f"--crop_size {crop_size} is below 4 pixels")
    channels = list(range(1, source.n_channels + 1))
    if not 1 <= nucleus_channel <= len(channels):
        raise DataError(f"--nucleus_channel {nucleus_channel} is not one of 1-{len(channels)} "
                        f"({', '.join(source.channel_names)})")
    from cellpipe.data.cache import cache_rows

    rows = cache_rows(source).drop_duplicates("id").reset_index(drop=True)
    sites = source.check_sites(sites, "--sites")
    controls = getattr(source, "negative_controls", None)
    rows["control"] = controls(rows).to_numpy(bool) if controls else False
    by_id = rows.set_index("id")
    if nuclei is not None:
        found = nuclei_table(nuclei, source, rows)
        missing = ~found["id"].isin(by_id.index)
        if missing.any():
            raise DataError(f"{nuclei}: sample id {found.loc[missing, 'id'].iloc[0]!r} is not in {source.describe()}")
    else:  # pass 1: the detector on the DNA channel, one site at a time
        parts = []
        for r in tqdm(rows.to_dict("records"), desc="find nuclei", unit="well"):
            for site in source.present_sites(r, sites):
                plane = source.load(r, site, [nucleus_channel])[..., 0]
                xy = detect_nuclei(plane, sigma, min_area, max_cells)
                parts.append(pd.DataFrame({"id": r["id"], "site": site, "x": xy[:, 0], "y": xy[:, 1]}))
        found = pd.concat(parts, ignore_index=True)
    if found.empty:
        raise DataError(f"no nuclei found in {source.describe()} (channel {nucleus_channel}: "
                        f"{source.channel_names[nucleus_channel - 1]}); check --nucleus_channel / --min_area")
    found = found.sort_values(["id", "site"], kind="stable").reset_index(drop=True)
    found["cell"] = found.groupby(["id", "site"]).cumcount()
    sample = by_id.loc[found["id"]].reset_index()
    cells = sample.drop(columns=["split", "label", "group"]).assign(
        well_id=found["id"].to_numpy(), well_group=sample["group"].astype(str).to_numpy(), site=found["site"].to_numpy(), x=found["x"].to_numpy(),
        y=found["y"].to_numpy(), label=sample["label"].to_numpy(), split=sample["split"].to_numpy(),
        group=found["id"].to_numpy())
    cells["id"] = cells["well_id"] + "_s" + cells["site"].astype(str) + "_c" + found["cell"].astype(str)
    with fsutil.staged_dir(out_dir) as staged:  # pass 2: cut every cell of a site from one load
        array = np.lib.format.open_memmap(staged / CROPS, mode="w+", dtype=np.uint8,
                                          shape=(len(cells), len(channels), crop_size, crop_size))
        for (sid, site), idx in tqdm(cells.groupby(["well_id", "site"], sort=False).groups.items(), desc="cut cells",
                                     unit="site"):
            img = source.load(by_id.loc[sid].to_dict() | {"id": sid}, int(site), channels)
            img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            for i in idx:
                array[i] = cut(img, cells.at[i, "x"], cells.at[i, "y"], crop_size).transpose(2, 0, 1)
        array.flush()
        del array
        cells.to_parquet(staged / CELLS, index=False)
        meta = {"source": source.name, "root": str(source.root), "channel_names": list(source.channel_names),
                "crop_size": int(crop_size), "cells": len(cells), "samples": int(cells["well_id"].nunique()),
                "nuclei": str(nuclei) if nuclei else f"detected on channel {nucleus_channel}",
                "plate_columns": list(source.plate_columns), "well_column": source.well_column,
                "levels": {k: list(v) for k, v in source.levels.items()
                           if k != "group" and all(c in cells.columns for c in v)}}
        fsutil.write_text(json.dumps(meta, indent=2), staged / META)
    log.info("%d cells of %d samples cut into %s", len(cells), meta["samples"], out_dir)
    return meta
