"""RxRx1 as rxrx.ai released it in 2020: one metadata.csv (a row per site), test labels included.

    {root}/metadata.csv   site_id, well_id, cell_type, dataset, experiment, plate, well, site,
                          well_type, sirna, sirna_id   (column names as in recursionpharma/rxrx-datasets)
    {root}/images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png

A sample is a well (``well_id``), its sites are views; ``dataset`` (train/test) is the
split and ``sirna_id`` the class. ``well_types`` picks which wells are samples
(treatment by default; add the controls for control pretraining).
"""
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import map_split_values
from cellpipe.sources.rxrx1 import RxrxPlates

METADATA_COLUMNS = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
                    "well_type", "sirna", "sirna_id"]
WELL_TYPES = ("treatment", "negative_control", "positive_control")


def image_path(root, experiment: str, plate: int, well: str, site: int, channel: int) -> Path:
    return Path(root) / "images" / str(experiment) / f"Plate{int(plate)}" / f"{well}_s{int(site)}_w{int(channel)}.png"


@SOURCES.register("rxrx1_2020")
class Rxrx12020Source(RxrxPlates):
    name = "rxrx1_2020"

    def __init__(self, root, rescale: Optional[dict] = None,
                 metadata: str = "metadata.csv", well_types: Sequence[str] = ("treatment",)):
        super().__init__(root, rescale)
        self.metadata = self.root / metadata
        unknown = sorted(set(well_types) - set(WELL_TYPES))
        if unknown:
            raise DataError(f"source_params/well_types: unknown {unknown}; known: {list(WELL_TYPES)}")
        self.well_types = list(well_types)
        self._sites = [1, 2]

    def describe(self) -> str:
        return str(self.metadata)

    @property
    def sites(self):
        return self._sites

    def build_catalog(self) -> pd.DataFrame:
        meta = read_table(self.metadata, METADATA_COLUMNS)
        bad = ~meta["well_type"].isin(WELL_TYPES)
        if bad.any():
            raise DataError(f"{self.metadata}: column 'well_type' has unknown value {meta.loc[bad, 'well_type'].iloc[0]!r}")
        meta = meta[meta["well_type"].isin(self.well_types)]
        if meta.empty:
            raise DataError(f"{self.metadata}: no rows with well_type in {self.well_types}")
        self._sites = sorted(int(s) for s in meta["site"].unique())
        wells = meta.drop_duplicates("well_id").drop(columns=["site_id", "site"])
        wells = wells.assign(id=wells["well_id"].astype(str), label=wells["sirna_id"],
                             group=wells["experiment"].astype(str),
                             split=map_split_values(wells["dataset"], {"train": "train", "test": "test"},
                                                    f"{self.metadata} column 'dataset'"))
        return wells.reset_index(drop=True)

    def image_files(self, row, site: int, channels: Sequence[int]):
        return [image_path(self.root, row["experiment"], row["plate"], row["well"], site, c) for c in channels]
