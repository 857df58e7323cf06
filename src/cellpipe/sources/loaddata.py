"""CellProfiler LoadData CSV (the Cell Painting Gallery's and JUMP's ``load_data.csv``): one row per site.

    Metadata_Plate, Metadata_Well, Metadata_Site   the site (required)
    FileName_Orig<Channel>, PathName_Orig<Channel> one image per channel; <Channel> names the channel
    FileName_Illum<Channel>, PathName_Illum<Channel>  optional: an illumination function (.npy) per
                                                   channel, divided out at load (channels without
                                                   them are not corrected)
    Metadata_*                                     anything else: kept (prefix and all)

A sample is a well (``{plate}_{well}``), its sites the ``Metadata_Site`` values; the group is the
plate. Paths are absolute or relative to the CSV's folder; ``path_map`` rewrites folder prefixes
(the Gallery's ``s3://cellpainting-gallery/...`` to where the images were downloaded). Labels come from a column of the CSV
(``label_column``) or from a plate map (``platemap``: a CSV with a well column, ``well``,
``Metadata_Well`` or ``well_position``, and optionally a plate column, ``plate`` or
``Metadata_Plate``; without one the map applies to every plate) joined on plate and well. A
``split`` column (CSV or plate map) sets train/valid/test; otherwise labelled wells train and
unlabelled ones are test.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from cellpipe.core import illumination as illum
from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source, join_plate_map

ORIG, ILLUM = ("FileName_Orig", "PathName_Orig"), ("FileName_Illum", "PathName_Illum")
KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def channel_columns(columns: Sequence[str], prefix: Tuple[str, str]) -> List[str]:
    """The channel names of ``FileName_<x><Channel>`` columns that have their ``PathName_`` partner."""
    names = [c[len(prefix[0]):] for c in columns if c.startswith(prefix[0])]
    return [n for n in names if f"{prefix[1]}{n}" in columns]


@SOURCES.register("loaddata")
class LoadDataSource(Source):
    name = "loaddata"
    plate_columns = ("plate",)
    well_column = "well"
    per_channel_files = True
    levels = {"plate": ["plate"], "group": ["group"]}

    def __init__(self, root, rescale: Optional[dict] = None, csv: str = "load_data.csv",
                 channels: Optional[List[str]] = None, label_column: Optional[str] = None,
                 platemap: Optional[str] = None, platemap_label: str = "label", group_column: str = "plate",
                 illumination_columns: bool = True, path_map: Optional[Dict[str, str]] = None):
        super().__init__(root, rescale)
        self.csv = Path(csv) if Path(csv).is_absolute() else self.root / csv
        self.platemap = None if platemap is None else (Path(platemap) if Path(platemap).is_absolute()
                                                       else self.root / platemap)
        self._wanted, self.label_column, self.platemap_label = channels, label_column, platemap_label
        self.group_column, self.use_illum_columns = group_column, bool(illumination_columns)
        self.path_map = dict(path_map or {})
        self._sites = None
        self._files: Optional[Dict[Tuple[str, int], Dict[str, Path]]] = None
        self._illum_files: Dict[Tuple[str, str], Path] = {}
        self._names: Optional[List[str]] = None
        self._functions: Dict[Path, np.ndarray] = {}

    def describe(self) -> str:
        return str(self.csv)

    # ---------------------------------------------------------------- the CSV
    def _read(self) -> pd.DataFrame:
        df = read_table(self.csv, KEYS, integers=["Metadata_Site"], unique=KEYS, text=KEYS[:2])
        found = channel_columns(df.columns, ORIG)
        if not found:
            raise DataError(f"{self.csv}: no FileName_Orig<Channel> / PathName_Orig<Channel> column pair")
        if self._wanted:
            missing = [c for c in self._wanted if c not in found]
            if missing:
                raise DataError(f"{self.csv}: channel(s) {missing} of source_params/channels have no "
                                f"FileName_Orig/PathName_Orig columns; found {found}")
        self._names = list(self._wanted or found)
        for c in self._names:
            empty = df[f"FileName_Orig{c}"].isna()
            if empty.any():
                raise DataError(f"{self.csv}: column 'FileName_Orig{c}' is empty in row {int(empty.to_numpy().argmax())}")
        df["plate"], df["well"] = df["Metadata_Plate"].astype(str), df["Metadata_Well"].astype(str)
        df["id"] = df["plate"] + "_" + df["well"]
        return df

    def _path(self, folder, name) -> Path:
        folder = "" if pd.isna(folder) else str(folder)
        for old, new in self.path_map.items():  # e.g. s3://cellpainting-gallery/ -> /mnt/cpg/
            if folder.startswith(old):
                folder = new + folder[len(old):]
        if "://" in folder:
            raise DataError(f"{self.csv}: image folder {folder!r} is a URL; download the images and map the "
                            f"prefix to their folder with source_params/path_map {{'{folder.split('://')[0]}://...': "
                            f"'/local/...'}}")
        path = Path(folder) / str(name)
        return path if path.is_absolute() else self.csv.parent / path

    def _index(self) -> None:
        df = self._read()
        self._sites = sorted(int(s) for s in df["Metadata_Site"].unique())
        self._files = {(r["id"], int(r["Metadata_Site"])): {c: self._path(r[f"PathName_Orig{c}"], r[f"FileName_Orig{c}"])
                                                            for c in self._names}
                       for r in df.to_dict("records")}
        illum_names = channel_columns(df.columns, ILLUM) if self.use_illum_columns else []
        for c in (n for n in self._names if n in illum_names):
            for r in df[["plate", f"PathName_Illum{c}", f"FileName_Illum{c}"]].drop_duplicates("plate").itertuples(
                    index=False):
                self._illum_files[(r[0], c)] = self._path(r[1], r[2])
        self._table = df

    @property
    def channel_names(self) -> List[str]:
        if self._names is None:
            self._index()
        return self._names

    @property
    def sites(self) -> List[int]:
        if self._sites is None:
            self._index()
        return self._sites

    def build_catalog(self) -> pd.DataFrame:
        if self._files is None:
            self._index()
        df = self._table
        wells = df.sort_values(KEYS).drop_duplicates("id")
        keep = ["id", "plate", "well"] + [c for c in df.columns if c.startswith("Metadata_") and c != "Metadata_Site"]
        for extra in (self.label_column, "split"):
            if extra and extra in df.columns and extra not in keep:
                keep.append(extra)
        table = wells[keep].reset_index(drop=True)
        if self.label_column:
            if self.label_column not in table.columns:
                raise DataError(f"{self.csv}: no label column '{self.label_column}' (source_params/label_column)")
            table["label"] = table[self.label_column]
        if self.platemap is not None:
            table = join_plate_map(table, self.platemap, self.platemap_label)
        if "label" not in table.columns:
            table["label"] = None
        if "split" not in table.columns:
            table["split"] = np.where(table["label"].notna(), "train", "test")
        if self.group_column not in table.columns:
            raise DataError(f"{self.csv}: no group column '{self.group_column}' (source_params/group_column)")
        table["group"] = table[self.group_column].astype(str)
        return table

    # ---------------------------------------------------------------- images
    def image_files(self, row, site: int, channels: Sequence[int]):
        if self._files is None:
            self._index()
        names = self.channel_names
        files = self._files.get((row["id"], int(site)))
        if files is None:  # a site this well does not have: a file that is not there, named for the message
            return [self.csv.parent / f"missing-{row['id']}-site{site}-{names[c - 1]}" for c in channels]
        return [files[names[c - 1]] for c in channels]

    def illumination_functions(self, row, channels: Sequence[int]):
        """data_params/illumination when set; else the CSV's FileName_Illum columns, when it has them."""
        names = self.channel_names  # (reads the CSV on first use)
        if self.illumination is not None or not self._illum_files:
            return super().illumination_functions(row, channels)
        out = []
        for c in channels:
            path = self._illum_files.get((str(row["plate"]), names[c - 1]))
            if path is None:  # a channel without FileName_Illum columns (brightfield, say) stays as it is
                out.append(None)
                continue
            if path not in self._functions:
                self._functions[path] = illum.read_function(path)
            out.append(self._functions[path])
        return out

    def pixel_inputs(self) -> List[Path]:
        if self._files is None:
            self._index()
        if self.illumination is not None or not self._illum_files:
            return super().pixel_inputs()
        return sorted(set(self._illum_files.values()))
