"""A table of samples (seed 000's manifest): CSV or parquet, one row per image.

    img_path   image path relative to the manifest's folder (or one column per channel)
    split_set  TRAIN | VAL | TEST
    label      class name
    is_gt      True = ground truth; False = pseudo label (kept for training only with use_pseudo)
    group      optional: samples that must stay in one fold (patient, plate, source...)

Any other column is kept in the sample table (e.g. a taxonomy column that
``data_params/filter`` can select a subset by).
"""
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.images import read_image
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source, map_split_values

SPLIT_VALUES = {"TRAIN": "train", "VAL": "valid", "VALID": "valid", "TEST": "test",
                "train": "train", "val": "valid", "valid": "valid", "test": "test"}


def truthy(values: pd.Series, where: str) -> pd.Series:
    """is_gt as booleans: True/False, 1/0, 'true'/'false' (any case)."""
    text = values.astype(str).str.strip().str.lower()
    mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    out = text.map(mapping)
    if out.isna().any():
        raise DataError(f"{where}: value {values[out.isna()].iloc[0]!r} is not True/False")
    return out.astype(bool)


@SOURCES.register("manifest")
class ManifestSource(Source):
    name = "manifest"

    def __init__(self, root, rescale: Optional[dict] = None,
                 manifest: str = "manifest.parquet", path_column: str = "img_path",
                 channel_columns: Optional[List[str]] = None, channel_names: Optional[List[str]] = None,
                 label_column: str = "label", split_column: str = "split_set", id_column: Optional[str] = None,
                 use_pseudo: bool = False):
        super().__init__(root, rescale)
        self.manifest = Path(manifest) if Path(manifest).is_absolute() else self.root / manifest
        self.path_columns = list(channel_columns) if channel_columns else [path_column]
        self.per_channel = self.per_channel_files = bool(channel_columns)
        self._names = list(channel_names) if channel_names else None
        self.label_column, self.split_column, self.id_column = label_column, split_column, id_column
        self.use_pseudo = bool(use_pseudo)

    def describe(self) -> str:
        return str(self.manifest)

    def build_catalog(self) -> pd.DataFrame:
        where = str(self.manifest)
        df = read_table(self.manifest, [*self.path_columns, self.split_column, self.label_column])
        for col in self.path_columns:
            empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
            if empty.any():
                raise DataError(f"{where}: column '{col}' is empty in row {int(empty.to_numpy().argmax())}")
        split = map_split_values(df[self.split_column], SPLIT_VALUES, f"{where} column '{self.split_column}'")
        ids = df[self.id_column] if self.id_column else df[self.path_columns[0]]
        out = df.assign(id=ids.astype(str), split=split, label=df[self.label_column])
        if "is_gt" in df.columns:
            out["is_gt"] = truthy(df["is_gt"], f"{where} column 'is_gt'")
            if not self.use_pseudo:
                out = out[out["is_gt"] | (out["split"] == "test")]
        return out.reset_index(drop=True)

    @property
    def channel_names(self) -> List[str]:
        if self._names is None:
            if self.per_channel:
                self._names = list(self.path_columns)
            else:  # one file per sample: its channel count is the first image's
                first = self.catalog().iloc[0]
                n = read_image(self._path(first[self.path_columns[0]])).shape[-1]
                self._names = ["R", "G", "B"] if n == 3 else [f"ch{i + 1}" for i in range(n)]
        return self._names

    def _path(self, value) -> Path:
        return self.manifest.parent / str(value)

    def image_files(self, row, site: int, channels: Sequence[int]):
        if self.per_channel:
            return [self._path(row[self.path_columns[c - 1]]) for c in channels]
        return [self._path(row[self.path_columns[0]])]
