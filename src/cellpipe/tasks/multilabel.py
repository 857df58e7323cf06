"""Multi-label: any number of classes per sample, a sigmoid per class (seed 004, HPA).

``label`` holds the names or 0-based ids separated by ``data_params/label_sep`` (HPA's
``Target="0 5 25"``). Losses: BCEWithLogitsLoss, FocalLoss (gamma), SoftF1Loss. Metrics:
macro_f1, micro_f1 (decisions at 0.5, at least one class per sample) and bce. Per-class
thresholds are fitted on validation (a run) or out-of-fold (an ensemble) predictions, never
on test labels. Folds: iterative stratification (Sechidis et al. 2011), so that rare classes
reach every validation fold; grouped, it stratifies whole groups by the union of their labels.
"""
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, precision_recall_fscore_support
from torch import nn

from cellpipe.core import layout
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.tables import natural_sort
from cellpipe.tasks import TASKS
from cellpipe.tasks.base import CRITERIA, Task, labelled_rows, listing, per_class_table, sigmoid, write_per_class

THRESHOLD_GRID = (0.02, 0.98, 0.01)  # start, stop, step of the per-class threshold search (state_params/threshold_grid)


class BCELoss(nn.Module):
    """Binary cross-entropy on logits, averaged over samples and classes."""

    def __init__(self, pos_weight=None):
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets.float(), pos_weight=self.pos_weight)


class FocalLoss(nn.Module):
    """Binary focal loss (Lin et al. 2017): BCE scaled by (1 - p_t)^gamma, so easy negatives of
    rare classes stop dominating; ``alpha`` weighs the positives (null = no weighting)."""

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None):
        super().__init__()
        self.gamma, self.alpha = float(gamma), alpha

    def forward(self, logits, targets):
        targets = targets.float()
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = torch.exp(-bce)
        loss = (1 - p_t) ** self.gamma * bce
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss.mean()


