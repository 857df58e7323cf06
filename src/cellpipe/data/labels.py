"""Class names <-> indices, fixed by the training split and saved as labels.json.

Single-label runs store ``{"kind": "single", "classes": [...], "other_label": ...,
"unseen_labels": ...}``; the file sits beside every checkpoint and prediction so
that predictions carry class names. Other target kinds (multi-label, hierarchy)
add their own keys under another ``kind``.
"""
import json
import re
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np
import pandas as pd

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.fsutil import write_text

LABELS_FILE = "labels.json"
UNSEEN = ("error", "other")


def natural_sort(names: Iterable[str]) -> List[str]:
    """Numbers compare as numbers ('2' < '10'); everything else as text."""
    def key(s):
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]
    return sorted(set(names), key=key)


class LabelMap:
    """Ordered class names; ``encode`` turns a table's ``label`` column into indices (-1 = unlabelled)."""

    def __init__(self, classes: List[str], other_label: Optional[str] = None, unseen_labels: str = "error"):
        if unseen_labels not in UNSEEN:
            raise ConfigError(f"config key 'data_params/unseen_labels' must be one of {list(UNSEEN)}, "
                              f"got {unseen_labels!r}")
        if not classes:
            raise DataError("no classes: the training split has no labelled samples")
        self.classes = [str(c) for c in classes]
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.other_label = other_label
        self.unseen_labels = unseen_labels

    def __len__(self):
        return len(self.classes)

    def encode(self, table: pd.DataFrame, where: str) -> np.ndarray:
        labels = table["label"]
        known = labels.map(self.index)
        unseen = labels.notna() & known.isna()
        if unseen.any():
            if self.unseen_labels == "other" and self.other_label in self.index:
                known[unseen] = self.index[self.other_label]
            else:
                first = table.loc[unseen].iloc[0]
                raise DataError(
                    f"{where}: label {first['label']!r} of sample {first['id']} is not a class of the training "
                    f"split ({len(self)} classes: {', '.join(self.classes[:8])}{' ...' if len(self) > 8 else ''}); "
                    f"set data_params/unseen_labels=other to map such labels to '{self.other_label}'")
        return known.fillna(-1).astype(np.int64).to_numpy()

    def to_dict(self) -> dict:
        return {"kind": "single", "classes": self.classes, "other_label": self.other_label,
                "unseen_labels": self.unseen_labels}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelMap":
        return cls(d["classes"], d.get("other_label"), d.get("unseen_labels", "error"))

    def save(self, path) -> Path:
        path = Path(path)
        write_text(json.dumps(self.to_dict(), indent=1) + "\n", path)
        return path

    @classmethod
    def load(cls, path) -> "LabelMap":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"label file not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"cannot read label map {path}: {e}") from None


def bundle_rare(tables: List[pd.DataFrame], train: pd.DataFrame, min_samples: int, other_label: str):
    """Classes with fewer than ``min_samples`` training samples become ``other_label`` in every table."""
    if not min_samples:
        return tables
    counts = train["label"].value_counts()
    rare = set(counts[counts < int(min_samples)].index)
    if not rare:
        return tables
    out = []
    for t in tables:
        t = t.copy()
        t.loc[t["label"].isin(rare), "label"] = other_label
        out.append(t)
    return out


def build_label_map(train: pd.DataFrame, data_params: dict, fixed: Optional[List[str]] = None) -> LabelMap:
    """The run's classes: ``fixed`` (a source with a known class list, e.g. RxRx1's siRNA ids), or the
    sorted labels of the training split (plus ``other_label`` when unseen labels map to it)."""
    other = data_params.get("other_label")
    unseen = data_params.get("unseen_labels", "error")
    if fixed is not None:
        return LabelMap(fixed, other, unseen)
    names = set(train["label"].dropna())
    if not names:
        raise DataError("the training split has no labelled samples (empty class after filtering?)")
    if unseen == "other" and other:
        names.add(other)
    return LabelMap(natural_sort(names), other, unseen)
