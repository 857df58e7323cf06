"""Image files -> H x W x C arrays, and the rule that brings deep images to 8-bit units.

Readers: PNG/JPEG/BMP (grey or colour, 8 or 16 bit) with OpenCV, returned in RGB
order; TIFF with tifffile (single page, multi-page = one channel per page, or
multi-sample = channels last; 8, 16 or 32 bit; LZW etc. through imagecodecs).

Everything downstream works in 8-bit units (0..255 as float32): normalisation
floors, montage windows and augmentations expect that scale. An 8-bit image
passes as it is. A deeper image needs an explicit ``rescale`` rule (YAML
``data_params/rescale``), so 16-bit data is never squeezed silently:

    {mode: full}                        x * 255 / dtype max (no clipping)
    {mode: bits, bits: 12}              x * 255 / (2**bits - 1); a value above 2**bits - 1 is an error
    {mode: percentile, low: 0.5, high: 99.5}
                                        per image and channel, the [low, high] percentile window
                                        maps to 0..255; the tails outside it are clipped (that is
                                        the window's purpose: robust contrast per image)
    {mode: window, min: 100, max: 30000}
                                        a fixed window (a number, or one per channel in file order)
                                        maps to 0..255; values outside it are clipped
"""
from pathlib import Path
from typing import List, Optional, Sequence

import cv2
import numpy as np

from cellpipe.core.errors import DataError

TIFF = (".tif", ".tiff")
RESCALE_MODES = ("full", "bits", "percentile", "window")
# keys each rescale mode accepts besides ``mode``
RESCALE_KEYS = {"full": (), "bits": ("bits",), "percentile": ("low", "high"), "window": ("min", "max")}


