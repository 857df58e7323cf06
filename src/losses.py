"""Losses by name (criterion_params/criterion in YAML)."""
from torch import nn

from registry import Registry

CRITERIA = Registry("criterion")


@CRITERIA.register("LabelSmoothingCrossEntropy")
def label_smoothing_ce(smoothing: float = 0.1):
    return nn.CrossEntropyLoss(label_smoothing=float(smoothing))


@CRITERIA.register("CrossEntropyLoss")
def cross_entropy(smoothing: float = 0.0):
    return nn.CrossEntropyLoss(label_smoothing=float(smoothing))


def create_criterion(criterion: str, **kwargs) -> nn.Module:
    return CRITERIA.build(criterion, **kwargs)
