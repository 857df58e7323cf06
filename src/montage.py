"""Colour montages of multi-channel sites, for eyeballing data and predictions.

Channels are combined in the rxrx1-utils convention (rxrx.CHANNEL_COLOURS):
each channel is scaled by its window maximum, clipped to 0..1, multiplied by
its RGB colour, and the channels are summed and clipped to 255.
"""
import logging
from pathlib import Path

import cv2
import numpy as np

import cli
import fsutil
import rxrx

log = logging.getLogger(__name__)

FONT = cv2.FONT_HERSHEY_SIMPLEX


def colourise(site: np.ndarray, channels) -> np.ndarray:
    """HxWxC uint8 stack of ``channels`` -> HxWx3 uint8 RGB."""
    channels = rxrx.check_channels(channels)
    if site.ndim != 3 or site.shape[-1] != len(channels):
        raise rxrx.DataError(f"site of shape {site.shape} does not match channels {channels}")
    rgb = np.zeros(site.shape[:2] + (3,), dtype=np.int64)
    for i, ch in enumerate(channels):
        colour, vmax = rxrx.CHANNEL_COLOURS[ch]
        x = np.minimum(site[..., i].astype(np.float64) / vmax, 1.0)
        # rxrx1-utils truncates each channel's contribution to int before summing
        rgb += (x[..., None] * np.asarray(colour, dtype=np.float64)).astype(np.int64)
    return np.minimum(rgb, 255).astype(np.uint8)


def site_montage(root, dataset, experiment, plate, well, site, channels=rxrx.CHANNELS) -> np.ndarray:
    """One site of one well as an HxWx3 uint8 RGB image."""
    channels = rxrx.check_channels(channels)
    return colourise(rxrx.load_site(root, dataset, experiment, plate, well, site, channels), channels)


def _tile(rgb, label, font_scale, gap):
    """Image with its label in a band above it, padded to fit the label."""
    (tw, th), base = cv2.getTextSize(label, FONT, font_scale, 1)
    band = th + base + 2 * gap
    width = max(rgb.shape[1], tw + 2 * gap)
    tile = np.zeros((band + rgb.shape[0], width, 3), dtype=np.uint8)
    tile[band:, :rgb.shape[1]] = rgb
    cv2.putText(tile, label, (gap, gap + th), FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def write_montage(root, rows_df, out_png, channels=rxrx.CHANNELS, site=1, max_wells=8, dataset="train",
                  font_scale=0.4, gap=4, tile_size=None):
    """Tile up to ``max_wells`` wells of ``rows_df`` side by side, id_code above each; returns the path.

    ``rows_df`` needs experiment, plate, well (id_code is derived if absent); its
    ``dataset`` column, when present, overrides the ``dataset`` argument per row.
    ``tile_size`` resizes every site to that square size (small demo images become
    readable; nearest-neighbour when enlarging keeps pixels honest).
    """
    missing = [c for c in rxrx.WELL_COLUMNS if c not in rows_df.columns]
    if missing:
        raise rxrx.DataError(f"montage rows lack column(s) {missing}; they have {list(rows_df.columns)}")
    rows = rows_df.head(int(max_wells))
    if rows.empty:
        raise rxrx.DataError("montage rows are empty: nothing to draw")
    tiles = []
    for r in rows.itertuples(index=False):
        ds = getattr(r, "dataset", dataset)
        label = getattr(r, "id_code", None) or rxrx.id_code(r.experiment, r.plate, r.well)
        rgb = site_montage(root, ds, r.experiment, r.plate, r.well, site, channels)
        if tile_size and rgb.shape[:2] != (tile_size, tile_size):
            interp = cv2.INTER_NEAREST if tile_size > rgb.shape[0] else cv2.INTER_AREA
            rgb = cv2.resize(rgb, (int(tile_size), int(tile_size)), interpolation=interp)
        tiles.append(_tile(rgb, str(label), font_scale, gap))
    height = max(t.shape[0] for t in tiles)
    spacer = np.zeros((height, gap, 3), dtype=np.uint8)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    sheet = np.concatenate([x for t in padded for x in (t, spacer)][:-1], axis=1)
    out_png = Path(out_png)
    fsutil.write_png(cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), out_png)  # OpenCV writes BGR
    return out_png


def main(root, csv, out_png, dataset="train", site=1, max_wells=8, channels=rxrx.CHANNELS):
    """Write a montage PNG of the first wells listed in a CSV.

    Args:
        root: data root holding the train/ and test/ image trees.
        csv: CSV with experiment, plate, well (and optionally id_code, dataset) columns.
        out_png: output PNG path.
        dataset: image folder, train or test, for rows without a dataset column (default train).
        site: site to show, 1 or 2 (default 1).
        max_wells: at most this many wells, the CSV's first (default 8).
        channels: channels to combine (default all six: 1,2,3,4,5,6).
    """
    rows = rxrx.read_csv(csv, required=rxrx.WELL_COLUMNS)
    path = write_montage(root, rows, out_png, channels=tuple(channels), site=site, max_wells=max_wells,
                         dataset=dataset)
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
