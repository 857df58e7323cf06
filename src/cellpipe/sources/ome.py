"""Microscope files read through bioio (source ``ome``): OME-TIFF and OME-Zarr (and any format whose bioio reader
plugin is installed: CZI, ND2, LIF, ...). One file (or Zarr folder) holds every channel of a site.

Channel names come from the file's metadata (the first file's; every file must agree). Which
file is which sample:

- ``table`` (CSV or parquet): a ``file`` column (relative to the root) and optionally ``plate``,
  ``well``, ``site``, ``label``, ``split``, ``group`` and any other column; rows of one
  (plate, well) are one sample whose sites are their ``site`` values;
- no table: every file under the root matching ``patterns`` is one sample (id: its path without
  the suffix), its plate the folder it is in; unlabelled (test) unless ``label_from_folder``. An
  OME-Zarr HCS plate (NGFF ``plate`` / ``well`` metadata, zarr v2 or v3) is walked instead: a
  sample per well (``{plate}_{A01}``), its fields the sites, the plate named by its metadata.

``scene``, ``t`` and ``z`` pick the plane read (a 2-D site; Z stacks are not projected).
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import SPLIT_SPELLING, Source, map_split_values

PATTERNS = ("*.ome.tif", "*.ome.tiff", "*.ome.zarr")


def zarr_attrs(folder: Path) -> dict:
    """A zarr group's attributes (v3 ``zarr.json``, v2 ``.zattrs``), the NGFF ``ome`` key unwrapped."""
    import json

    for name, pick in (("zarr.json", lambda d: d.get("attributes") or {}), (".zattrs", lambda d: d)):
        f = folder / name
        if f.is_file():
            try:
                attrs = pick(json.loads(f.read_text()))
            except ValueError as e:
                raise DataError(f"{f}: not valid JSON ({e})") from None
            return attrs.get("ome", attrs)
    return {}


