"""Near-duplicate hashing and grouping (seed 004's leak check)."""

import numpy as np
import pandas as pd

from cellpipe.data.dedup import drop_copies, duplicate_groups, duplicate_pairs, phash
from cellpipe.data.folds import merge_groups


def test_phash_finds_near_duplicates_and_groups_them():
    rng = np.random.default_rng(0)
    imgs = [rng.uniform(0, 255, (32, 32, 3)) for _ in range(4)]
    imgs.append(np.clip(imgs[1] + rng.normal(0, 2, imgs[1].shape), 0, 255))  # a re-scan of image 1
    hashes = np.array([phash(i) for i in imgs], dtype=np.uint64)
    assert (1, 4) in [(i, j) for i, j, _ in duplicate_pairs(hashes, 6)]
    dups = duplicate_groups([f"s{i}" for i in range(5)], hashes, 6)
    assert dups.loc[4, "dup_group"] == "s1" and dups["group_size"].tolist() == [1, 2, 1, 1, 2]
    tab = pd.DataFrame({"id": [f"s{i}" for i in range(5)], "group": list("abcde")})
    assert drop_copies(tab, dups)["id"].tolist() == ["s0", "s1", "s2", "s3"]
    merged = merge_groups(tab, dups)
    assert merged[1] == merged[4] and merged[0] != merged[1]