def read_image(path) -> np.ndarray:
    """One image file as an H x W x C array in the file's own dtype (colour in RGB order)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    if path.suffix.lower() in TIFF:
        return _channels_last(_read_tiff(path, path), path)
    return _channels_last(_decode_other(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), path), path)


class ImageTooLarge(DataError):
    """An image whose header declares more pixels or planes than allowed (refused before decoding)."""


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def declared_size(data: bytes, name: str):
    """(height, width, planes) from an image file's header, without decoding its pixels; None when
    the header is not one Pillow or tifffile can read (OpenCV may still decode it)."""
    import io

    if data[:4] in TIFF_MAGIC:
        import tifffile

        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                series = tif.series[0]
                sizes = dict(zip(series.axes, series.shape))
                h, w = sizes.get("Y", 1), sizes.get("X", 1)
                return h, w, int(np.prod(series.shape)) // max(1, h * w)
        except Exception as e:  # noqa: BLE001 - as _read_tiff: one line naming the file
            raise DataError(f"cannot decode TIFF {name}: {type(e).__name__}: {e}") from None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[1], img.size[0], len(img.getbands())
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{name}: {e}") from None
    except Exception:  # noqa: BLE001 - not a header Pillow knows: OpenCV decides
        return None


def decode_image(data: bytes, name: str = "upload", max_pixels: Optional[int] = None,
                 max_planes: Optional[int] = None) -> np.ndarray:
    """The bytes of an image file (an upload) as ``read_image`` returns that file: TIFF by its magic
    number, everything else through OpenCV; ``name`` only labels errors. With ``max_pixels`` (height
    x width) and ``max_planes`` (channels or pages) the header is checked first, so that a small file
    declaring a huge image (a decompression bomb) is refused without allocating it (ImageTooLarge)."""
    if not data:
        raise DataError(f"{name}: empty file")
    size = declared_size(data, name) if max_pixels or max_planes else None
    if size is not None:
        h, w, planes = size
        if max_pixels and h * w > max_pixels:
            raise ImageTooLarge(f"{name} is {w} x {h} pixels, more than the limit of {max_pixels} (--max_pixels)")
        if max_planes and planes > max_planes:
            raise ImageTooLarge(f"{name} has {planes} planes (channels or pages), more than the limit of "
                                f"{max_planes} (--max_planes)")
    if data[:4] in TIFF_MAGIC:
        import io

        return _channels_last(_read_tiff(io.BytesIO(data), name), name)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return _channels_last(_decode_other(img, name), name)


def _decode_other(img: Optional[np.ndarray], name) -> np.ndarray:
    if img is None:
        raise DataError(f"cannot decode image (corrupt or unsupported format): {name}")
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return img


def _channels_last(img: np.ndarray, name) -> np.ndarray:
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or min(img.shape[:2]) < 1:
        raise DataError(f"expected a 2-D image (optionally with channels), got shape {img.shape}: {name}")
    return img


def _read_tiff(file, name) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(file) as tif:
            series = tif.series[0]
            axes, img = series.axes, series.asarray()
    except Exception as e:  # tifffile raises many kinds (TiffFileError, ValueError, struct.error...)
        raise DataError(f"cannot decode TIFF {name}: {type(e).__name__}: {e}") from None
    img = np.squeeze(img) if img.ndim > 3 else img
    if img.ndim == 3 and not axes.endswith("S"):
        img = np.moveaxis(img, 0, -1)  # pages / C / Z first -> channels last
    if img.ndim > 3:
        raise DataError(f"TIFF {name} has axes {axes} and shape {img.shape}; expected YX, YXS or one extra axis")
    return img


def check_rescale(rule: Optional[dict], key: str = "data_params/rescale") -> None:
    """Raise ConfigError-style DataError for a malformed rule (checked at start-up)."""
    if rule is None:
        return
    if not isinstance(rule, dict) or rule.get("mode") not in RESCALE_MODES:
        raise DataError(f"{key} must be null or a mapping with mode in {list(RESCALE_MODES)}, got {rule!r}")
    mode = rule["mode"]
    unknown = sorted(set(rule) - {"mode", *RESCALE_KEYS[mode]})
    if unknown:
        raise DataError(f"{key}: mode {mode} takes {list(RESCALE_KEYS[mode])}, not {unknown}")
    missing = [k for k in RESCALE_KEYS[mode] if rule.get(k) is None]
    if missing:
        raise DataError(f"{key}: mode {mode} needs {missing}")
    if mode == "percentile" and not 0 <= float(rule["low"]) < float(rule["high"]) <= 100:
        raise DataError(f"{key}: percentiles must satisfy 0 <= low < high <= 100, got {rule}")
    if mode == "bits" and not 1 <= int(rule["bits"]) <= 32:
        raise DataError(f"{key}: bits must be 1..32, got {rule['bits']}")


def to_8bit_units(img: np.ndarray, rule: Optional[dict], path="", channels: Optional[Sequence[int]] = None) -> np.ndarray:
    """H x W x C image -> float32 in 0..255 by ``rule`` (see the module doc); 8-bit passes unchanged
    (uint8: the loader's normalisation reads it through a lookup table, data.normalize).

    ``channels``: the 1-based source channels the image holds, to pick per-channel window limits.
    """
    if img.dtype == np.uint8:
        return img
    if rule is None:
        raise DataError(f"{path}: {img.dtype} image needs a rescale rule (data_params/rescale: "
                        f"{{mode: full | bits | percentile | window}}); none is set")
    x = img.astype(np.float32)
    mode = rule["mode"]
    if mode == "full":
        if not np.issubdtype(img.dtype, np.integer):
            raise DataError(f"{path}: rescale mode 'full' needs an integer image, got {img.dtype}")
        return x * np.float32(255.0 / np.iinfo(img.dtype).max)
    if mode == "bits":
        top = float(2 ** int(rule["bits"]) - 1)
        if img.max() > top:
            raise DataError(f"{path}: value {img.max()} exceeds {int(rule['bits'])}-bit range (max {top:.0f}); "
                            f"use more bits or another rescale mode")
        return x * np.float32(255.0 / top)
    if mode == "percentile":
        lo, hi = np.percentile(x.reshape(-1, x.shape[-1]), [float(rule["low"]), float(rule["high"])], axis=0)
    else:
        lo, hi = (_per_channel(rule[k], channels, x.shape[-1], path) for k in ("min", "max"))
    span = np.maximum(hi - lo, 1e-6)
    return np.clip((x - lo) / span, 0.0, 1.0).astype(np.float32) * np.float32(255.0)


def _per_channel(value, channels, n: int, path) -> np.ndarray:
    """A window limit: one number for all channels, or a list indexed by 1-based source channel."""
    if np.isscalar(value):
        return np.full(n, float(value), np.float32)
    values = np.asarray(value, np.float32)
    picks = [c - 1 for c in channels] if channels is not None else list(range(n))
    if max(picks) >= len(values):
        raise DataError(f"{path}: rescale window lists {len(values)} value(s) but channel {max(picks) + 1} is used")
    return values[picks]


def resize_planes(planes: List[np.ndarray], size: int) -> List[np.ndarray]:
    """H x W planes -> size x size planes (INTER_AREA); planes of that size pass unchanged."""
    return [p if p.shape[0] == size and p.shape[1] == size else
            cv2.resize(np.ascontiguousarray(p), (size, size), interpolation=cv2.INTER_AREA) for p in planes]


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """H x W x C -> size x size x C (INTER_AREA). OpenCV's area resize takes at most 4 channels at
    non-integer scales (e.g. 6 stains from 512 to 384 px), so wider images go 4 channels at a time."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    planes = [cv2.resize(np.ascontiguousarray(img[..., i:i + 4]), (size, size), interpolation=cv2.INTER_AREA)
              for i in range(0, img.shape[-1], 4)]
    return np.concatenate([p[..., None] if p.ndim == 2 else p for p in planes], axis=-1)
