"""Per-image pixel statistics (mean, std, median, min, max per site and channel), in 8-bit units.

Computed from a source's images for the rows of a sample table, in memory; nothing is
written into the data folder (it may be a read-only mount). ``src/make_pixel_stats.py``
is the explicit prep step that saves them as a file.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

STATS_COLUMNS = ["id", "site", "channel", "mean", "std", "median", "min", "max"]


def _site_rows(source, row, site, channels):
    img = source.load(row, site, channels)
    flat = img.reshape(-1, img.shape[-1]).astype(np.float64)
    mean, std, med = flat.mean(0), flat.std(0), np.median(flat, 0)
    lo, hi = flat.min(0), flat.max(0)
    return [(row["id"], int(site), int(c), mean[i], std[i], med[i], lo[i], hi[i]) for i, c in enumerate(channels)]


def site_stats(source, table: pd.DataFrame, sites: Optional[Sequence[int]] = None, workers: int = 4,
               desc: str = "pixel stats", skip_missing: bool = False) -> pd.DataFrame:
    """Stats of every listed site and every channel of the source for each row of ``table``; with
    ``skip_missing`` a site a row lacks is left out (profiles embed wells from the sites they have),
    else its missing file is an error naming it."""
    sites = list(sites or source.sites)
    channels = list(range(1, source.n_channels + 1))
    rows = table.to_dict("records")
    jobs = [(r, s) for r in rows for s in (source.present_sites(r, sites) if skip_missing else sites)]
    # image decoding in OpenCV / tifffile releases the GIL, so threads scale without pickling
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        results = pool.map(lambda job: _site_rows(source, job[0], job[1], channels), jobs)
        out = [r for site_rows in tqdm(results, total=len(jobs), desc=desc, unit="site", leave=False)
               for r in site_rows]
    return pd.DataFrame(out, columns=STATS_COLUMNS)
