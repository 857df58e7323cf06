"""Hierarchy: one class per level (a softmax head each: species, genus, ...; seed 001's moths).

``label`` holds the finest level; a hierarchy file (seed 001's ``family.csv``) gives the coarser
ones. Predictions decode jointly (the finest class maximising the product of its levels'
probabilities), so the predicted levels always form one path. Loss: HierarchyCrossEntropy
(one cross-entropy per level, weighted by ``loss_weights``). Metrics: accuracy01 (finest
level), accuracy_<level> per level and consistency (how often the levels' own argmaxes form
one path). Folds stratify by the finest label, as single-label runs do.
"""
import logging
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd
import torch.nn.functional as F
from torch import nn

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.tables import natural_sort
from cellpipe.tasks import TASKS, base
from cellpipe.tasks.single import SingleLabel, majority_baselines

log = logging.getLogger(__name__)
DEFAULT_LEVELS = {"genus": "genus", "group": "group", "family": "family"}  # seed 001's family.csv columns


class HierarchyCrossEntropy(nn.Module):
    """Cross-entropy of each level's slice of the logits, summed with ``loss_weights``."""

    def __init__(self, sizes: Sequence[int], loss_weights: Sequence[float], smoothing: float = 0.0):
        super().__init__()
        self.sizes, self.weights = list(sizes), [float(w) for w in loss_weights]
        self.smoothing = float(smoothing)

    def forward(self, logits, targets):
        total, start = 0.0, 0
        for k, (n, w) in enumerate(zip(self.sizes, self.weights)):
            total = total + w * F.cross_entropy(logits[:, start:start + n], targets[:, k],
                                                label_smoothing=self.smoothing)
            start += n
        return total


@base.CRITERIA.register("HierarchyCrossEntropy")
def hierarchy_ce(loss_weights: Optional[Sequence[float]] = None, smoothing: float = 0.0, weight=None, labels=None):
    sizes = getattr(labels, "sizes", None)
    if sizes is None:
        raise ConfigError("criterion HierarchyCrossEntropy needs data_params/target=hierarchy")
    loss_weights = [1.0] * len(sizes) if loss_weights is None else list(loss_weights)
    if len(loss_weights) != len(sizes):
        raise ConfigError(f"config key 'criterion_params/loss_weights' has {len(loss_weights)} values but the "
                          f"hierarchy has {len(sizes)} levels {labels.levels}")
    return HierarchyCrossEntropy(sizes, loss_weights, smoothing)


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


def hierarchy_path(data_params: dict) -> Path:
    """data_params/hierarchy/file; a relative file is looked for in the data folder, then beside it
    (seed 001: data/family.csv next to the image folder)."""
    path = Path(data_params["hierarchy"]["file"])
    if not path.is_absolute() and not path.exists() and data_params.get("root"):
        root = Path(data_params["root"])
        path = next((p for p in (root / path, root.parent / path) if p.is_file()), root / path)
    return path


