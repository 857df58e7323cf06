"""Kaggle Human Protein Atlas layout (seed 004): multi-label, one PNG per stain.

    {root}/train.csv               Id,Target   (Target: space-separated 0-based class ids, "0 5 25")
    {root}/train/{Id}_{stain}.png  stains red (microtubules), green (protein), blue (nucleus), yellow (ER)
    {root}/sample_submission.csv   Id,Predicted  (the test ids; optional)
    {root}/test/{Id}_{stain}.png

Every train.csv row is a training sample (validation comes from fold files: make_folds.py
--source hpa, iterative stratification); an optional ``group`` column keeps related images
(e.g. near-duplicates, see src/dedup.py) in one fold. The stains, their order and their
montage colours are settings (``source_params``). Submissions are written as ``Id,Predicted``
with class ids, as the competition expects.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.tables import read_table
from cellpipe.sources import SOURCES
from cellpipe.sources.base import Source

HPA_CLASSES = [
    "Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center", "Nuclear speckles",
    "Nuclear bodies", "Endoplasmic reticulum", "Golgi apparatus", "Peroxisomes", "Endosomes", "Lysosomes",
    "Intermediate filaments", "Actin filaments", "Focal adhesion sites", "Microtubules", "Microtubule ends",
    "Cytokinetic bridge", "Mitotic spindle", "Microtubule organizing center", "Centrosome", "Lipid droplets",
    "Plasma membrane", "Cell junctions", "Mitochondria", "Aggresome", "Cytosol", "Cytoplasmic bodies",
    "Rods & rings",
]
STAINS = ["red", "green", "blue", "yellow"]
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
LABEL_STAIN = "green"  # the protein of interest; red, blue, yellow are reference stains


@SOURCES.register("hpa")
class HpaSource(Source):
    name = "hpa"
    per_channel_files = True

    def __init__(self, root, rescale: Optional[dict] = None,
                 stains: Sequence[str] = tuple(STAINS), colours: Optional[Dict[str, Sequence[int]]] = None,
                 classes: Union[None, int, List[str]] = None, extension: str = ".png",
                 train_table: str = "train.csv", test_table: str = "sample_submission.csv"):
        super().__init__(root, rescale)
        self.stains = [str(s) for s in stains]
        if not self.stains or len(set(self.stains)) != len(self.stains):
            raise ConfigError(f"data_params/source_params/stains must be distinct names, got {list(stains)}")
        self._colours = {**COLOURS, **{k: tuple(v) for k, v in (colours or {}).items()}}
        unknown = [s for s in self.stains if s not in self._colours]
        if unknown:
            raise ConfigError(f"data_params/source_params/colours lacks an RGB colour for stain(s) {unknown}")
        if classes is None:
            self.classes = list(HPA_CLASSES)
        elif isinstance(classes, int) and not isinstance(classes, bool) and classes > 0:
            self.classes = [str(i) for i in range(classes)]
        elif isinstance(classes, (list, tuple)) and classes:
            self.classes = [str(c) for c in classes]
        else:
            raise ConfigError(f"data_params/source_params/classes must be a count or a list of names, got {classes!r}")
        self.extension = extension
        self.train_table, self.test_table = train_table, test_table

    def describe(self) -> str:
        return f"{self.root / self.train_table}"

    def _check_targets(self, df: pd.DataFrame, path: Path) -> None:
        n = len(self.classes)
        for sid, cell in zip(df["Id"], df["Target"]):
            tokens = str(cell).split() if isinstance(cell, str) else []
            if not tokens:
                raise DataError(f"{path}: Target of Id {sid} is empty; every training image needs at least one class")
            for t in tokens:
                if not t.isdigit() or int(t) >= n:
                    raise DataError(f"{path}: Target id {t!r} of Id {sid} is outside the class list "
                                    f"({n} classes: ids 0-{n - 1})")

    def build_catalog(self) -> pd.DataFrame:
        path = self.root / self.train_table
        train = read_table(path, ["Id", "Target"])
        train = train.assign(Id=train["Id"].astype(str).str.strip())
        self._check_targets(train, path)
        parts = [pd.DataFrame({"id": train["Id"], "split": "train", "label": train["Target"].str.strip(),
                               "folder": "train",
                               **({"group": train["group"].astype(str)} if "group" in train.columns else {})})]
        test_path = self.root / self.test_table
        if test_path.is_file():
            test = read_table(test_path, ["Id"])
            parts.append(pd.DataFrame({"id": test["Id"].astype(str).str.strip(), "split": "test", "label": None,
                                       "folder": "test"}))
        return pd.concat(parts, ignore_index=True)

    @property
    def channel_names(self) -> List[str]:
        return list(self.stains)

    def label_channels(self) -> List[int]:
        # the protein stain is what the labels describe; the others are references
        return [self.stains.index(LABEL_STAIN) + 1] if LABEL_STAIN in self.stains else []

    def colours(self):
        return [(self._colours[s], 255.0) for s in self.stains]

    def fixed_classes(self, num_classes=None) -> List[str]:
        return list(self.classes)

    def image_files(self, row, site: int, channels: Sequence[int]) -> List[Path]:
        return [self.root / row["folder"] / f"{row['id']}_{self.stains[c - 1]}{self.extension}" for c in channels]

    @staticmethod
    def submission(table: pd.DataFrame, hits: np.ndarray, labels) -> pd.DataFrame:
        """Kaggle's ``Id,Predicted`` with space-separated class ids."""
        return pd.DataFrame({"Id": table["id"].to_numpy(),
                             "Predicted": [" ".join(str(k) for k in np.flatnonzero(r)) for r in hits]})
