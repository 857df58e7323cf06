"""Fold files of any source (cross-validation): ``train_{k}.csv`` / ``valid_{k}.csv`` listing sample ids,
and ``folds.json`` with the rule; near-duplicate groups (dedup.py) stay in one fold or lose their copies."""
import json
from pathlib import Path

from cellpipe.core import fsutil, layout
from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.data.dedup import drop_copies
from cellpipe.data.folds import make_folds, merge_groups
from cellpipe.sources import make_source
from cellpipe.tasks import task_class


def write_folds(data_root, out_dir, n_folds, seed, source, source_params, grouped, splits, target="single",
                  label_sep=" ", duplicates=None, duplicate_mode="group"):
    """Fold files (``id`` lists) of any source's labelled rows of ``splits``, for train.py's
    data_params/train_csv and valid_csv (cross-validation)."""
    if duplicate_mode not in ("group", "drop"):
        raise DataError(f"--duplicate_mode must be group or drop, got {duplicate_mode!r}")
    src = make_source({"source": source, "root": data_root, "source_params": source_params or {}})
    table = src.catalog()
    splits = [splits] if isinstance(splits, str) else list(splits)
    table = table[table["split"].isin(splits)].reset_index(drop=True)
    rule = task_class(target, "--target").fold_rule(grouped)
    if duplicates is not None:
        dups = read_table(duplicates, ["id", "dup_group"])
        if duplicate_mode == "drop":
            before = len(table)
            table = drop_copies(table, dups.assign(id=dups["id"].astype(str), dup_group=dups["dup_group"].astype(str)))
            rule += f"; {before - len(table)} near-duplicate copies dropped ({duplicates})"
        else:
            table = table.assign(group=merge_groups(table, dups))
            grouped = True
            rule += f"; near-duplicates ({duplicates}) kept in one fold"
    record = []
    for k, (tr, va) in enumerate(make_folds(table, n_folds, seed, grouped, target, label_sep)):
        fsutil.write_csv(tr[["id", "label", "group"]], Path(out_dir) / layout.TRAIN_FOLD.format(k=k))
        fsutil.write_csv(va[["id", "label", "group"]], Path(out_dir) / layout.VALID_FOLD.format(k=k))
        record.append({"fold": k, "n_train": len(tr), "n_valid": len(va)})
    meta = {"source": source, "n_folds": n_folds, "seed": seed, "grouped": grouped, "splits": splits,
            "target": target, "rule": rule, "folds": record}
    fsutil.write_text(json.dumps(meta, indent=2) + "\n", Path(out_dir) / layout.FOLDS_JSON)
    print(f"wrote {n_folds} folds of {len(table)} {source} samples to {out_dir}")
