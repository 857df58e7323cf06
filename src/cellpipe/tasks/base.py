"""The target-kind contract: what a model's outputs mean, from labels in a table to scores and tables out.

A task object is the run's label map (saved as labels.json beside every checkpoint and
prediction) and everything that depends on the target kind: the activation, the losses
and metrics it allows and their defaults, trivial baselines, the validation report and
figures, fold stratification, ensemble scoring, thresholds and output tables. Training,
inference, postprocess and reports ask it instead of branching on the kind.

Class-level parts need no data (config checks, folds); instances hold the classes.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from cellpipe.core import layout
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.fsutil import write_csv, write_text
from cellpipe.core.registry import Registry
from cellpipe.core.tables import natural_sort

CRITERIA = Registry("criterion")  # losses by name (criterion_params/criterion); each kind registers its own
UNSEEN = ("error", "other")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row softmax of logits / temperature (temperature > 1 flattens, < 1 sharpens), computed in place
    on a copy in the logits' float type (float32 for an ensemble's 19,897 x 1,108 arrays)."""
    if not temperature > 0:
        raise DataError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits)
    z = z.astype(np.result_type(z.dtype, np.float32))  # a copy: the caller's array stays as it was
    z /= z.dtype.type(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def listing(names: Sequence[str], most: int = 8) -> str:
    return f"{', '.join(map(str, names[:most]))}{' ...' if len(names) > most else ''}"


def labelled_rows(targets: np.ndarray) -> np.ndarray:
    """Rows with a target (unlabelled rows hold -1 in every column)."""
    targets = np.asarray(targets)
    return targets >= 0 if targets.ndim == 1 else (targets >= 0).all(axis=1)


def per_class_table(truth, pred, classes: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (sklearn), plus macro and weighted means.
    Single label: index arrays; multi-label: 0/1 matrices (samples x classes)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    labels = None if truth.ndim == 2 else list(range(len(classes)))
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"class": list(classes), "precision": p, "recall": r, "f1": f, "support": n})
    rows = []
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(truth, pred, labels=labels, average=avg, zero_division=0)
        rows.append({"class": f"{avg} avg", "precision": ap, "recall": ar, "f1": af, "support": int(np.sum(n))})
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


