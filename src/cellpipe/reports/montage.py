"""Montages of samples of any source, for eyeballing data: one row per sample, the colour
composite first, then each channel in grey, the sample id above the row and the channel
names above the columns.

Channels are combined in the rxrx1-utils convention: each channel is scaled by its window
maximum (``Source.colours()``: RGB colour and 8-bit window max per channel), clipped to
0..1, multiplied by its RGB colour (each contribution truncated to an integer), and the
channels are summed and clipped to 255. A grey tile uses the same window as the composite.
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_png
from cellpipe.sources.base import Source

Colour = Tuple[Tuple[int, int, int], float]  # (RGB, 8-bit window max)

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
FONT_THICKNESS = 1
TEXT_COLOUR = (255, 255, 255)
GAP = 4  # pixels between tiles and around text
SEPARATOR = 48  # grey of the gaps, so that a black image edge stays visible
MAX_COLOUR = 255
COMPOSITE = "composite"
ELLIPSIS = ".."


def montage_tile(img: np.ndarray, colours: Sequence[Colour]) -> np.ndarray:
    """H x W x C image in 8-bit units -> H x W x 3 uint8 RGB colour composite (one colour per channel)."""
    img = _check_image(img, colours)
    rgb = np.zeros(img.shape[:2] + (3,), dtype=np.int64)
    for i, (colour, vmax) in enumerate(colours):
        x = np.clip(img[..., i].astype(np.float64) / vmax, 0.0, 1.0)
        # rxrx1-utils truncates each channel's contribution to int before summing
        rgb += (x[..., None] * np.asarray(colour, dtype=np.float64)).astype(np.int64)
    return np.minimum(rgb, MAX_COLOUR).astype(np.uint8)


def grey_tile(plane: np.ndarray, window_max: float) -> np.ndarray:
    """One H x W channel in 8-bit units -> H x W x 3 uint8 grey, scaled by the channel's window."""
    x = np.clip(plane.astype(np.float64) / window_max, 0.0, 1.0)
    grey = (x * MAX_COLOUR).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _check_image(img: np.ndarray, colours: Sequence[Colour]) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] != len(colours):
        raise DataError(f"image of shape {img.shape} does not match {len(colours)} channel colour(s)")
    for i, (_, vmax) in enumerate(colours):
        if not vmax > 0:
            raise DataError(f"channel {i + 1}: window max must be positive, got {vmax!r}")
    return img


def fit_tile(rgb: np.ndarray, tile_size: Optional[int]) -> np.ndarray:
    """Scale ``rgb`` to fit a ``tile_size`` square (aspect kept, centred on black); None keeps it as it is."""
    if not tile_size:
        return rgb
    h, w = rgb.shape[:2]
    scale = tile_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # nearest-neighbour when enlarging keeps pixels honest; area averaging when shrinking avoids aliasing
    interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    small = cv2.resize(rgb, size, interpolation=interp) if size != (w, h) else rgb
    tile = np.zeros((tile_size, tile_size, 3), dtype=np.uint8)
    top, left = (tile_size - size[1]) // 2, (tile_size - size[0]) // 2
    tile[top:top + size[1], left:left + size[0]] = small
    return tile


def sample_tiles(img: np.ndarray, colours: Sequence[Colour], tile_size: Optional[int]) -> List[np.ndarray]:
    """The colour composite, then each channel in grey, each fitted to ``tile_size``."""
    img = _check_image(img, colours)
    tiles = [montage_tile(img, colours)] + [grey_tile(img[..., i], vmax) for i, (_, vmax) in enumerate(colours)]
    return [fit_tile(t, tile_size) for t in tiles]


def sample_indices(n_rows: int, max_samples: int) -> List[int]:
    """Up to ``max_samples`` row positions spread evenly over ``n_rows`` (first and last included)."""
    if max_samples < 1:
        raise DataError(f"max_samples must be at least 1, got {max_samples}")
    if n_rows <= max_samples:
        return list(range(n_rows))
    return [int(i) for i in np.linspace(0, n_rows - 1, max_samples).round()]


def write_montage(source: Source, table: pd.DataFrame, out_png, channels: Optional[Sequence[int]] = None,
                  max_samples: int = 6, tile_size: Optional[int] = 160, site: Optional[int] = None) -> Path:
    """One PNG of up to ``max_samples`` rows of ``table`` (a sample table of ``source``), spread over it.

    ``channels``: 1-based channels to show (None: all). ``site``: the view to load (None: the
    source's first). ``tile_size``: every tile is fitted to that square (None: native size).
    """
    channels = source.check_channels(channels)
    site = source.sites[0] if site is None else source.check_sites([site], "montage site")[0]
    palette = source.colours()
    colours = [palette[c - 1] for c in channels]
    if table.empty:
        raise DataError("montage table is empty: nothing to draw")
    rows = []
    for pos in sample_indices(len(table), max_samples):
        row = table.iloc[pos].to_dict()
        img = source.load(row, site, channels)
        rows.append((str(row.get("id", pos)), sample_tiles(img, colours, tile_size)))
    headers = [COMPOSITE] + [source.channel_names[c - 1] for c in channels]
    sheet = _sheet(rows, headers)
    out_png = Path(out_png)
    write_png(cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), out_png)  # OpenCV writes BGR
    return out_png


# ---------------------------------------------------------------- layout


def _text_height() -> int:
    (_, th), base = cv2.getTextSize("Ag", FONT, FONT_SCALE, FONT_THICKNESS)
    return th + base + 2 * GAP


def _fit_text(text: str, width: int) -> str:
    """``text`` cut (with '..') to fit ``width`` pixels."""
    def fits(t):
        return cv2.getTextSize(t, FONT, FONT_SCALE, FONT_THICKNESS)[0][0] <= width
    if fits(text):
        return text
    while text and not fits(text + ELLIPSIS):
        text = text[:-1]
    return text + ELLIPSIS


def _put_text(band: np.ndarray, text: str, x: int, width: int) -> None:
    (_, th), _ = cv2.getTextSize("Ag", FONT, FONT_SCALE, FONT_THICKNESS)
    cv2.putText(band, _fit_text(text, width), (x, GAP + th), FONT, FONT_SCALE, TEXT_COLOUR, FONT_THICKNESS,
                cv2.LINE_AA)


def _sheet(rows: List[Tuple[str, List[np.ndarray]]], headers: List[str]) -> np.ndarray:
    """Header band of column names, then per sample a label band and its tiles, on the gap grey."""
    tile_h = max(t.shape[0] for _, tiles in rows for t in tiles)
    widths = [max(tiles[j].shape[1] for _, tiles in rows) for j in range(len(headers))]
    lefts = np.cumsum([GAP] + [w + GAP for w in widths[:-1]])
    width = int(lefts[-1] + widths[-1] + GAP)
    band_h = _text_height()
    header = np.full((band_h, width, 3), SEPARATOR, dtype=np.uint8)
    for name, left, w in zip(headers, lefts, widths):
        _put_text(header, name, int(left), w)
    parts = [header]
    for label, tiles in rows:
        band = np.full((band_h + tile_h + GAP, width, 3), SEPARATOR, dtype=np.uint8)
        _put_text(band, label, GAP, width - 2 * GAP)
        for tile, left in zip(tiles, lefts):
            band[band_h:band_h + tile.shape[0], left:left + tile.shape[1]] = tile
        parts.append(band)
    return np.concatenate(parts, axis=0)
