"""A packed image cache: every sample's sites, resized, in one uint8 array on disk (numpy memmap).

Decoding six PNGs per site costs milliseconds per core; a memmap read of the same site costs
microseconds, so a few cores can feed a GPU. ``src/pack_cache.py`` (or ``data_params/cache`` at
the start of a run) packs a source once into ``{cache}/{source}-{size}px-{hash}/``:

    images.npy   N x C x H x W uint8 (every channel of the source, after resize, before normalisation;
                 planar, so that a site's channel is one contiguous block the loader reads in place)
    index.csv    key (the site's first image file, relative to the root), row in images.npy
    meta.json    source, root, image size, channel count and the fingerprint of every image file

``data_params/cache: memory`` keeps each site's decoded, resized planes in the process's RAM after
its first read instead (``MemoryImages``): for data sets that fit in memory, such as small images
on a CPU, epochs after the first decode nothing. With DataLoader workers each keeps its own copy.

A cache whose fingerprint (paths, sizes and modification times of the image files) or size no
longer matches is packed again; packing writes a staged folder and renames it into place, so a
cache is never read half-written. A site missing from the cache (a table added later) is read
from its files.
"""
import hashlib
import json
import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from cellpipe.core import fsutil
from cellpipe.core.images import resize_planes
from cellpipe.core.runlock import run_lock

log = logging.getLogger(__name__)

IMAGES, INDEX, META = "images.npy", "index.csv", "meta.json"
LAYOUT = "NCHW"  # caches of an older layout are packed again


def site_files(source, row, site: int) -> List[Path]:
    return list(dict.fromkeys(source.image_files(row, site, list(range(1, source.n_channels + 1)))))


def uint8_planes(source, row, site: int, channels, image_size: int) -> List[np.ndarray]:
    """One site's planes as a cache stores them: resized to ``image_size`` and rounded to uint8."""
    return [p if p.dtype == np.uint8 else np.clip(np.rint(p), 0, 255).astype(np.uint8)
            for p in resize_planes(source.load_planes(row, site, list(channels)), int(image_size))]


def site_key(source, row, site: int, files: Optional[List[Path]] = None) -> str:
    own = source.cache_key(row, site)  # samples that share one file (cells in crops.npy) name themselves
    if own is not None:
        return own
    path = (files or site_files(source, row, site))[0]
    try:
        return str(Path(path).relative_to(source.root))
    except ValueError:
        return str(path)


def cache_rows(source) -> pd.DataFrame:
    """What a cache holds: the source's catalog plus any extra rows it declares (RxRx1's control wells)."""
    extra = getattr(source, "cache_extra_rows", None)
    table = source.catalog()
    return pd.concat([table, extra()], ignore_index=True) if extra else table


def fingerprint(source, rows: pd.DataFrame) -> Tuple[str, List[Tuple[dict, int, str]]]:
    """sha1 over every image file's path, size and mtime, and the (row, site, key) list to pack."""
    digest, items = hashlib.sha1(), []
    for f in source.pixel_inputs():  # illumination functions change the pixels, not the files
        st = f.stat()
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for row in rows.to_dict("records"):
        for site in source.sites:
            files = site_files(source, row, site)
            if not all(f.is_file() for f in files):
                continue  # a site the input does not have (checked when a run uses it)
            for f in files:
                st = f.stat()
                digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            items.append((row, site, site_key(source, row, site, files)))
    return digest.hexdigest(), items


def cache_dir(root, source, image_size: int) -> Path:
    key = f"{source.name}\0{Path(source.root).resolve()}"
    if source.illumination is not None:  # corrected pixels: a cache of their own
        key += f"\0{source.illumination.folder.resolve()}"
    tag = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Path(root) / f"{source.name}-{int(image_size)}px-{tag}"


