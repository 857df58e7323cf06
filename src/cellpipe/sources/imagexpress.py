"""Molecular Devices ImageXpress (MetaXpress) exports: one TIFF per (plate, well, site, wavelength).

    {root}/[<plate folder>/][TimePoint_<t>/]<plate>_<well>[_s<site>][_w<channel>][<GUID>].tif

e.g. ``Plate1_B03_s2_w1C4E5F6A0-....tif``; thumbnails (``..._thumb<GUID>.tif``) are skipped. A
sample is a (plate, well), its sites the ``_s`` numbers (1 when absent), its channels the ``_w``
numbers (named w1, w2, ... unless ``channel_names`` gives names in wavelength order); one time
point is used (``timepoint``; files outside ``TimePoint_`` folders count as time point 1). Labels
come from a plate map (see ``sources.base.join_plate_map``); wells without one are test samples.
"""
import re
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source, join_plate_map

FILE_RE = re.compile(r"^(?P<plate>.+?)_(?P<well>[A-Za-z]{1,2}\d{2})(?:_s(?P<site>\d+))?(?:_w(?P<ch>\d+))?"
                     r"(?P<thumb>_thumb)?(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f-]{27})?\.tiff?$")
TIME_RE = re.compile(r"^TimePoint_(\d+)$", re.IGNORECASE)


def scan(root: Path, timepoint: int) -> pd.DataFrame:
    """Every image of ``timepoint`` under ``root``: file, plate, well, site, channel (thumbnails skipped)."""
    rows = []
    for p in sorted(root.rglob("*")):
        m = FILE_RE.match(p.name)
        if not m or m["thumb"] or not p.is_file():
            continue
        t = next((int(TIME_RE.match(d).group(1)) for d in p.relative_to(root).parts[:-1] if TIME_RE.match(d)), 1)
        if t != timepoint:
            continue
        rows.append({"file": p, "plate": m["plate"], "well": m["well"].upper(), "site": int(m["site"] or 1),
                     "channel": int(m["ch"] or 1)})
    return pd.DataFrame(rows, columns=["file", "plate", "well", "site", "channel"])


@SOURCES.register("imagexpress")
class ImageXpressSource(Source):
    name = "imagexpress"
    plate_columns = ("plate",)
    well_column = "well"
    per_channel_files = True
    levels = {"plate": ["plate"], "group": ["group"]}

    def __init__(self, root, rescale: Optional[dict] = None, platemap: Optional[str] = None,
                 platemap_label: str = "label", timepoint: int = 1, channel_names: Optional[List[str]] = None):
        super().__init__(root, rescale)
        self.platemap = None if platemap is None else (Path(platemap) if Path(platemap).is_absolute()
                                                       else self.root / platemap)
        self.platemap_label, self.timepoint, self._given = platemap_label, int(timepoint), channel_names
        self._files = None

    def files(self) -> pd.DataFrame:
        if self._files is None:
            if not self.root.is_dir():
                raise DataError(f"ImageXpress folder not found: {self.root}")
            files = scan(self.root, self.timepoint)
            if files.empty:
                raise DataError(f"{self.root}: no ImageXpress images of time point {self.timepoint} named like "
                                f"Plate1_B03_s1_w1.tif")
            dup = files.duplicated(["plate", "well", "site", "channel"])
            if dup.any():
                r = files[dup].iloc[0]
                raise DataError(f"{r.file}: a second file of plate {r.plate} well {r.well} site {r.site} "
                                f"channel w{r.channel}")
            self._files = files.set_index(["plate", "well", "site", "channel"]).sort_index()
        return self._files

    @property
    def _wavelengths(self) -> List[int]:
        return sorted(int(c) for c in self.files().index.get_level_values("channel").unique())

    @property
    def channel_names(self) -> List[str]:
        waves = self._wavelengths
        if self._given is None:
            return [f"w{c}" for c in waves]
        if len(self._given) != len(waves):
            raise DataError(f"source_params/channel_names lists {len(self._given)} name(s) but {self.root} has "
                            f"{len(waves)} wavelength(s) ({', '.join(f'w{c}' for c in waves)})")
        return list(self._given)

    @property
    def sites(self) -> List[int]:
        return sorted(int(s) for s in self.files().index.get_level_values("site").unique())

    def build_catalog(self) -> pd.DataFrame:
        wells = self.files().reset_index()[["plate", "well"]].drop_duplicates().reset_index(drop=True)
        table = wells.assign(id=wells["plate"] + "_" + wells["well"], group=wells["plate"])
        if self.platemap is None:
            return table.assign(split="test", label=None)
        return join_plate_map(table, self.platemap, self.platemap_label)

    def image_files(self, row, site: int, channels: Sequence[int]):
        files, waves = self.files(), self._wavelengths
        out = []
        for c in channels:
            key = (row["plate"], row["well"], int(site), waves[c - 1])
            out.append(files.loc[key, "file"] if key in files.index else
                       self.root / f"missing-{row['plate']}_{row['well']}_s{site}_w{waves[c - 1]}.tif")
        return out
