"""Folds of any sample table: stratified by label, grouped by ``group`` when asked (seed 003's CV)."""
from typing import List, Tuple

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cellpipe.core.errors import DataError


def make_folds(table: pd.DataFrame, n_folds: int, seed: int, grouped: bool = True) -> List[Tuple[pd.DataFrame, pd.DataFrame]]:
    """(train, valid) pairs over the labelled rows; with ``grouped`` a group never spans two folds."""
    df = table[table["label"].notna()].reset_index(drop=True)
    if n_folds < 2:
        raise DataError(f"n_folds={n_folds} must be at least 2")
    counts = df["label"].value_counts()
    if len(df) < n_folds or counts.min() < 1:
        raise DataError(f"{len(df)} labelled samples cannot make {n_folds} folds")
    if grouped:
        if df["group"].nunique() < n_folds:
            raise DataError(f"{df['group'].nunique()} groups cannot make {n_folds} grouped folds (grouped=False?)")
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(df, df["label"], df["group"])
    else:
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(df, df["label"])
    return [(df.iloc[tr].reset_index(drop=True), df.iloc[va].reset_index(drop=True)) for tr, va in splits]
