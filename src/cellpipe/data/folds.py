"""Folds of any sample table, stratified as its target kind says (Task.fold_splits), grouped by
``group`` when asked (seed 003's CV): a group never spans two folds.
"""
from typing import List, Optional, Tuple

import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.tasks import task_class


def make_folds(table: pd.DataFrame, n_folds: int, seed: int, grouped: bool = True, target: str = "single",
               sep: Optional[str] = " ") -> List[Tuple[pd.DataFrame, pd.DataFrame]]:
    """(train, valid) pairs over the labelled rows; with ``grouped`` a group never spans two folds."""
    df = table[table["label"].notna()].reset_index(drop=True)
    if n_folds < 2:
        raise DataError(f"n_folds={n_folds} must be at least 2")
    counts = df["label"].value_counts()
    if len(df) < n_folds or counts.min() < 1:
        raise DataError(f"{len(df)} labelled samples cannot make {n_folds} folds")
    if grouped and df["group"].nunique() < n_folds:
        raise DataError(f"{df['group'].nunique()} groups cannot make {n_folds} grouped folds (grouped=False?)")
    splits = task_class(target, "--target").fold_splits(df, n_folds, seed, grouped, sep)
    folds = [(df.iloc[tr].reset_index(drop=True), df.iloc[va].reset_index(drop=True)) for tr, va in splits]
    for k, (_, va) in enumerate(folds):
        if va.empty:
            raise DataError(f"fold {k} got no validation sample ({len(df)} samples, {n_folds} folds)")
    return folds


def merge_groups(table: pd.DataFrame, duplicates: pd.DataFrame) -> pd.Series:
    """``group`` joined with duplicate groups (``id``, ``dup_group``): samples linked by either
    share one group, so near-duplicates never sit on both sides of a fold."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    dup = dict(zip(duplicates["id"].astype(str), duplicates["dup_group"].astype(str)))
    for sid, group in zip(table["id"], table["group"]):
        union(("g", str(group)), ("s", sid))
        if sid in dup:
            union(("d", dup[sid]), ("s", sid))
    return pd.Series([str(find(("s", sid))[1]) for sid in table["id"]], index=table.index)
