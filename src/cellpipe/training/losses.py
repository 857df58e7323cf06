"""Losses by name (criterion_params/criterion in YAML), for every target kind.

single:     CrossEntropyLoss, LabelSmoothingCrossEntropy
multilabel: BCEWithLogitsLoss, FocalLoss (gamma), SoftF1Loss (seed 004)
hierarchy:  HierarchyCrossEntropy (one cross-entropy per level, weighted by loss_weights: seed 001)
single:     ArcFaceCombined (base loss + ArcFace margin loss on the model's class centres; issue 8)
any:        WeightedSum of the above: ``losses: [{criterion: FocalLoss, gamma: 2, coef: 1.0}, ...]``

Every factory takes ``weight`` (per-class weights, data_params/balance=loss) and ``labels``
(the run's label map: a hierarchy needs its level sizes); each ignores what it does not use.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cellpipe.core.errors import ConfigError
from cellpipe.core.registry import Registry

CRITERIA = Registry("criterion")


@CRITERIA.register("LabelSmoothingCrossEntropy")
def label_smoothing_ce(smoothing: float = 0.1, weight=None, labels=None):
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(smoothing))


@CRITERIA.register("CrossEntropyLoss")
def cross_entropy(smoothing: float = 0.0, weight=None, labels=None):
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(smoothing))


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


class ArcFaceCombined(nn.Module):
    """(1 - arc_weight) * ``base``(logits) + arc_weight * ArcFace (Deng et al. 2019) on the cosines to
    the class centres: the true class's angle gets an additive ``margin`` before scaling by ``scale``.
    The 1st place of RxRx1 trained with 0.8 cross-entropy + 0.2 ArcFace. Its input is the pair
    (logits, cosines) of a training batch (model_params/arcface: true); plain logits (validation)
    get ``base`` alone."""

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


class WeightedSum(nn.Module):
    """sum_i coef_i * loss_i(logits, targets)."""

    def __init__(self, losses: List[nn.Module], coefs: Sequence[float]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.coefs = [float(c) for c in coefs]

    def forward(self, logits, targets):
        return sum(c * loss(logits, targets) for c, loss in zip(self.coefs, self.losses))


@CRITERIA.register("BCEWithLogitsLoss")
def bce(weight=None, labels=None):
    return BCELoss(pos_weight=weight)


@CRITERIA.register("FocalLoss")
def focal(gamma: float = 2.0, alpha: Optional[float] = None, weight=None, labels=None):
    return FocalLoss(gamma, alpha)


@CRITERIA.register("SoftF1Loss")
def soft_f1(eps: float = 1e-7, weight=None, labels=None):
    return SoftF1Loss(eps)


@CRITERIA.register("HierarchyCrossEntropy")
def hierarchy_ce(loss_weights: Optional[Sequence[float]] = None, smoothing: float = 0.0, weight=None, labels=None):
    sizes = getattr(labels, "sizes", None)
    if sizes is None:
        raise ConfigError("criterion HierarchyCrossEntropy needs data_params/target=hierarchy")
    loss_weights = [1.0] * len(sizes) if loss_weights is None else list(loss_weights)
    if len(loss_weights) != len(sizes):
        raise ConfigError(f"config key 'criterion_params/loss_weights' has {len(loss_weights)} values but the "
                          f"hierarchy has {len(sizes)} levels {labels.levels}")
    return HierarchyCrossEntropy(sizes, loss_weights, smoothing)


@CRITERIA.register("ArcFaceCombined")
def arcface_combined(base: Optional[dict] = None, arc_weight: float = 0.2, margin: float = 0.3, scale: float = 30.0,
                     weight=None, labels=None):
    spec = dict(base or {"criterion": "CrossEntropyLoss"})
    name = spec.pop("criterion", None)
    CRITERIA.check(name, "criterion_params/base/criterion")
    return ArcFaceCombined(CRITERIA.build(name, weight=weight, labels=labels, **spec), arc_weight, margin, scale)


@CRITERIA.register("WeightedSum")
def weighted_sum(losses: Sequence[dict] = (), weight=None, labels=None):
    if not losses:
        raise ConfigError("criterion WeightedSum needs criterion_params/losses: [{criterion: NAME, coef: 1.0, ...}]")
    parts, coefs = [], []
    for i, spec in enumerate(losses):
        spec = dict(spec)
        name = spec.pop("criterion", None)
        CRITERIA.check(name, f"criterion_params/losses/{i}/criterion")
        coefs.append(spec.pop("coef", 1.0))
        parts.append(CRITERIA.build(name, weight=weight, labels=labels, **spec))
    return WeightedSum(parts, coefs)


# which criteria fit which target kind (checked at start-up)
KIND_CRITERIA = {
    "single": {"CrossEntropyLoss", "LabelSmoothingCrossEntropy", "ArcFaceCombined"},
    "multilabel": {"BCEWithLogitsLoss", "FocalLoss", "SoftF1Loss"},
    "hierarchy": {"HierarchyCrossEntropy"},
}


def check_criterion(params: dict, kind: str, key: str) -> None:
    """The criterion (and a WeightedSum's parts) exist and suit the target kind."""
    name = params.get("criterion")
    CRITERIA.check(name, f"{key}/criterion")
    names = [name]
    if name == "WeightedSum":
        names = [p.get("criterion") for p in params.get("losses") or []]
        for i, n in enumerate(names):
            CRITERIA.check(n, f"{key}/losses/{i}/criterion")
    for n in names:
        if kind in KIND_CRITERIA and n not in KIND_CRITERIA[kind]:
            raise ConfigError(f"config key '{key}/criterion': {n} does not fit data_params/target={kind}; "
                              f"use one of {sorted(KIND_CRITERIA[kind])} (or WeightedSum of them)")


def create_criterion(criterion: str, weight=None, labels=None, **kwargs) -> nn.Module:
    """The named loss; ``weight`` (per-class, e.g. from data_params/balance=loss) when given."""
    return CRITERIA.build(criterion, weight=weight, labels=labels, **kwargs)
