"""Tables (CSV or parquet) with required columns, read with errors that name the file and column."""
import re
from pathlib import Path
from typing import Iterable, List

import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError

PARQUET = (".parquet", ".pq")


def natural_sort(names: Iterable[str]) -> List[str]:
    """Distinct names, numbers compared as numbers ('2' < '10'), everything else as text."""
    def key(s):
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]
    return sorted(set(names), key=key)


def read_table(path, required: Iterable[str] = (), integers: Iterable[str] = (), numbers: Iterable[str] = (),
               unique: Iterable[str] = (), text: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV or parquet file (by suffix) that must have the ``required`` columns, whole numbers in
    ``integers``, finite numbers in ``numbers`` and no repeated key of the ``unique`` columns;
    ``text`` columns are read as written (a plate ``001`` stays ``001``, not 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    try:
        if path.suffix.lower() in PARQUET:
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={c: str for c in text} or None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(f"cannot parse table {path}: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks required column(s) {missing}; it has {list(df.columns)}")
    for column in integers:
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values) | (values.fillna(0) % 1 != 0)
        _reject(path, df, column, bad, "whole numbers")
        df[column] = values.astype(np.int64)
    for column in numbers:
        values = pd.to_numeric(df[column], errors="coerce")
        _reject(path, df, column, values.isna() | ~np.isfinite(values), "finite numbers")
        df[column] = values.astype(np.float64)
    unique = list(unique)
    if unique:
        dup = df.duplicated(unique)
        if dup.any():
            key = df.loc[dup, unique].iloc[0].tolist()
            raise DataError(f"{path}: {unique} = {key} appears more than once (row {int(dup.to_numpy().argmax()) + 2})")
    return df


def _reject(path, df, column, bad: pd.Series, what: str) -> None:
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(f"{path}: column '{column}' must hold {what}; row {row + 2} has {df[column].iloc[row]!r}")


def write_table(df: pd.DataFrame, path) -> None:
    """CSV or parquet by suffix, atomically."""
    from cellpipe.core.fsutil import atomic_path, write_csv

    path = Path(path)
    if path.suffix.lower() in PARQUET:
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    else:
        write_csv(df, path)
