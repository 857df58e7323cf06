"""Folds of any sample table: stratified by label, grouped by ``group`` when asked (seed 003's CV).

Multi-label tables (``target='multilabel'``, labels as separated names or ids) use iterative
stratification (iterative-stratification's MultilabelStratifiedKFold: Sechidis et al. 2011),
so that rare classes appear in every validation fold; with ``grouped`` it stratifies whole
groups (their labels' union) and a group never spans two folds.
"""
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cellpipe.core.errors import DataError


def multi_hot(labels: pd.Series, sep: Optional[str] = " ") -> np.ndarray:
    """0/1 matrix (rows x distinct tokens) of separated label cells."""
    tokens = [[t for t in str(v).split(sep if sep and sep.strip() else None) if t] for v in labels]
    names = sorted({t for ts in tokens for t in ts})
    index = {t: i for i, t in enumerate(names)}
    out = np.zeros((len(tokens), len(names)), np.int64)
    for i, ts in enumerate(tokens):
        out[i, [index[t] for t in ts]] = 1
    return out


def multilabel_folds(df: pd.DataFrame, n_folds: int, seed: int, grouped: bool, sep: Optional[str]):
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    y = multi_hot(df["label"], sep)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    if not grouped:
        return list(splitter.split(np.zeros(len(df)), y))
    codes, groups = pd.factorize(df["group"])
    group_y = np.zeros((len(groups), y.shape[1]), np.int64)
    np.maximum.at(group_y, codes, y)
    out = []
    for tr, va in splitter.split(np.zeros(len(groups)), group_y):
        out.append((np.flatnonzero(np.isin(codes, tr)), np.flatnonzero(np.isin(codes, va))))
    return out


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
    if target == "multilabel":
        splits = multilabel_folds(df, n_folds, seed, grouped, sep)
    elif grouped:
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(df, df["label"], df["group"])
    else:
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(df, df["label"])
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