class Task:
    """Base of every target kind. Subclasses set the class attributes and implement the marked methods."""

    kind = ""
    criteria: Sequence[str] = ()      # loss names that fit this kind (WeightedSum of them too)
    default_criterion: dict = {}      # criterion_params of criterion: auto
    default_valid_criterion: dict = {}
    metrics: Sequence[str] = ()       # choices of state_params/main_metric (besides loss)
    default_metric = ""
    balances = False                  # data_params/balance (sampler / loss weights) applies

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

    # ------------------------------------------------------------ config (no data needed)
    @classmethod
    def metric_known(cls, name: str) -> bool:
        return name == "loss" or name in cls.metrics

    @classmethod
    def metric_choices(cls) -> str:
        return ", ".join([*cls.metrics, "loss"])

    @classmethod
    def check_config(cls, cfg: dict) -> None:
        """Settings that only some kinds accept; raise ConfigError naming the key."""
        dp = cfg["data_params"]
        if not cls.balances and dp.get("balance") not in (None, "none"):
            raise ConfigError(f"config key 'data_params/balance'={dp['balance']} balances single labels; "
                              f"with data_params/target={cls.kind} use a loss for imbalance (e.g. FocalLoss)")

    @classmethod
    def build(cls, train: pd.DataFrame, data_params: dict, fixed: Optional[List[str]] = None) -> "Task":
        """The run's map from its training split (``fixed``: a source's known class list)."""
        raise NotImplementedError

    @classmethod
    def fold_splits(cls, df: pd.DataFrame, n_folds: int, seed: int, grouped: bool, sep: Optional[str]):
        """(train index, valid index) pairs over ``df``'s labelled rows, stratified as the kind needs."""
        raise NotImplementedError

    @classmethod
    def fold_rule(cls, grouped: bool) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------ outputs
    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def describe_outputs(self) -> str:
        return f"{self.n_outputs} classes"

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sample_loss(self, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decode(self, probs: np.ndarray, thresholds=None) -> pd.DataFrame:
        raise NotImplementedError

    def prob_columns(self) -> List[str]:
        return [f"prob_{c}" for c in self.classes]

    def reject_unsure(self, decoded: pd.DataFrame, min_prob: float) -> pd.DataFrame:
        """``decode``'s table with every prediction (``pred``, each ``pred_<level>``) less probable than
        ``min_prob`` replaced by the other label ("unknown" without one): an image of a class the
        model never learnt is not forced into a known one."""
        out, other = decoded.copy(), self.other_label or "unknown"
        for pred in [c for c in out.columns if c == "pred" or c.startswith("pred_")]:
            low = out[pred.replace("pred", "prob", 1)].to_numpy() < float(min_prob)
            out[pred] = out[pred].where(~low, other)
        return out

    @property
    def separator(self) -> Optional[str]:
        """How a prediction cell joins several class names (multi-label), None when it holds one."""
        return None

    def canonical(self, labels: pd.Series) -> pd.Series:
        """Label cells as the class names they stand for (bundled names -> other_label)."""
        return labels.replace(self.aliases) if self.aliases else labels

    def truth_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        """Extra truth columns of a prediction table (a hierarchy's coarser levels)."""
        return pd.DataFrame(index=range(len(table)))

    def encode(self, table: pd.DataFrame, where: str) -> np.ndarray:
        raise NotImplementedError

    def check_training_targets(self, targets: np.ndarray, log) -> None:
        """Warn about a training split that cannot teach this kind much."""

    def check_metric(self, metric: str) -> None:
        """A main metric that names part of the map (a hierarchy level) exists."""

    # ------------------------------------------------------------ scores and reports
    def epoch_metrics(self, logits: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
        """The kind's metrics over one loader's logits and targets (state_params/main_metric's choices)."""
        raise NotImplementedError

    def baselines(self, targets: np.ndarray) -> Dict[str, float]:
        """Scores of trivial predictors on the same targets (what a run must clearly beat)."""
        raise NotImplementedError

    # the report's final score and the baseline it must beat (below_baseline)
    final_score = "valid_top1_final"
    baseline_score = "baseline_top1_majority"

    def below_baseline(self, report: dict) -> Optional[str]:
        """A warning when the run's final validation score is not above its trivial baseline."""
        score, base = report.get(self.final_score), report.get(self.baseline_score)
        if score is None or base is None or score > base:
            return None
        return (f"the run ends below its trivial baseline: {self.final_score}={score:.4f} <= "
                f"{self.baseline_score}={base:.4f} (too few epochs, a learning rate too high or low, or "
                "augmentations that remove the signal?)")

    def report(self, logits: np.ndarray, targets: np.ndarray, logdir: Path, threshold_grid) -> Dict[str, float]:
        """The validation report of a finished run: per-class tables in ``logdir``; returns its scores."""
        raise NotImplementedError

    def score(self, probs: np.ndarray, targets: np.ndarray, thresholds=None) -> Dict[str, float]:
        """Scores of averaged probabilities (an ensemble's out-of-fold or held-out set)."""
        return self.epoch_metrics(np.log(np.clip(probs, 1e-12, 1)), targets)

    def figures(self) -> List[dict]:
        """The figures of a finished run: ``{"plot": confusion | per_class_f1, ...arguments}``."""
        return [{"plot": "confusion", "png": layout.CONFUSION_PNG}]

    # ------------------------------------------------------------ thresholds and submissions (none by default)
    def fit_thresholds(self, probs: np.ndarray, targets: np.ndarray, threshold_grid) -> Optional[np.ndarray]:
        return None

    def read_thresholds(self, path: Path) -> Optional[np.ndarray]:
        return None

    def save_thresholds(self, thresholds, path: Path, fitted_on: str) -> None:
        write_text(json.dumps({"classes": list(self.classes),
                               "thresholds": [round(float(t), 4) for t in thresholds],
                               "fitted_on": fitted_on}, indent=1) + "\n", path)

    def submissions(self, source, table: pd.DataFrame, probs: np.ndarray, thresholds=None) -> Dict[str, pd.DataFrame]:
        """File name -> table of the source's submission format (none for kinds without one)."""
        return {}

    # ------------------------------------------------------------ labels.json
    def to_dict(self) -> dict:
        return {"kind": self.kind, "classes": self.classes, "other_label": self.other_label,
                "unseen_labels": self.unseen_labels, "aliases": self.aliases}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(d["classes"], d.get("other_label"), d.get("unseen_labels", "error"), d.get("aliases"))

    def save(self, path) -> Path:
        path = Path(path)
        write_text(json.dumps(self.to_dict(), indent=1) + "\n", path)
        return path


def write_per_class(table: pd.DataFrame, logdir: Path, level: Optional[str] = None) -> None:
    name = layout.PER_CLASS if level is None else layout.PER_CLASS.replace(".csv", f"_{level}.csv")
    write_csv(table, Path(logdir) / name)


def rare_aliases(train: pd.DataFrame, min_samples: int, other_label: str) -> dict:
    """Classes with fewer than ``min_samples`` training samples -> ``other_label``."""
    if not min_samples:
        return {}
    counts = train["label"].value_counts()
    return {name: other_label for name in counts[counts < int(min_samples)].index}


def sorted_classes(names, data_params: dict, other: str) -> List[str]:
    """The training split's class names in natural order (+ other_label when unseen labels go there)."""
    names = set(names)
    if not names:
        raise DataError("the training split has no labelled samples (empty class after filtering?)")
    if data_params.get("unseen_labels") == "other":
        names.add(other)
    return natural_sort(names)
