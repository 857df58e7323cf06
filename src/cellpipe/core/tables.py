"""Tables (CSV or parquet) with required columns, read with errors that name the file and column."""
from pathlib import Path
from typing import Iterable

import pandas as pd

from cellpipe.core.errors import DataError

PARQUET = (".parquet", ".pq")


def read_table(path, required: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV or parquet file (by suffix) that must have the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    try:
        if path.suffix.lower() in PARQUET:
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(f"cannot parse table {path}: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks required column(s) {missing}; it has {list(df.columns)}")
    return df


def write_table(df: pd.DataFrame, path) -> None:
    """CSV or parquet by suffix, atomically."""
    from cellpipe.core.fsutil import atomic_path, write_csv

    path = Path(path)
    if path.suffix.lower() in PARQUET:
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    else:
        write_csv(df, path)
