"""Classification metrics on logits: top-k accuracy and a true MAP@k.

The seed reported top-3 accuracy as "MAP@3"; here MAP@k gives 1/rank of the
true class when it is among the top k, else 0.
"""
import numpy as np
import torch

# what classification_metrics logs, plus the loss: the choices of state_params/main_metric
METRIC_NAMES = ("accuracy01", "accuracy03", "map03", "loss")


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
