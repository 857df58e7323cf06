"""Class sub-folders: ``{root}/<class>/<image>`` (seed 001's image_folder, also for cross-validation),
or split folders ``{root}/{training,validation,test}/<class>/<image>`` (seed 003).

The sample id is the image's path relative to root; symbolic links (a merged image
folder) are followed. One file per sample: grey, RGB or multi-channel TIFF.
"""
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.images import read_image
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source

SPLIT_FOLDERS = {"training": "train", "train": "train", "validation": "valid", "valid": "valid", "val": "valid",
                 "test": "test", "testing": "test"}
EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@SOURCES.register("folder")
class FolderSource(Source):
    name = "folder"

    def __init__(self, root, rescale: Optional[dict] = None,
                 extensions: Sequence[str] = EXTENSIONS, channel_names: Optional[List[str]] = None):
        super().__init__(root, rescale)
        self.extensions = tuple(e.lower() for e in extensions)
        self._names = list(channel_names) if channel_names else None

    def _images(self, folder: Path) -> List[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in self.extensions and not p.name.startswith("."))

    def build_catalog(self) -> pd.DataFrame:
        if not self.root.is_dir():
            raise DataError(f"image folder not found: {self.root}")
        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_FOLDERS]
        if split_dirs:
            others = [d.name for d in subdirs if d not in split_dirs]
            if others:
                raise DataError(f"{self.root}: has split folders {[d.name for d in split_dirs]} and also "
                                f"{others}; expected only {sorted(SPLIT_FOLDERS)}")
            layout = [(SPLIT_FOLDERS[d.name.lower()], d) for d in split_dirs]
        else:
            layout = [("train", self.root)]  # no split folders: everything is for cross-validation
        rows = []
        for split, base in layout:
            for class_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for img in self._images(class_dir):
                    rows.append({"id": img.relative_to(self.root).as_posix(), "split": split,
                                 "label": class_dir.name, "path": img.relative_to(self.root).as_posix()})
        if not rows:
            raise DataError(f"{self.root}: no images ({', '.join(self.extensions)}) in class sub-folders")
        return pd.DataFrame(rows)

    @property
    def channel_names(self) -> List[str]:
        if self._names is None:
            n = read_image(self.root / self.catalog().iloc[0]["path"]).shape[-1]
            self._names = ["R", "G", "B"] if n == 3 else [f"ch{i + 1}" for i in range(n)]
        return self._names

    def image_files(self, row, site: int, channels: Sequence[int]):
        return [self.root / row["path"]]