def hcs_fields(plate_dir: Path, root: Path):
    """Rows (file, plate, well, site, id) of every field of an OME-Zarr HCS plate; [] for a plain image."""
    plate = zarr_attrs(plate_dir).get("plate") if plate_dir.is_dir() else None
    if not plate:
        return []
    name, rows = str(plate.get("name") or stem(plate_dir)), []
    for well in plate.get("wells", []):
        path = str(well["path"])
        row, _, col = path.partition("/")
        images = zarr_attrs(plate_dir / path).get("well", {}).get("images", [])
        if not images:
            raise DataError(f"{plate_dir / path}: an HCS well without 'well' images metadata")
        well_name = f"{row}{int(col):02d}" if col.isdigit() else f"{row}{col}"
        for i, image in enumerate(images):
            rows.append({"file": str((plate_dir / path / str(image["path"])).relative_to(root)), "plate": name,
                         "well": well_name, "site": i + 1, "id": f"{name}_{well_name}"})
    return rows


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@SOURCES.register("ome")
class OmeSource(Source):
    name = "ome"
    plate_columns = ("plate",)
    well_column = "well"
    levels = {"plate": ["plate"], "group": ["group"]}

    def __init__(self, root, rescale: Optional[dict] = None, table: Optional[str] = None,
                 patterns: Sequence[str] = PATTERNS, scene: int = 0, t: int = 0, z: int = 0,
                 label_from_folder: bool = False):
        super().__init__(root, rescale)
        self.table = None if table is None else (Path(table) if Path(table).is_absolute() else self.root / table)
        self.patterns, self.scene, self.t, self.z = list(patterns), int(scene), int(t), int(z)
        self.label_from_folder = bool(label_from_folder)
        self._files: Optional[Dict[Tuple[str, int], Path]] = None
        self._sites: List[int] = [1]
        self._names: Optional[List[str]] = None

    def describe(self) -> str:
        return str(self.table or self.root)

    # ---------------------------------------------------------------- tables
    def _scan(self) -> pd.DataFrame:
        found = sorted({p for pattern in self.patterns for p in self.root.rglob(pattern)})
        if not found:
            raise DataError(f"{self.root}: no files matching {self.patterns}")
        rows = []
        for p in found:
            fields = hcs_fields(p, self.root)
            rows += fields or [{"file": str(p.relative_to(self.root)), "plate": p.parent.name or "1",
                                "id": str(p.relative_to(self.root).with_name(stem(p))), "site": 1,
                                "well": str(p.relative_to(self.root).with_name(stem(p)))}]
        df = pd.DataFrame(rows)
        if self.label_from_folder:
            df["label"] = df["plate"]
            df["split"] = "train"
        return df

    def _read_table(self) -> pd.DataFrame:
        df = read_table(self.table, ["file"])
        df["plate"] = df["plate"].astype(str) if "plate" in df.columns else "1"
        df["site"] = pd.to_numeric(df["site"], errors="coerce") if "site" in df.columns else 1
        if df["site"].isna().any():
            raise DataError(f"{self.table}: column 'site' must hold whole numbers")
        if "well" in df.columns:
            df["well"] = df["well"].astype(str)
            df["id"] = df["plate"] + "_" + df["well"]
        else:
            df["well"] = df["id"] = df["file"].map(lambda f: stem(Path(f)))
        dup = df.duplicated(["id", "site"])
        if dup.any():
            raise DataError(f"{self.table}: sample {df.loc[dup, 'id'].iloc[0]!r} site "
                            f"{int(df.loc[dup, 'site'].iloc[0])} is listed twice")
        if "split" in df.columns:
            df["split"] = map_split_values(df["split"], SPLIT_SPELLING, f"{self.table} column 'split'")
        return df

    def _index(self) -> pd.DataFrame:
        df = self._read_table() if self.table is not None else self._scan()
        df["site"] = df["site"].astype(int)
        self._sites = sorted(df["site"].unique().tolist())
        self._files = {(r.id, int(r.site)): self.root / r.file for r in df.itertuples()}
        return df

    def build_catalog(self) -> pd.DataFrame:
        df = self._index()
        table = df.sort_values(["id", "site"]).drop_duplicates("id").drop(columns=["site", "file"])
        if "label" not in table.columns:
            table["label"] = None
        if "split" not in table.columns:
            table["split"] = np.where(table["label"].notna(), "train", "test")
        if "group" not in table.columns:
            table["group"] = table["plate"]
        return table.reset_index(drop=True)

    @property
    def sites(self) -> List[int]:
        if self._files is None:
            self.catalog()
        return self._sites

    # ---------------------------------------------------------------- images
    def _open(self, path: Path):
        from bioio import BioImage

        if not path.exists():
            raise DataError(f"image file not found: {path}")
        # an image inside a Zarr hierarchy (an HCS field: plate.ome.zarr/A/1/0) has no suffix to pick the
        # reader by: name it
        in_zarr = any(part.endswith(".zarr") for part in path.parts[:-1])
        try:
            if in_zarr:
                import bioio_ome_zarr

                image = BioImage(path, reader=bioio_ome_zarr.Reader)
            else:
                image = BioImage(path)
            if self.scene:
                image.set_scene(self.scene)
        except Exception as e:  # bioio raises a reader plugin's own errors for unreadable files
            raise DataError(f"{path}: bioio cannot read it ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                            f"a format beyond OME-TIFF / OME-Zarr needs its bioio plugin installed") from None
        return image

    @property
    def channel_names(self) -> List[str]:
        if self._names is None:
            first = next(iter(self._files_index().values()))
            self._names = [str(n) for n in self._open(first).channel_names]
        return self._names

    def _files_index(self) -> Dict[Tuple[str, int], Path]:
        if self._files is None:
            self.catalog()
        return self._files

    def image_files(self, row, site: int, channels: Sequence[int]):
        path = self._files_index().get((row["id"], int(site)))
        return [path if path is not None else self.root / f"missing-{row['id']}-site{site}"]

    def read_arrays(self, row, site: int, channels: Sequence[int]):
        path = self.image_files(row, site, channels)[0]
        image = self._open(path)
        names = [str(n) for n in image.channel_names]
        if names != self.channel_names:
            raise DataError(f"{path} has channels {names}; the first file of {self.describe()} has {self.channel_names}")
        data = np.asarray(image.get_image_data("YXC", T=self.t, Z=self.z))
        return [data], [path]
