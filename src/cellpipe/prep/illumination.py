"""Illumination functions per plate and channel (CellProfiler's CorrectIlluminationCalculate with
"each plate, mean, median-filter smoothing, robust minimum"; DeepProfiler's illum step).

For every plate of a source: the mean of every site's raw plane per channel (streamed: one site
in memory at a time), smoothed at a reduced size (area downscale, then a 2-D polynomial fit, or a
median filter and a Gaussian: CellProfiler's "Fit Polynomial" and "Median Filter"), resized back, floored at a low percentile (so that a dark corner is not divided into noise),
and scaled to mean 1. Written as ``{out}/{plate}/{channel}.npy`` with ``illumination.csv``
(plate, channel, file, sites, min, max) and ``illumination.png`` (before / function / after
for the plate whose field varies most). ``data_params/illumination: {out}`` applies them.
"""
import logging
import re
from pathlib import Path
from typing import Dict, Optional, Sequence

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from cellpipe.core import fsutil
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.illumination import MANIFEST, plate_key

log = logging.getLogger(__name__)
PNG = "illumination.png"


METHODS = ("polynomial", "median")
MIN_FRACTION = 0.05  # of the function's mean: its lowest value


def polynomial_fit(image: np.ndarray, degree: int) -> np.ndarray:
    """The least-squares 2-D polynomial of ``degree`` through ``image`` (a vignette is one of degree 2;
    a few sites' cells average out of 6 coefficients, not out of a median window)."""
    h, w = image.shape
    yy, xx = np.mgrid[:h, :w]
    y, x = (yy.ravel() / max(h - 1, 1)) * 2 - 1, (xx.ravel() / max(w - 1, 1)) * 2 - 1
    terms = np.stack([x ** i * y ** j for i in range(degree + 1) for j in range(degree + 1 - i)], axis=1)
    coef, *_ = np.linalg.lstsq(terms, image.ravel().astype(np.float64), rcond=None)
    return (terms @ coef).reshape(h, w).astype(np.float32)


