"""Opera Phenix / Harmony exports: one 16-bit TIFF per (well, field, plane, channel).

    {root}/[Images/]r{row:02}c{col:02}f{field:02}p{plane:02}-ch{channel}sk{k}fk{k}fl{k}.tiff

Row 1 is A, so r03c03 is well C03. A sample is a well; its fields are the sites;
one z-plane is used (``plane``). Labels come from a plate map CSV with columns
``well`` and ``label`` (optional ``split``: train/valid/test, ``group``, any other
column kept); wells without a plate map row are unlabelled test samples. Deep
images need ``data_params/rescale`` (e.g. a percentile window).
"""
import re
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import SPLIT_SPELLING, Source, map_split_values

FILE_RE = re.compile(r"^r(\d+)c(\d+)f(\d+)p(\d+)-ch(\d+)sk\d+fk\d+fl\d+\.tiff?$", re.IGNORECASE)


def well_name(row: int, col: int) -> str:
    """Phenix row/column numbers -> well name: (3, 3) -> C03."""
    letters = ""
    row = int(row)
    while row > 0:
        row, rem = divmod(row - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return f"{letters}{int(col):02d}"


def scan(folder: Path) -> pd.DataFrame:
    """Every Phenix image file of a folder: path, well, field, plane, channel."""
    rows = []
    for p in sorted(folder.iterdir()):
        m = FILE_RE.match(p.name)
        if m:
            r, c, f, z, ch = (int(x) for x in m.groups())
            rows.append({"file": p.name, "well": well_name(r, c), "field": f, "plane": z, "channel": ch})
    return pd.DataFrame(rows, columns=["file", "well", "field", "plane", "channel"])


@SOURCES.register("phenix")
class PhenixSource(Source):
    name = "phenix"
    plate_columns = ("plate",)
    well_column = "well"
    per_channel_files = True
    levels = {"plate": ["plate"], "group": ["group"]}

    def __init__(self, root, rescale: Optional[dict] = None,
                 plate_map: Optional[str] = None, plane: int = 1, plate: str = "1", images: str = "auto"):
        super().__init__(root, rescale)
        self.folder = self.root / "Images" if images == "auto" and (self.root / "Images").is_dir() else \
            self.root / ("" if images == "auto" else images)
        self.plate_map = None if plate_map is None else (Path(plate_map) if Path(plate_map).is_absolute()
                                                          else self.root / plate_map)
        self.plane, self.plate = int(plane), str(plate)
        self._files = None

    def describe(self) -> str:
        return str(self.folder)

    def files(self) -> pd.DataFrame:
        if self._files is None:
            if not self.folder.is_dir():
                raise DataError(f"Phenix image folder not found: {self.folder}")
            files = scan(self.folder)
            if files.empty:
                raise DataError(f"{self.folder}: no Phenix files named like r03c03f03p01-ch1sk1fk1fl1.tiff")
            files = files[files["plane"] == self.plane]
            if files.empty:
                raise DataError(f"{self.folder}: no files of plane {self.plane} (source_params/plane)")
            self._files = files.set_index(["well", "field", "channel"]).sort_index()
        return self._files

    @property
    def channel_names(self):
        return [f"ch{c}" for c in sorted(self.files().index.get_level_values("channel").unique())]

    @property
    def sites(self):
        return sorted(int(f) for f in self.files().index.get_level_values("field").unique())

    def build_catalog(self) -> pd.DataFrame:
        wells = sorted(self.files().index.get_level_values("well").unique())
        table = pd.DataFrame({"well": wells, "plate": self.plate})
        table["id"] = self.plate + "_" + table["well"]
        if self.plate_map is None:
            return table.assign(split="test", label=None)
        pm = read_table(self.plate_map, ["well", "label"])
        dup = pm["well"][pm["well"].duplicated()]
        if len(dup):
            raise DataError(f"{self.plate_map}: well {dup.iloc[0]} is listed twice")
        if "split" in pm.columns:
            pm["split"] = map_split_values(pm["split"], SPLIT_SPELLING, f"{self.plate_map} column 'split'")
        table = table.merge(pm, on="well", how="left", suffixes=("", "_map"))
        if "split" not in table.columns:
            table["split"] = "train"
        table["split"] = table["split"].where(table["label"].notna() | table["split"].notna(), "test").fillna("test")
        return table

    def image_files(self, row, site: int, channels: Sequence[int]):
        names = self.channel_names
        files = self.files()
        out = []
        for c in channels:
            ch = int(names[c - 1][2:])
            key = (row["well"], int(site), ch)
            if key not in files.index:
                out.append(self.folder / f"missing-well{row['well']}-field{site}-ch{ch}.tiff")
            else:
                out.append(self.folder / files.loc[key, "file"])
        return out
