"""Targets: class names <-> model outputs, fixed by the training split and saved as labels.json.

Three kinds (``data_params/target``), one class each, with the same interface:

    single      one class per sample (softmax); ``label`` holds the class name
    multilabel  any number of classes per sample (sigmoid); ``label`` holds the names or
                0-based ids separated by ``label_sep`` (HPA's ``Target="0 5 25"``)
    hierarchy   one class per level (a softmax head each: species, genus, ...); ``label``
                holds the finest level, a hierarchy file gives the coarser ones (seed 001)

``encode`` turns a table's ``label`` column into the training targets, ``n_outputs`` is
the model's output width, ``probabilities`` and ``decode`` turn logits back into names.
The map is saved as labels.json beside every checkpoint and prediction (``kind`` + its
own keys), so predictions carry class names and a model never needs its training data.
"""
import json
import logging
import re
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np
import pandas as pd

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.fsutil import write_text

log = logging.getLogger(__name__)
LABELS_FILE = "labels.json"
UNSEEN = ("error", "other")


def natural_sort(names: Iterable[str]) -> List[str]:
    """Numbers compare as numbers ('2' < '10'); everything else as text."""
    def key(s):
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]
    return sorted(set(names), key=key)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def _listing(names: List[str], most: int = 8) -> str:
    return f"{', '.join(names[:most])}{' ...' if len(names) > most else ''}"


class LabelMap:
    """Single label: ordered class names; ``encode`` gives indices (-1 = unlabelled)."""

    kind = "single"

    def __init__(self, classes: List[str], other_label: Optional[str] = None, unseen_labels: str = "error",
                 aliases: Optional[dict] = None):
        # aliases: labels bundled into other_label (rare, or missing from a hierarchy file), kept so that
        # prediction on new tables maps them the same way
        self.aliases = {str(k): str(v) for k, v in (aliases or {}).items()}
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

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def sample_loss(self, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Cross-entropy per sample; NaN where unlabelled."""
        loss = np.full(len(targets), np.nan)
        ok = targets >= 0
        loss[ok] = -np.log(np.maximum(probs[np.flatnonzero(ok), targets[ok]], 1e-12))
        return loss

    def decode(self, probs: np.ndarray, thresholds=None) -> pd.DataFrame:
        """pred (class name) and its prob per row."""
        pred = probs.argmax(axis=1)
        return pd.DataFrame({"pred": np.asarray(self.classes, dtype=object)[pred],
                             "prob": probs[np.arange(len(pred)), pred]})

    def prob_columns(self) -> List[str]:
        return [f"prob_{c}" for c in self.classes]

    def canonical(self, labels: pd.Series) -> pd.Series:
        """Labels with the bundled names replaced by other_label."""
        return labels.replace(self.aliases) if self.aliases else labels

    def encode(self, table: pd.DataFrame, where: str) -> np.ndarray:
        labels = self.canonical(table["label"])
        known = labels.map(self.index)
        unseen = labels.notna() & known.isna()
        if unseen.any():
            if self.unseen_labels == "other" and self.other_label in self.index:
                known[unseen] = self.index[self.other_label]
            else:
                first = table.loc[unseen].iloc[0]
                raise DataError(
                    f"{where}: label {labels[unseen].iloc[0]!r} of sample {first['id']} is not a class of the training "
                    f"split ({len(self)} classes: {', '.join(self.classes[:8])}{' ...' if len(self) > 8 else ''}); "
                    f"set data_params/unseen_labels=other to map such labels to '{self.other_label}'")
        return known.fillna(-1).astype(np.int64).to_numpy()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "classes": self.classes, "other_label": self.other_label,
                "unseen_labels": self.unseen_labels, "aliases": self.aliases}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelMap":
        return cls(d["classes"], d.get("other_label"), d.get("unseen_labels", "error"), d.get("aliases"))

    def save(self, path) -> Path:
        path = Path(path)
        write_text(json.dumps(self.to_dict(), indent=1) + "\n", path)
        return path

    @classmethod
    def load(cls, path):
        """Any kind's map from labels.json."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"label file not found: {path}")
        try:
            return label_map_from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"cannot read label map {path}: {e}") from None