class SoftF1Loss(nn.Module):
    """1 - the macro F1 of the batch computed on probabilities instead of 0/1 decisions
    (differentiable); ``eps`` keeps classes absent from the batch finite."""

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = float(eps)

    def forward(self, logits, targets):
        p, y = torch.sigmoid(logits), targets.float()
        tp = (p * y).sum(dim=0)
        fp = (p * (1 - y)).sum(dim=0)
        fn = ((1 - p) * y).sum(dim=0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        return 1 - f1.mean()


@CRITERIA.register("BCEWithLogitsLoss")
def bce(weight=None, labels=None):
    return BCELoss(pos_weight=weight)


@CRITERIA.register("FocalLoss")
def focal(gamma: float = 2.0, alpha: Optional[float] = None, weight=None, labels=None):
    return FocalLoss(gamma, alpha)


@CRITERIA.register("SoftF1Loss")
def soft_f1(eps: float = 1e-7, weight=None, labels=None):
    return SoftF1Loss(eps)


def multi_hot(labels: pd.Series, sep: Optional[str] = " ") -> np.ndarray:
    """0/1 matrix (rows x distinct tokens) of separated label cells."""
    tokens = [[t for t in str(v).split(sep if sep and sep.strip() else None) if t] for v in labels]
    names = sorted({t for ts in tokens for t in ts})
    index = {t: i for i, t in enumerate(names)}
    out = np.zeros((len(tokens), len(names)), np.int64)
    for i, ts in enumerate(tokens):
        out[i, [index[t] for t in ts]] = 1
    return out


def fit_thresholds(probs: np.ndarray, targets: np.ndarray, grid=THRESHOLD_GRID) -> np.ndarray:
    """Per class, the threshold of ``grid`` (start, stop, step) maximising that class's F1 on
    ``probs``; 0.5 for a class without positives (nothing to fit)."""
    lo, hi, step = (float(v) for v in grid)
    cand = np.round(np.arange(lo, hi + step / 2, step), 6)
    out = np.full(probs.shape[1], 0.5)
    for k in range(probs.shape[1]):
        y = targets[:, k] > 0
        if not y.any():
            continue
        hits = probs[:, k][None, :] >= cand[:, None]          # thresholds x samples
        tp = (hits & y).sum(axis=1)
        f1 = 2 * tp / np.maximum(hits.sum(axis=1) + y.sum(), 1)
        out[k] = cand[int(np.argmax(f1))]  # first best: the lowest threshold among ties
    return out


@TASKS.register("multilabel")
class MultiLabel(Task):
    """Several classes per sample: targets are 0/1 rows (N x classes); -1 rows are unlabelled."""

    kind = "multilabel"
    criteria = ("BCEWithLogitsLoss", "FocalLoss", "SoftF1Loss")
    default_criterion = {"criterion": "BCEWithLogitsLoss"}
    default_valid_criterion = {"criterion": "BCEWithLogitsLoss"}
    metrics = ("macro_f1", "micro_f1", "bce")
    default_metric = "macro_f1"
    final_score = "valid_macro_f1_thresholds_in_sample"  # at 0.5 a good model of rare classes can score 0
    baseline_score = "baseline_macro_f1_all_positive"

    def __init__(self, classes: List[str], sep: str = " ", other_label: Optional[str] = None,
                 unseen_labels: str = "error"):
        super().__init__(classes, other_label, unseen_labels)
        self.sep = sep

    # ------------------------------------------------------------ config and folds
    @classmethod
    def check_config(cls, cfg: dict) -> None:
        super().check_config(cfg)
        if cfg["data_params"].get("min_samples"):
            raise ConfigError("config key 'data_params/min_samples' bundles single labels; it does not apply "
                              "to data_params/target=multilabel (set it to 0)")

    @classmethod
    def build(cls, train: pd.DataFrame, data_params: dict, fixed=None) -> "MultiLabel":
        cls.check_config({"data_params": data_params})
        other = data_params.get("other_label") or "Other"
        unseen = data_params.get("unseen_labels", "error")
        sep = data_params.get("label_sep") or " "
        if fixed is not None:
            return cls(fixed, sep, other, unseen)
        probe = cls(["?"], sep)
        names = {t for cell in train["label"].dropna() for t in probe.tokens(cell)}
        if not names:
            raise DataError("the training split has no labelled samples (empty class after filtering?)")
        return cls(natural_sort(names), sep, other, unseen)

    @classmethod
    def fold_splits(cls, df, n_folds, seed, grouped, sep):
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        y = multi_hot(df["label"], sep)
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        if not grouped:
            return list(splitter.split(np.zeros(len(df)), y))
        codes, groups = pd.factorize(df["group"])
        group_y = np.zeros((len(groups), y.shape[1]), np.int64)
        np.maximum.at(group_y, codes, y)
        return [(np.flatnonzero(np.isin(codes, tr)), np.flatnonzero(np.isin(codes, va)))
                for tr, va in splitter.split(np.zeros(len(groups)), group_y)]

    @classmethod
    def fold_rule(cls, grouped: bool) -> str:
        return "MultilabelStratifiedKFold (iterative stratification)" + (" over groups" if grouped else "")

    # ------------------------------------------------------------ labels
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
                                    f"({len(self)} classes: ids 0-{len(self) - 1} or names {listing(self.classes)})")
                row[k] = 1.0
            out[i] = row
        return out

    def reject_unsure(self, decoded: pd.DataFrame, min_prob: float) -> pd.DataFrame:
        raise DataError("--min_prob applies to single-label and hierarchy models; a multi-label model's "
                        "labels each have their fitted threshold")

    @property
    def separator(self) -> str:
        return self.joiner()

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

    # ------------------------------------------------------------ outputs
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

    # ------------------------------------------------------------ scores and reports
    def epoch_metrics(self, logits, targets) -> dict:
        logits, targets = np.asarray(logits, np.float64), np.asarray(targets)
        ok = labelled_rows(targets)
        logits, targets = logits[ok], targets[ok].astype(np.int64)
        if not len(targets):
            return {}
        probs = self.probabilities(logits)
        hits = self.predicted(probs).astype(np.int64)
        return {"macro_f1": float(f1_score(targets, hits, average="macro", zero_division=0)),
                "micro_f1": float(f1_score(targets, hits, average="micro", zero_division=0)),
                "bce": float(np.nanmean(self.sample_loss(probs, targets)) / targets.shape[1])}

    def baselines(self, targets) -> dict:
        """Macro F1 of predicting every class (and of none, 0 by definition)."""
        y = np.asarray(targets)[labelled_rows(targets)].astype(int)
        if not len(y):
            return {}
        every = precision_recall_fscore_support(y, np.ones_like(y), average="macro", zero_division=0)[2]
        return {"baseline_macro_f1_all_positive": float(every), "baseline_macro_f1_all_negative": 0.0}

    def report(self, logits, targets, logdir, threshold_grid) -> dict:
        """per_class.csv at 0.5 and at per-class thresholds fitted here (checkpoints/thresholds.json,
        so scored in-sample)."""
        probs = self.probabilities(logits)
        ok = labelled_rows(targets)
        th = self.fit_thresholds(probs, targets, threshold_grid)
        self.save_thresholds(th, Path(logdir) / layout.THRESHOLDS, f"{int(ok.sum())} validation samples")
        truth = targets[ok].astype(int)
        table_05 = per_class_table(truth, self.predicted(probs[ok]).astype(int), self.classes)
        table_fit = per_class_table(truth, self.predicted(probs[ok], th).astype(int), self.classes)
        write_per_class(table_05.assign(threshold=list(th) + [np.nan, np.nan], f1_at_threshold=table_fit["f1"]),
                        logdir)
        return {"valid_macro_f1_final": float(table_05["f1"].iloc[-2]),
                "valid_macro_f1_thresholds_in_sample": float(table_fit["f1"].iloc[-2]), "n_valid": int(ok.sum())}

    def score(self, probs, targets, thresholds=None) -> dict:
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        out = self.epoch_metrics(np.log(p / (1 - p)), targets)
        if thresholds is not None:
            ok = labelled_rows(targets)
            hits = self.predicted(probs[ok], thresholds)
            out["macro_f1_oof_thresholds"] = float(f1_score(targets[ok], hits, average="macro", zero_division=0))
        return out

    def figures(self) -> List[dict]:
        return [{"plot": "per_class_f1", "csv": layout.PER_CLASS, "png": layout.PER_CLASS_F1_PNG}]

    # ------------------------------------------------------------ thresholds and submissions
    def fit_thresholds(self, probs, targets, threshold_grid=None):
        ok = labelled_rows(targets)
        return fit_thresholds(probs[ok], targets[ok], threshold_grid or THRESHOLD_GRID)

    def read_thresholds(self, path: Path):
        """A thresholds.json of this map's classes, or None when there is no such file."""
        path = Path(path)
        if not path.is_file():
            return None
        d = json.loads(path.read_text())
        if list(d.get("classes", [])) != list(self.classes):
            raise DataError(f"{path}: thresholds are for classes {d.get('classes')[:5]}..., not the model's")
        return np.asarray(d["thresholds"], np.float64)

    def submissions(self, source, table, probs, thresholds=None) -> dict:
        """Seed 004's pair: submission.csv at 0.5 and, with fitted thresholds, submission_optimal_threshold.csv."""
        test = pd.DataFrame({"id": table["id"].to_numpy()})
        out = {layout.SUBMISSION: source.submission(test, self.predicted(probs), self)}
        if thresholds is not None:
            out[layout.OPTIMAL_SUBMISSION] = source.submission(test, self.predicted(probs, thresholds), self)
        return out

    # ------------------------------------------------------------ labels.json
    def to_dict(self) -> dict:
        return dict(super().to_dict(), sep=self.sep)

    @classmethod
    def from_dict(cls, d: dict) -> "MultiLabel":
        return cls(d["classes"], d.get("sep", " "), d.get("other_label"), d.get("unseen_labels", "error"))
