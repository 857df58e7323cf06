"""Single cells cut by src/prep_crops.py: a sample is a cell, its group the well it came from.

    {root}/cells.parquet  one row per cell (id, well_id, plate, well, site, x, y, label, split,
                          group, control, the well's other columns)
    {root}/crops.npy      N x C x S x S uint8, read in place (memmap)

Plates, wells and normalisation levels are the original source's (cells.json), so per-plate
normalisation, plate-aware folds and profiles work as for wells; src/profile.py averages the
cells of a well into the well's profile.
"""
import json
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source

CELLS, CROPS, META = "cells.parquet", "crops.npy", "cells.json"  # the files src/prep_crops.py writes


@SOURCES.register("cells")
class CellsSource(Source):
    name = "cells"

    def __init__(self, root, rescale: Optional[dict] = None):
        super().__init__(root, rescale)
        self.crops, self.table_file, meta_file = self.root / CROPS, self.root / CELLS, self.root / META
        for f in (self.crops, self.table_file, meta_file):
            if not f.is_file():
                raise DataError(f"{self.root} is not a crops folder of src/prep_crops.py ({f.name} missing)")
        self.meta = json.loads(meta_file.read_text())
        self.plate_columns = tuple(self.meta["plate_columns"])
        self.well_column = self.meta["well_column"]
        # the original source's normalisation levels (RxRx1: plate, experiment), and the group (the well)
        levels = self.meta.get("levels") or ({"plate": list(self.plate_columns)} if self.plate_columns else {})
        self.levels = {**{k: list(v) for k, v in levels.items()}, "group": ["group"]}
        self._array = None

    def __getstate__(self):  # loader workers map the crops file themselves (no copy of it in the pickle)
        return {**self.__dict__, "_array": None}

    def illumination_functions(self, row, channels):
        if self.illumination is not None:
            raise ConfigError("data_params/illumination: cells are cut from corrected images (src/prep_crops.py "
                              "--illumination); set it to null for source cells")
        return None

    def describe(self) -> str:
        return str(self.table_file)

    def build_catalog(self) -> pd.DataFrame:
        df = pd.read_parquet(self.table_file)
        df["index"] = np.arange(len(df))
        return df

    @property
    def channel_names(self) -> List[str]:
        return list(self.meta["channel_names"])

    @staticmethod
    def negative_controls(table: pd.DataFrame) -> pd.Series:
        """The cells of the original source's control wells (its own rule, applied at crop time)."""
        return table["control"].astype(bool) if "control" in table.columns else pd.Series(False, index=table.index)

    def image_files(self, row, site: int, channels: Sequence[int]) -> List[Path]:
        return [self.crops]

    def cache_key(self, row, site: int) -> str:
        return f"{CROPS}#{int(row['index'])}"  # every cell lives in the one crops file

    def read_arrays(self, row, site: int, channels: Sequence[int]):
        if self._array is None:  # opened lazily: each loader process maps the file itself
            self._array = np.load(self.crops, mmap_mode="r")
        return [np.ascontiguousarray(self._array[int(row["index"])].transpose(1, 2, 0))], [self.crops]