def smooth(mean: np.ndarray, method: str = "polynomial", degree: int = 2, work_size: int = 128, window: int = 15,
           sigma: float = 4.0, floor_percentile: float = 2.0) -> np.ndarray:
    """A mean image -> its illumination function (same shape, mean 1, no value below the floor)."""
    if method not in METHODS:
        raise ConfigError(f"illumination smoothing {method!r} is not one of {list(METHODS)}")
    h, w = mean.shape
    scale = min(1.0, work_size / max(h, w))
    small = cv2.resize(mean.astype(np.float32), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else mean.astype(np.float32)
    if method == "polynomial":
        small = polynomial_fit(small, int(degree))
    else:
        if window > 1:
            small = ndimage.median_filter(small, size=int(window), mode="reflect")
        if sigma > 0:
            small = ndimage.gaussian_filter(small, float(sigma), mode="reflect")
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else small
    if not field.mean() > 0:
        raise DataError("the plate's mean image is black: no illumination function can be computed")
    # a fitted polynomial can dip to zero or below in a corner: never divide by less than MIN_FRACTION
    field = np.maximum(field, max(np.percentile(field, floor_percentile), MIN_FRACTION * field.mean()))
    return (field / field.mean()).astype(np.float32)


def folder_name(plate: str) -> str:
    """A plate name as a folder name (path separators and odd characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", plate) or "_"


def plate_means(source, rows: pd.DataFrame, sites: Sequence[int], desc: str):
    """({channel name: the mean raw plane over ``rows`` x ``sites``, float64}, sites read), one site in
    memory at a time."""
    channels = list(range(1, source.n_channels + 1))
    total, n = None, 0
    for row in tqdm(rows.to_dict("records"), desc=desc, unit="well", leave=False):
        for site in source.present_sites(row, sites):  # a site a well lacks is left out of the mean
            arrays, files = source.read_arrays(row, site, channels)
            planes = ([a[..., 0] for a in arrays] if source.per_channel_files
                      else [arrays[0][..., c - 1] for c in channels])
            stack = np.stack(planes).astype(np.float64)
            if total is None:
                total = stack
            elif stack.shape != total.shape:
                raise DataError(f"{files[0]}: {stack.shape[2]}x{stack.shape[1]} px, but the plate's earlier sites "
                                f"are {total.shape[2]}x{total.shape[1]}")
            else:
                total += stack
            n += 1
    return {name: total[i] / n for i, name in enumerate(source.channel_names)}, n


def compute(source, out_dir, sites=None, method: str = "polynomial", degree: int = 2, work_size: int = 128,
            window: int = 15, sigma: float = 4.0, floor_percentile: float = 2.0,
            overwrite: bool = False) -> pd.DataFrame:
    """Write the illumination functions of every plate of ``source`` into ``out_dir``; the manifest."""
    if not source.plate_columns:
        raise ConfigError(f"source '{source.name}' has no plates; illumination functions are per plate")
    smooth(np.ones((2, 2)), method, degree)  # a bad method fails before any image is read
    out_dir = fsutil.check_replaceable(out_dir, overwrite)
    from cellpipe.data.cache import cache_rows

    rows = cache_rows(source)  # every sample, with RxRx1's control wells: more sites, a better mean
    sites = source.check_sites(sites, "--sites")
    keys = rows.apply(lambda r: plate_key(r, source.plate_columns), axis=1)
    records, shown = [], None
    with fsutil.staged_dir(out_dir) as staged:
        for plate in tqdm(sorted(keys.unique()), desc="illumination", unit="plate"):
            means, n = plate_means(source, rows[keys == plate], sites, plate)
            folder = folder_name(plate)
            functions = {}
            for channel, mean in means.items():
                f = smooth(mean, method, degree, work_size, window, sigma, floor_percentile)
                functions[channel] = f
                file = f"{folder}/{folder_name(channel)}.npy"
                fsutil.write_npy(f, staged / file)
                records.append({"plate": plate, "channel": channel, "file": file, "sites": n,
                                "min": float(f.min()), "max": float(f.max())})
            spread = max(float(f.max() / f.min()) for f in functions.values())
            if shown is None or spread > shown[0]:
                shown = (spread, plate, means, functions)
        manifest = pd.DataFrame(records)
        fsutil.write_csv(manifest, staged / MANIFEST)
        before_after_png(shown[1], shown[2], shown[3], staged / PNG)
    log.info("illumination functions of %d plate(s) x %d channel(s) in %s", manifest["plate"].nunique(),
             source.n_channels, out_dir)
    return manifest


def flatness(image: np.ndarray, border: float = 1 / 6) -> float:
    """Mean of the image's four corner blocks / mean of its centre block (1 = flat)."""
    h, w = image.shape
    q, p = max(1, int(h * border)), max(1, int(w * border))
    corners = np.mean([image[:q, :p].mean(), image[:q, -p:].mean(), image[-q:, :p].mean(), image[-q:, -p:].mean()])
    return float(corners / max(image[2 * q:h - 2 * q or None, 2 * p:w - 2 * p or None].mean(), 1e-12))


def before_after_png(plate: str, means: Dict[str, np.ndarray], functions: Dict[str, np.ndarray], out_png,
                     channels: Optional[Sequence[str]] = None) -> Path:
    """Per channel: the plate's mean image, its function and the corrected mean, one shared scale per row."""
    from cellpipe.reports.plots import _save, plt

    names = list(channels or means)
    fig, axes = plt.subplots(len(names), 3, figsize=(7.5, 2.4 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        before, after = means[name], means[name] / functions[name]
        lo, hi = np.percentile(np.concatenate([before.ravel(), after.ravel()]), [1, 99])
        for j, (img, title, vmin, vmax) in enumerate((
                (before, f"{name} mean, corner/centre {flatness(before):.2f}", lo, hi),
                (functions[name], "illumination function", None, None),
                (after, f"corrected, corner/centre {flatness(after):.2f}", lo, hi))):
            ax = axes[i, j]
            ax.imshow(img, cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"plate {plate}: before and after illumination correction", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_png)
