"""Find near-duplicate images by perceptual hash and write their groups (seed 004's phash step).

    python src/dedup.py DATA_ROOT --source hpa --out duplicates.csv [--threshold 4]
    python src/make_folds.py DATA_ROOT --source hpa --target multilabel \
        --duplicates duplicates.csv --duplicate_mode group      # or drop

Writes ``id, hash, dup_group, group_size`` for every sample of ``splits``; samples whose
64-bit pHashes differ in at most ``threshold`` bits share a dup_group (transitively).
make_folds.py then keeps each group inside one fold (group) or keeps one image per group (drop).
"""
import logging
from pathlib import Path

from cellpipe.core import cli, fsutil
from cellpipe.data.dedup import duplicate_groups, hash_table
from cellpipe.sources import make_source

log = logging.getLogger(__name__)


def main(data_root, out="duplicates.csv", source="hpa", source_params=None, threshold: int = 4, channels="auto",
         splits=("train",), hash_size: int = 8, rescale=None):
    """Hash every sample of ``splits`` and write the duplicate groups.

    Args:
        data_root: the data folder of the source.
        out: output CSV (id, hash, dup_group, group_size).
        source: input adapter (hpa, manifest, folder, phenix, rxrx1_2020, rxrx1).
        source_params: the adapter's settings, e.g. {manifest: m.csv}.
        threshold: most differing pHash bits of two duplicates (0 = identical hashes; default 4).
        channels: channels averaged into the hashed image (1-based list, default all).
        splits: which splits are hashed (default train).
        hash_size: pHash side (hash_size^2 bits; 8 = 64-bit hashes, the only size compared here).
        rescale: rule for deeper-than-8-bit images (data_params/rescale).
    """
    if int(hash_size) != 8:
        raise cli.UserError("hash_size must be 8 (64-bit hashes)")
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
        raise cli.UserError(f"--threshold must be a whole number of bits >= 0, got {threshold!r}")
    src = make_source({"source": source, "root": data_root, "source_params": source_params or {},
                       "rescale": rescale})
    table = src.catalog()
    splits = [splits] if isinstance(splits, str) else list(splits)
    table = table[table["split"].isin(splits)].reset_index(drop=True)
    hashes = hash_table(src, table, src.check_channels(channels), hash_size)
    dups = duplicate_groups(table["id"], hashes, threshold)
    fsutil.write_csv(dups, Path(out))
    n_groups = int((dups.drop_duplicates("dup_group")["group_size"] > 1).sum())
    n_copies = int((dups["id"] != dups["dup_group"]).sum())
    print(f"{len(dups)} samples hashed: {n_groups} duplicate group(s), {n_copies} copies; wrote {out}")
    return {"samples": len(dups), "groups": n_groups, "copies": n_copies}


if __name__ == "__main__":
    cli.run(main)
