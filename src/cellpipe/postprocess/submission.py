"""Submission files: validated before they are written."""
import pandas as pd

from cellpipe.core.errors import DataError


def validate_submission(sub: pd.DataFrame, test_df: pd.DataFrame, n_classes: int) -> None:
    """Raise DataError unless every test id_code appears once with an integer sirna in range."""
    if list(sub.columns) != ["id_code", "sirna"]:
        raise DataError(f"submission columns are {list(sub.columns)}, expected ['id_code', 'sirna']")
    dup = sub["id_code"][sub["id_code"].duplicated()].unique()
    if len(dup):
        raise DataError(f"submission has {len(dup)} duplicated id_code(s), e.g. {list(dup[:5])}")
    expected = pd.Index(test_df["id_code"])
    given = pd.Index(sub["id_code"])
    missing = expected.difference(given)
    if len(missing):
        raise DataError(f"submission lacks {len(missing)} test id_code(s), e.g. {list(missing[:5])}")
    extra = given.difference(expected)
    if len(extra):
        raise DataError(f"submission has {len(extra)} id_code(s) not in test.csv, e.g. {list(extra[:5])}")
    if not pd.api.types.is_integer_dtype(sub["sirna"]):
        raise DataError(f"submission sirna must be integers, got dtype {sub['sirna'].dtype}")
    bad = sub["id_code"][(sub["sirna"] < 0) | (sub["sirna"] >= n_classes)]
    if len(bad):
        raise DataError(f"submission sirna outside 0..{n_classes - 1} for {len(bad)} id_code(s), e.g. {list(bad[:5])}")
