"""Whole-loader metrics on logits, per target kind (the choices of state_params/main_metric).

single:     accuracy01, accuracy03 (top-k) and map03. The seed reported top-3 accuracy as
            "MAP@3"; here MAP@k gives 1/rank of the true class when it is among the top k, else 0.
multilabel: macro_f1, micro_f1 (decisions at 0.5, at least one class per sample) and bce.
hierarchy:  accuracy01 (finest level), accuracy_<level> per level and consistency (how often
            the levels' own argmaxes form one path of the hierarchy).
Every kind also logs ``loss`` (the valid criterion: e.g. FocalLoss for seed 004's choice).
"""
import numpy as np
import torch
from sklearn.metrics import f1_score

METRIC_NAMES = ("accuracy01", "accuracy03", "map03", "loss")
KIND_METRICS = {
    "single": METRIC_NAMES,
    "multilabel": ("macro_f1", "micro_f1", "bce", "loss"),
    "hierarchy": ("accuracy01", "consistency", "loss"),  # + accuracy_<level>
}


def metric_known(kind: str, name: str) -> bool:
    return name in KIND_METRICS.get(kind, METRIC_NAMES) or (kind == "hierarchy" and name.startswith("accuracy_"))


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
    out = {f"accuracy{k:02d}": topk_accuracy(logits, targets, k) for k in topk}
    out[f"map{map_k:02d}"] = map_at_k(logits, targets, map_k)
    return out


def multilabel_metrics(labels, logits, targets) -> dict:
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets)
    ok = (targets >= 0).all(axis=1)
    logits, targets = logits[ok], targets[ok].astype(np.int64)
    if not len(targets):
        return {}
    probs = labels.probabilities(logits)
    hits = labels.predicted(probs).astype(np.int64)
    return {"macro_f1": float(f1_score(targets, hits, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(targets, hits, average="micro", zero_division=0)),
            "bce": float(np.nanmean(labels.sample_loss(probs, targets)) / targets.shape[1])}


def hierarchy_metrics(labels, logits, targets) -> dict:
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets)
    ok = (targets >= 0).all(axis=1)
    logits, targets = logits[ok], targets[ok]
    if not len(targets):
        return {}
    probs = labels.probabilities(logits)
    decoded = labels.decode(probs)
    finest = labels.joint(probs)
    out = {}
    for k, level in enumerate(labels.levels):
        out[f"accuracy_{level}"] = float((labels.ancestry[finest, k] == targets[:, k]).mean())
    out["accuracy01"] = out[f"accuracy_{labels.levels[0]}"]
    out["consistency"] = float(decoded["consistent"].mean())
    return out


def epoch_metrics(labels, logits, targets) -> dict:
    """The metrics of ``labels.kind`` over one loader's logits and targets."""
    kind = getattr(labels, "kind", "single")
    if kind == "multilabel":
        return multilabel_metrics(labels, logits, targets)
    if kind == "hierarchy":
        return hierarchy_metrics(labels, logits, targets)
    return classification_metrics(logits, targets)