@TASKS.register("hierarchy")
class Hierarchy(SingleLabel):
    """One class per level (finest first). ``classes`` are the finest level's; ``levels[k]`` names
    level k, ``level_classes[k]`` its classes and ``parents[name]`` a finest class's coarser names."""

    kind = "hierarchy"
    criteria = ("HierarchyCrossEntropy",)
    default_criterion = {"criterion": "HierarchyCrossEntropy"}
    default_valid_criterion = {"criterion": "HierarchyCrossEntropy"}
    metrics = ("accuracy01", "consistency")  # + accuracy_<level>
    default_metric = "accuracy01"
    balances = False

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

    # ------------------------------------------------------------ config
    @classmethod
    def metric_known(cls, name: str) -> bool:
        return super().metric_known(name) or name.startswith("accuracy_")

    @classmethod
    def metric_choices(cls) -> str:
        return super().metric_choices() + ", accuracy_<level>"

    @classmethod
    def check_config(cls, cfg: dict) -> None:
        super().check_config(cfg)
        if not (cfg["data_params"].get("hierarchy") or {}).get("file"):
            raise ConfigError("config key 'data_params/hierarchy/file' is required with data_params/target=hierarchy")

    def check_metric(self, metric: str) -> None:
        if metric.startswith("accuracy_") and metric[len("accuracy_"):] not in self.levels:
            raise ConfigError(f"config key 'state_params/main_metric': {metric} names no level of the hierarchy "
                              f"{self.levels}")

    @classmethod
    def build(cls, train: pd.DataFrame, data_params: dict, fixed=None) -> "Hierarchy":
        """Levels of the training split's classes from the hierarchy file; classes the file lacks
        (and the rare ones) are ``other_label`` at every level."""
        cls.check_config({"data_params": data_params})
        hp = data_params["hierarchy"]
        levels = hp.get("levels") or DEFAULT_LEVELS
        other = data_params.get("other_label") or "Other"
        aliases = {} if fixed is not None else base.rare_aliases(train, data_params.get("min_samples", 0), other)
        table = read_hierarchy(hierarchy_path(data_params), hp.get("key", "speciesName"), levels, hp.get("sep", ";"))
        known = dict(zip(table["label"], table[list(levels)].itertuples(index=False, name=None)))
        raw = set(train["label"].dropna())
        missing = natural_sort(n for n in raw if n not in known and n not in aliases and n != other)
        if missing:
            log.warning("%d class(es) missing from %s go to '%s' at every level: %s", len(missing), hp["file"],
                        other, base.listing(missing))
        aliases = {**aliases, **{n: other for n in missing}}
        names = {aliases.get(n, n) for n in raw}
        if data_params.get("unseen_labels") == "other":
            names.add(other)
        parents = {n: list(known[n]) if n in known else [other] * len(levels) for n in names}
        level_classes = [natural_sort(parents)] + [natural_sort({p[k] for p in parents.values()})
                                                   for k in range(len(levels))]
        return cls([hp.get("name", "species"), *levels], level_classes, parents, other,
                   data_params.get("unseen_labels", "error"), aliases)

    # ------------------------------------------------------------ outputs
    @property
    def sizes(self) -> List[int]:
        return [len(cs) for cs in self.level_classes]

    @property
    def n_outputs(self) -> int:
        return sum(self.sizes)

    def describe_outputs(self) -> str:
        return f"{self.n_outputs} outputs over its levels"

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

    def check_training_targets(self, targets, log) -> None:
        pass

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return np.concatenate([base.softmax(part) for part in self.split(logits)], axis=1)

    def sample_loss(self, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Cross-entropy summed over the levels; NaN where unlabelled."""
        total = np.zeros(len(targets))
        for k, part in enumerate(self.split(probs)):
            total += SingleLabel.sample_loss(self, part, targets[:, k])
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

    # ------------------------------------------------------------ scores and reports
    def epoch_metrics(self, logits, targets) -> dict:
        logits, targets = np.asarray(logits, np.float64), np.asarray(targets)
        ok = base.labelled_rows(targets)
        logits, targets = logits[ok], targets[ok]
        if not len(targets):
            return {}
        probs = self.probabilities(logits)
        finest = self.joint(probs)
        out = {f"accuracy_{level}": float((self.ancestry[finest, k] == targets[:, k]).mean())
               for k, level in enumerate(self.levels)}
        out["accuracy01"] = out[f"accuracy_{self.levels[0]}"]
        out["consistency"] = float(self.decode(probs)["consistent"].mean())
        return out

    score = base.Task.score  # the metrics of the levels, not SingleLabel's argmax accuracy

    @property
    def baseline_score(self) -> str:  # the finest level's majority class
        return f"baseline_accuracy_{self.levels[0]}_majority"

    def baselines(self, targets) -> dict:
        return majority_baselines(np.asarray(targets), [f"accuracy_{lvl}" for lvl in self.levels])

    def report(self, logits, targets, logdir, threshold_grid) -> dict:
        """per_class.csv of the finest level and per_class_<level>.csv of each coarser one."""
        probs = self.probabilities(logits)
        ok = base.labelled_rows(targets)
        finest = self.joint(probs[ok])
        out = {"n_valid": int(ok.sum())}
        for k, level in enumerate(self.levels):
            pred = self.ancestry[finest, k]
            base.write_per_class(base.per_class_table(targets[ok, k], pred, self.level_classes[k]), logdir,
                            None if k == 0 else level)
            out[f"valid_accuracy_{level}"] = float((pred == targets[ok, k]).mean()) if ok.any() else None
        out["valid_top1_final"] = out[f"valid_accuracy_{self.levels[0]}"]
        out["valid_head_disagreement"] = float(1 - self.decode(probs[ok])["consistent"].mean()) if ok.any() else None
        return out

    def figures(self) -> List[dict]:
        return super().figures() + [{"plot": "confusion", "png": f"confusion_matrix_{level}.png",
                                     "pred_column": f"pred_{level}", "truth_column": f"truth_{level}"}
                                    for level in self.levels[1:]]

    # ------------------------------------------------------------ labels.json
    def to_dict(self) -> dict:
        return {"kind": self.kind, "levels": self.levels, "level_classes": self.level_classes,
                "parents": self.parents, "other_label": self.other_label, "unseen_labels": self.unseen_labels,
                "aliases": self.aliases}

    @classmethod
    def from_dict(cls, d: dict) -> "Hierarchy":
        return cls(d["levels"], d["level_classes"], d["parents"], d.get("other_label"),
                   d.get("unseen_labels", "error"), d.get("aliases"))