def pack(source, root, image_size: int, force: bool = False) -> Path:
    """Pack ``source`` at ``image_size`` under ``root`` unless an up-to-date cache is there; its folder."""
    target = cache_dir(root, source, image_size)
    with run_lock(Path(root), "cache folder"):
        rows = cache_rows(source)
        print_hash, items = fingerprint(source, rows)
        meta_path = target / META
        if meta_path.is_file() and not force:
            meta = json.loads(meta_path.read_text())
            if (meta.get("fingerprint") == print_hash and meta.get("image_size") == int(image_size)
                    and meta.get("layout") == LAYOUT):
                log.info("cache up to date: %s (%d sites)", target, meta["n"])
                return target
            log.info("cache %s is stale (the images or the size changed): packing again", target)
        with fsutil.staged_dir(target) as staged:
            shape = (len(items), source.n_channels, int(image_size), int(image_size))
            array = np.lib.format.open_memmap(staged / IMAGES, mode="w+", dtype=np.uint8, shape=shape)
            channels = list(range(1, source.n_channels + 1))
            for i, (row, site, _) in enumerate(tqdm(items, desc="pack cache", unit="site")):
                array[i] = np.stack(uint8_planes(source, row, site, channels, image_size))
            array.flush()
            del array
            fsutil.write_csv(pd.DataFrame({"key": [k for _, _, k in items]}), staged / INDEX)
            fsutil.write_text(json.dumps({"source": source.name, "root": str(source.root), "image_size": int(image_size),
                                          "n_channels": source.n_channels, "n": len(items), "layout": LAYOUT,
                                          "fingerprint": print_hash}, indent=2), staged / META)
    log.info("packed %d sites of %s at %d px into %s", len(items), source.describe(), image_size, target)
    return target


MEMORY = "memory"  # data_params/cache value of the in-memory cache


class MemoryImages:
    """Decoded, resized planes of the sites read so far, in this process's memory, as uint8 (what the
    packed cache stores), up to ``max_gb``; sites beyond it are read from their files."""

    def __init__(self, image_size: int, max_gb: float):
        self.image_size = int(image_size)
        self.max_bytes = float(max_gb) * 2 ** 30
        self.planes, self.bytes, self.full = {}, 0, False

    def has(self, source, row, site: int) -> bool:
        return False  # nothing is held before its first read: every file is still checked

    def read(self, source, row, site: int, channels) -> List[np.ndarray]:
        key = (site_key(source, row, site), tuple(channels))
        if key in self.planes:
            return self.planes[key]
        planes = uint8_planes(source, row, site, channels, self.image_size)
        size = sum(p.nbytes for p in planes)
        if not self.full and self.bytes + size <= self.max_bytes:
            self.planes[key], self.bytes = planes, self.bytes + size
        elif not self.full:  # the first site that does not fit: say so once
            self.full = True
            log.warning("data_params/cache=memory is full (data_params/cache_max_gb=%.3g GB): further sites are "
                        "read from their files", self.max_bytes / 2 ** 30)
        return planes


class PackedImages:
    """Read side of a cache; opens its memmap lazily in each process (DataLoader workers)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        meta = json.loads((self.folder / META).read_text())
        self.image_size, self.n_channels = meta["image_size"], meta["n_channels"]
        keys = pd.read_csv(self.folder / INDEX)["key"].astype(str)
        self.index = dict(zip(keys, range(len(keys))))
        self._array: Optional[np.ndarray] = None
        self.misses = 0

    def __getstate__(self):  # workers get the path, not the mapped array
        return {**self.__dict__, "_array": None}

    def has(self, source, row, site: int) -> bool:
        return site_key(source, row, site) in self.index

    def read(self, source, row, site: int, channels) -> Optional[List[np.ndarray]]:
        """One H x W uint8 plane per channel (views of the memmap: no copy), or None when the site is
        not in the cache."""
        i = self.index.get(site_key(source, row, site))
        if i is None:
            self.misses += 1
            if self.misses == 1:
                log.warning("%s: site %s/%s is not in the cache; such sites are read from their files",
                            self.folder, row.get("id"), site)
            return None
        if self._array is None:
            self._array = np.load(self.folder / IMAGES, mmap_mode="r")
        return [self._array[i, c - 1] for c in channels]