class MultiLabelMap(LabelMap):
    """Several classes per sample: targets are 0/1 rows (N x classes); -1 rows are unlabelled."""

    kind = "multilabel"

    def __init__(self, classes: List[str], sep: str = " ", other_label: Optional[str] = None,
                 unseen_labels: str = "error"):
        super().__init__(classes, other_label, unseen_labels)
        self.sep = sep

    def tokens(self, cell) -> List[str]:
        return [t for t in str(cell).strip().split(self.sep if self.sep.strip() else None) if t.strip()]

    def index_of(self, token: str) -> Optional[int]:
        """A class name, else a 0-based class id (HPA writes ids)."""
        token = token.strip()
        if token in self.index:
            return self.index[token]
        if token.isdigit() and int(token) < len(self.classes):
            return int(token)
        return None

    def encode(self, table: pd.DataFrame, where: str) -> np.ndarray:
        out = np.full((len(table), len(self.classes)), -1.0, np.float32)
        for i, (sid, cell) in enumerate(zip(table["id"], table["label"])):
            if cell is None or (isinstance(cell, float) and np.isnan(cell)):
                continue
            tokens = self.tokens(cell)
            if not tokens:
                raise DataError(f"{where}: sample {sid} has an empty label; a multi-label sample needs at "
                                f"least one class (leave the cell out for unlabelled rows)")
            row = np.zeros(len(self.classes), np.float32)
            for t in tokens:
                k = self.index_of(t)
                if k is None:
                    raise DataError(f"{where}: label {t!r} of sample {sid} is outside the class list "
                                    f"({len(self)} classes: ids 0-{len(self) - 1} or names {_listing(self.classes)})")
                row[k] = 1.0
            out[i] = row
        return out

    def joiner(self) -> str:
        """How predicted names are joined: the separator, or ' | ' when a class name contains it."""
        sep = self.sep if self.sep.strip() else " "
        return " | " if any(sep.strip() and sep in c or (not sep.strip() and " " in c) for c in self.classes) else sep

    def canonical(self, labels: pd.Series) -> pd.Series:
        """Label cells as the class names they mean (ids resolved), joined as predictions are."""
        def names(cell):
            if not isinstance(cell, str):
                return cell
            idx = [self.index_of(t) for t in self.tokens(cell)]
            return self.joiner().join(self.classes[k] if k is not None else t
                                      for k, t in zip(idx, self.tokens(cell)))
        return labels.map(names)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

    def sample_loss(self, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Binary cross-entropy summed over the classes; NaN where unlabelled."""
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum(axis=1)
        return np.where((targets >= 0).all(axis=1), loss, np.nan)

    def predicted(self, probs: np.ndarray, thresholds=None) -> np.ndarray:
        """0/1 decisions at ``thresholds`` (one per class, or 0.5); a row with none takes its top class
        (every sample shows some class: an empty prediction scores as all wrong)."""
        th = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, np.float64)
        hits = probs >= th
        empty = np.flatnonzero(~hits.any(axis=1))
        hits[empty, probs[empty].argmax(axis=1)] = True
        return hits

    def decode(self, probs: np.ndarray, thresholds=None) -> pd.DataFrame:
        """pred: the predicted class names joined by the separator; n_pred: how many."""
        hits = self.predicted(probs, thresholds)
        names = np.asarray(self.classes, dtype=object)
        return pd.DataFrame({"pred": [self.joiner().join(names[row]) for row in hits], "n_pred": hits.sum(axis=1)})

    def to_dict(self) -> dict:
        return dict(super().to_dict(), sep=self.sep)

    @classmethod
    def from_dict(cls, d: dict) -> "MultiLabelMap":
        return cls(d["classes"], d.get("sep", " "), d.get("other_label"), d.get("unseen_labels", "error"))


class HierarchyMap(LabelMap):
    """One class per level (finest first). ``classes`` are the finest level's; ``levels[k]`` names
    level k, ``level_classes[k]`` its classes and ``parents[name]`` a finest class's coarser names."""

    kind = "hierarchy"

    def __init__(self, levels: List[str], level_classes: List[List[str]], parents: dict,
                 other_label: Optional[str] = None, unseen_labels: str = "error", aliases: Optional[dict] = None):
        super().__init__(level_classes[0], other_label, unseen_labels, aliases)
        self.levels = list(levels)
        self.level_classes = [[str(c) for c in cs] for cs in level_classes]
        self.level_index = [{c: i for i, c in enumerate(cs)} for cs in self.level_classes]
        self.parents = {str(k): [str(v) for v in vs] for k, vs in parents.items()}
        # (finest class, level) -> index, for encoding and for consistent decoding
        self.ancestry = np.array([[i] + [self.level_index[k + 1][self.parents[c][k]]
                                         for k in range(len(self.levels) - 1)]
                                  for i, c in enumerate(self.classes)], dtype=np.int64)

    @property
    def sizes(self) -> List[int]:
        return [len(cs) for cs in self.level_classes]

    @property
    def n_outputs(self) -> int:
        return sum(self.sizes)

    def split(self, logits):
        """Per-level slices of an (N, n_outputs) array or tensor."""
        out, start = [], 0
        for n in self.sizes:
            out.append(logits[:, start:start + n])
            start += n
        return out

    def encode(self, table: pd.DataFrame, where: str) -> np.ndarray:
        finest = super().encode(table, where)
        out = np.full((len(table), len(self.levels)), -1, np.int64)
        ok = finest >= 0
        out[ok] = self.ancestry[finest[ok]]
        return out

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return np.concatenate([softmax(part) for part in self.split(logits)], axis=1)

    def sample_loss(self, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Cross-entropy summed over the levels; NaN where unlabelled."""
        total = np.zeros(len(targets))
        for k, part in enumerate(self.split(probs)):
            total += LabelMap.sample_loss(self, part, targets[:, k])
        return total

    def joint(self, probs: np.ndarray) -> np.ndarray:
        """Index of the finest class maximising the product of its levels' probabilities, so that
        the predicted levels are always one path of the hierarchy."""
        logp = np.zeros((len(probs), len(self.classes)))
        for k, part in enumerate(self.split(probs)):
            logp += np.log(np.maximum(part, 1e-12))[:, self.ancestry[:, k]]
        return logp.argmax(axis=1)

    def decode(self, probs: np.ndarray, thresholds=None) -> pd.DataFrame:
        """Per level: the name (``pred`` for the finest, ``pred_<level>`` above) and its probability,
        from the joint decoding; ``consistent`` says whether each level's own argmax agrees."""
        finest = self.joint(probs)
        out, agree = {}, np.ones(len(probs), bool)
        for k, part in enumerate(self.split(probs)):
            idx = self.ancestry[finest, k]
            key = "pred" if k == 0 else f"pred_{self.levels[k]}"
            out[key] = np.asarray(self.level_classes[k], dtype=object)[idx]
            out["prob" if k == 0 else f"prob_{self.levels[k]}"] = part[np.arange(len(idx)), idx]
            agree &= part.argmax(axis=1) == idx
        out["consistent"] = agree
        return pd.DataFrame(out)

    def prob_columns(self) -> List[str]:
        return [f"prob_{lvl}_{c}" if k else f"prob_{c}"
                for k, (lvl, cs) in enumerate(zip(self.levels, self.level_classes)) for c in cs]

    def truth_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        """The coarser levels' true names of each row's finest label (empty when unknown)."""
        out = {}
        labels = self.canonical(table["label"])
        for k, lvl in enumerate(self.levels[1:]):
            out[f"truth_{lvl}"] = [self.parents.get(str(v), [None] * len(self.levels))[k]
                                   if isinstance(v, str) else None for v in labels]
        return pd.DataFrame(out)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "levels": self.levels, "level_classes": self.level_classes,
                "parents": self.parents, "other_label": self.other_label, "unseen_labels": self.unseen_labels,
                "aliases": self.aliases}

    @classmethod
    def from_dict(cls, d: dict) -> "HierarchyMap":
        return cls(d["levels"], d["level_classes"], d["parents"], d.get("other_label"),
                   d.get("unseen_labels", "error"), d.get("aliases"))


KINDS = {"single": LabelMap, "multilabel": MultiLabelMap, "hierarchy": HierarchyMap}


def label_map_from_dict(d: dict) -> LabelMap:
    kind = d.get("kind", "single")
    if kind not in KINDS:
        raise DataError(f"unknown label map kind {kind!r}; known: {list(KINDS)}")
    return KINDS[kind].from_dict(d)


def rare_aliases(train: pd.DataFrame, min_samples: int, other_label: str) -> dict:
    """Classes with fewer than ``min_samples`` training samples -> ``other_label``."""
    if not min_samples:
        return {}
    counts = train["label"].value_counts()
    return {name: other_label for name in counts[counts < int(min_samples)].index}


def read_hierarchy(path, key: str, levels: dict, sep: str = ";") -> pd.DataFrame:
    """The hierarchy file (seed 001's ``family.csv``: ``speciesName;nederNaam;group;family;genus``,
    quoted) as one row per finest class: column ``key`` renamed ``label``, then one column per level
    (``levels``: level name -> file column). A missing column or a class under two parents of a level
    is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"hierarchy file not found: {path}")
    try:
        df = pd.read_csv(path, sep=sep, quotechar='"', dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read hierarchy file {path}: {e}") from None
    df.columns = [c.strip() for c in df.columns]
    for column in [key, *levels.values()]:
        if column not in df.columns:
            raise DataError(f"hierarchy file {path} lacks column '{column}' (it has {list(df.columns)}; "
                            f"separator {sep!r}; see data_params/hierarchy)")
    df = df[[key, *levels.values()]].apply(lambda c: c.str.strip())
    df = df[df[key] != ""].drop_duplicates()
    for level, column in levels.items():
        clash = df.groupby(key)[column].nunique()
        if (clash > 1).any():
            name = clash[clash > 1].index[0]
            values = sorted(df.loc[df[key] == name, column])
            raise DataError(f"hierarchy file {path}: '{name}' is in two {level} values {values}")
    df = df.drop_duplicates(key)
    return df.rename(columns={key: "label", **{c: lvl for lvl, c in levels.items()}})


def build_hierarchy(train: pd.DataFrame, data_params: dict, aliases: dict) -> HierarchyMap:
    """Levels of the training split's classes from the hierarchy file; classes the file lacks
    (and the rare ones, ``aliases``) are ``other_label`` at every level."""
    hp = data_params.get("hierarchy") or {}
    if not hp.get("file"):
        raise ConfigError("config key 'data_params/hierarchy/file' is required with data_params/target=hierarchy")
    levels = hp.get("levels") or {"genus": "genus", "group": "group", "family": "family"}
    other = data_params.get("other_label") or "Other"
    path = Path(hp["file"])
    if not path.is_absolute() and not path.exists() and data_params.get("root"):
        # a relative file is looked for in the data folder, then beside it (seed 001: data/family.csv
        # next to the image folder)
        root = Path(data_params["root"])
        path = next((p for p in (root / path, root.parent / path) if p.is_file()), root / path)
    table = read_hierarchy(path, hp.get("key", "speciesName"), levels, hp.get("sep", ";"))
    known = dict(zip(table["label"], table[list(levels)].itertuples(index=False, name=None)))
    raw = set(train["label"].dropna())
    missing = natural_sort(n for n in raw if n not in known and n not in aliases and n != other)
    if missing:
        log.warning("%d class(es) missing from %s go to '%s' at every level: %s", len(missing), hp["file"],
                    other, _listing(missing))
    aliases = {**aliases, **{n: other for n in missing}}
    names = {aliases.get(n, n) for n in raw}
    if data_params.get("unseen_labels") == "other":
        names.add(other)
    parents = {n: list(known[n]) if n in known else [other] * len(levels) for n in names}
    level_classes = [natural_sort(parents)] + [natural_sort({p[k] for p in parents.values()})
                                               for k in range(len(levels))]
    return HierarchyMap([hp.get("name", "species"), *levels], level_classes, parents, other,
                        data_params.get("unseen_labels", "error"), aliases)


def build_label_map(train: pd.DataFrame, data_params: dict, fixed: Optional[List[str]] = None) -> LabelMap:
    """The run's target map (``data_params/target``): ``fixed`` classes (a source with a known class
    list, e.g. RxRx1's siRNA ids or HPA's 28 proteins), or the sorted labels of the training split,
    rare ones (``min_samples``) bundled into ``other_label`` (which also takes unseen labels when
    ``unseen_labels: other``)."""
    other = data_params.get("other_label") or "Other"
    unseen = data_params.get("unseen_labels", "error")
    kind = data_params.get("target") or "single"
    if kind not in KINDS:
        raise ConfigError(f"config key 'data_params/target': unknown kind {kind!r}; known: {list(KINDS)}")
    if kind == "multilabel":
        if data_params.get("min_samples"):
            raise ConfigError("config key 'data_params/min_samples' bundles single labels; it does not apply "
                              "to data_params/target=multilabel (set it to 0)")
        sep = data_params.get("label_sep") or " "
        if fixed is not None:
            return MultiLabelMap(fixed, sep, other, unseen)
        probe = MultiLabelMap(["?"], sep)
        names = {t for cell in train["label"].dropna() for t in probe.tokens(cell)}
        if not names:
            raise DataError("the training split has no labelled samples (empty class after filtering?)")
        return MultiLabelMap(natural_sort(names), sep, other, unseen)
    aliases = {} if fixed is not None else rare_aliases(train, data_params.get("min_samples", 0), other)
    if kind == "hierarchy":
        return build_hierarchy(train, data_params, aliases)
    if fixed is not None:
        return LabelMap(fixed, other, unseen)
    names = {aliases.get(n, n) for n in train["label"].dropna()}
    if not names:
        raise DataError("the training split has no labelled samples (empty class after filtering?)")
    if unseen == "other":
        names.add(other)
    return LabelMap(natural_sort(names), other, unseen, aliases)
