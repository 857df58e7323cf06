"""Single label: one class per sample, softmax over the classes; ``label`` holds the class name.

Losses: CrossEntropyLoss, LabelSmoothingCrossEntropy, ArcFaceCombined (base loss + ArcFace margin
loss on the model's class centres: the RxRx1 winner's 0.8 CE + 0.2 ArcFace).
Metrics: accuracy01, accuracy03 (top-k) and map03. The seed reported top-3 accuracy as "MAP@3";
here MAP@k gives 1/rank of the true class when it is among the top k, else 0.
Folds: StratifiedGroupKFold by label over groups (StratifiedKFold without groups).
"""
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from torch import nn

from cellpipe.core.errors import DataError
from cellpipe.tasks import TASKS
from cellpipe.tasks.base import (
    CRITERIA,
    Task,
    labelled_rows,
    listing,
    per_class_table,
    rare_aliases,
    softmax,
    sorted_classes,
    write_per_class,
)


@CRITERIA.register("LabelSmoothingCrossEntropy")
def label_smoothing_ce(smoothing: float = 0.1, weight=None, labels=None):
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(smoothing))


@CRITERIA.register("CrossEntropyLoss")
def cross_entropy(smoothing: float = 0.0, weight=None, labels=None):
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(smoothing))


class ArcFaceCombined(nn.Module):
    """(1 - arc_weight) * ``base``(logits) + arc_weight * ArcFace (Deng et al. 2019) on the cosines to
    the class centres: the true class's angle gets an additive ``margin`` before scaling by ``scale``.
    Its input is the pair (logits, cosines) of a training batch (model_params/arcface: true); plain
    logits (validation) get ``base`` alone."""

    def __init__(self, base: nn.Module, arc_weight: float = 0.2, margin: float = 0.3, scale: float = 30.0):
        super().__init__()
        self.base, self.w, self.margin, self.scale = base, float(arc_weight), float(margin), float(scale)

    def forward(self, inputs, targets):
        if not isinstance(inputs, tuple):
            return self.base(inputs, targets)
        logits, cos = inputs
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = F.one_hot(targets, cos.shape[1]).bool()
        arc_logits = self.scale * torch.where(target, torch.cos(theta + self.margin), cos)
        return (1 - self.w) * self.base(logits, targets) + self.w * F.cross_entropy(arc_logits, targets)


@CRITERIA.register("ArcFaceCombined")
def arcface_combined(base: Optional[dict] = None, arc_weight: float = 0.2, margin: float = 0.3, scale: float = 30.0,
                     weight=None, labels=None):
    spec = dict(base or {"criterion": "CrossEntropyLoss"})
    name = spec.pop("criterion", None)
    CRITERIA.check(name, "criterion_params/base/criterion")
    return ArcFaceCombined(CRITERIA.build(name, weight=weight, labels=labels, **spec), arc_weight, margin, scale)


def true_class_rank(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among its row's scores (ties rank first)."""
    target_score = logits.gather(1, targets.view(-1, 1))
    return (logits > target_score).sum(dim=1) + 1


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    return float((true_class_rank(logits, targets) <= k).float().mean())


def map_at_k(logits: torch.Tensor, targets: torch.Tensor, k: int = 3) -> float:
    rank = true_class_rank(logits, targets).float()
    return float(torch.where(rank <= k, 1.0 / rank, torch.zeros_like(rank)).mean())


def classification_metrics(logits, targets, topk=(1, 3), map_k: int = 3) -> dict:
    logits = torch.as_tensor(np.asarray(logits)) if not torch.is_tensor(logits) else logits
    targets = torch.as_tensor(np.asarray(targets)) if not torch.is_tensor(targets) else targets
    ok = targets >= 0
    logits, targets = logits[ok], targets[ok]
    if not len(targets):
        return {}
    out = {f"accuracy{k:02d}": topk_accuracy(logits, targets, k) for k in topk}
    out[f"map{map_k:02d}"] = map_at_k(logits, targets, map_k)
    return out


def majority_baselines(targets: np.ndarray, names) -> dict:
    """Accuracy of always predicting the most frequent class, per target column."""
    cols = targets[:, None] if targets.ndim == 1 else targets
    cols = cols[labelled_rows(cols)]
    if not len(cols):
        return {}
    return {f"baseline_{n}_majority": float(np.bincount(cols[:, k]).max() / len(cols)) for k, n in enumerate(names)}


@TASKS.register("single")
class SingleLabel(Task):
    """Ordered class names; ``encode`` gives indices (-1 = unlabelled)."""

    kind = "single"
    criteria = ("CrossEntropyLoss", "LabelSmoothingCrossEntropy", "ArcFaceCombined")
    default_criterion = {"criterion": "CrossEntropyLoss", "smoothing": 0.0}
    default_valid_criterion = {"criterion": "CrossEntropyLoss", "smoothing": 0.0}
    metrics = ("accuracy01", "accuracy03", "map03")
    default_metric = "accuracy01"
    balances = True

    # ------------------------------------------------------------ config and folds
    @classmethod
    def build(cls, train: pd.DataFrame, data_params: dict, fixed=None) -> "SingleLabel":
        other = data_params.get("other_label") or "Other"
        unseen = data_params.get("unseen_labels", "error")
        if fixed is not None:
            return cls(fixed, other, unseen)
        aliases = rare_aliases(train, data_params.get("min_samples", 0), other)
        names = {aliases.get(n, n) for n in train["label"].dropna()}
        return cls(sorted_classes(names, data_params, other), other, unseen, aliases)

    @classmethod
    def fold_splits(cls, df, n_folds, seed, grouped, sep):
        if grouped:
            return StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(df, df["label"], df["group"])
        return StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(df, df["label"])

    @classmethod
    def fold_rule(cls, grouped: bool) -> str:
        return "StratifiedGroupKFold by label over groups" if grouped else "StratifiedKFold by label"

    # ------------------------------------------------------------ outputs
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
                    f"split ({len(self)} classes: {listing(self.classes)}); "
                    f"set data_params/unseen_labels=other to map such labels to '{self.other_label}'")
        return known.fillna(-1).astype(np.int64).to_numpy()

    def check_training_targets(self, targets, log) -> None:
        if len(np.unique(targets)) < 2:
            log.warning("the training split holds a single class")

    # ------------------------------------------------------------ scores and reports
    def epoch_metrics(self, logits, targets) -> dict:
        return classification_metrics(logits, targets)

    def baselines(self, targets) -> dict:
        return majority_baselines(np.asarray(targets), ["top1"])

    def report(self, logits, targets, logdir, threshold_grid) -> dict:
        ok = targets >= 0
        pred_idx = logits.argmax(axis=1)
        write_per_class(per_class_table(targets[ok], pred_idx[ok], self.classes), logdir)
        return {"valid_top1_final": float((pred_idx[ok] == targets[ok]).mean()) if ok.any() else None,
                "n_valid": int(ok.sum())}

    def score(self, probs, targets, thresholds=None) -> dict:
        ok = targets >= 0
        return {"accuracy01": float((probs[ok].argmax(axis=1) == targets[ok]).mean())} if ok.any() else {}
