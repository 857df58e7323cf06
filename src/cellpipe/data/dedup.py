"""Near-duplicate images by perceptual hash (seed 004: microscope re-scans look alike and
would leak between training and validation).

Each sample's image (the mean of the chosen channels of its first site) is reduced to
imagehash's 64-bit pHash; samples whose hashes differ in at most ``threshold`` bits are
linked, and linked samples (transitively) form one duplicate group.
"""
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from cellpipe.core.errors import DataError


def phash(image: np.ndarray, hash_size: int = 8) -> int:
    """pHash of an H x W x C image in 8-bit units (channels averaged) as an int."""
    import imagehash

    grey = np.clip(np.asarray(image, np.float32).mean(axis=-1), 0, 255).astype(np.uint8)
    bits = imagehash.phash(Image.fromarray(grey), hash_size=hash_size).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hash_table(source, table: pd.DataFrame, channels: Sequence[int], hash_size: int = 8) -> np.ndarray:
    site = source.sites[0]
    rows = table.to_dict("records")
    return np.array([phash(source.load(r, site, channels), hash_size)
                     for r in tqdm(rows, desc="phash", leave=False)], dtype=np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def duplicate_pairs(hashes: np.ndarray, threshold: int, chunk: int = 2048):
    """(i, j, distance) with i < j and Hamming distance <= threshold (64-bit hashes)."""
    if threshold < 0:
        raise DataError(f"threshold={threshold} must be 0 or more bits")
    hashes = np.asarray(hashes, np.uint64)
    out = []
    for start in range(0, len(hashes), chunk):
        block = hashes[start:start + chunk]
        dist = _popcount(block[:, None] ^ hashes[None, :])
        i, j = np.nonzero(dist <= threshold)
        i = i + start
        keep = i < j
        out.extend(zip(i[keep].tolist(), j[keep].tolist(), dist[i[keep] - start, j[keep]].tolist()))
    return out


def duplicate_groups(ids: Sequence[str], hashes: np.ndarray, threshold: int) -> pd.DataFrame:
    """id, hash (hex), dup_group (the group's first id), group_size, for every sample."""
    ids = [str(i) for i in ids]
    parent = list(range(len(ids)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in duplicate_pairs(hashes, threshold):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(len(ids))]
    df = pd.DataFrame({"id": ids, "hash": [f"{int(h):016x}" for h in hashes],
                       "dup_group": [ids[r] for r in roots]})
    df["group_size"] = df.groupby("dup_group")["id"].transform("size")
    return df


def drop_copies(table: pd.DataFrame, duplicates: pd.DataFrame) -> pd.DataFrame:
    """Keep one sample (the group's first id) of each duplicate group."""
    first = set(duplicates.loc[duplicates["id"] == duplicates["dup_group"], "id"])
    listed = set(duplicates["id"])
    keep = table["id"].map(lambda i: i not in listed or i in first)
    return table[keep.to_numpy()].reset_index(drop=True)
