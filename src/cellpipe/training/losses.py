"""Losses by name (criterion_params/criterion in YAML)."""
from torch import nn

from cellpipe.core.registry import Registry

CRITERIA = Registry("criterion")


@CRITERIA.register("LabelSmoothingCrossEntropy")
def label_smoothing_ce(smoothing: float = 0.1, weight=None):
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(smoothing))


@CRITERIA.register("CrossEntropyLoss")
def cross_entropy(smoothing: float = 0.0, weight=None):
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(smoothing))


def create_criterion(criterion: str, weight=None, **kwargs) -> nn.Module:
    """The named loss; ``weight`` (per-class, e.g. from data_params/balance=loss) when given."""
    return CRITERIA.build(criterion, weight=weight, **kwargs)
