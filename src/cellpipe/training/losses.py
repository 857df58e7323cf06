"""Losses by name (criterion_params/criterion in YAML). Each target kind registers its own in its
task file (cellpipe.tasks.*) and says which fit it; this module adds what any kind may use:

any:        WeightedSum of the kind's losses: ``losses: [{criterion: FocalLoss, gamma: 2, coef: 1.0}, ...]``

Every factory takes ``weight`` (per-class weights, data_params/balance=loss) and ``labels``
(the run's task: a hierarchy needs its level sizes); each ignores what it does not use.
"""
from typing import List, Sequence

from torch import nn

from cellpipe.core.errors import ConfigError
from cellpipe.tasks import kinds
from cellpipe.tasks.base import CRITERIA


class WeightedSum(nn.Module):
    """sum_i coef_i * loss_i(logits, targets)."""

    def __init__(self, losses: List[nn.Module], coefs: Sequence[float]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.coefs = [float(c) for c in coefs]

    def forward(self, logits, targets):
        return sum(c * loss(logits, targets) for c, loss in zip(self.coefs, self.losses))


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


def check_criterion(params: dict, task, key: str) -> None:
    """The criterion (and a WeightedSum's parts) exist and suit the target kind (a Task class)."""
    kinds()  # every kind's losses registered
    name = params.get("criterion")
    CRITERIA.check(name, f"{key}/criterion")
    names = [name]
    if name == "WeightedSum":
        names = [p.get("criterion") for p in params.get("losses") or []]
        for i, n in enumerate(names):
            CRITERIA.check(n, f"{key}/losses/{i}/criterion")
    for n in names:
        if n not in task.criteria:
            raise ConfigError(f"config key '{key}/criterion': {n} does not fit data_params/target={task.kind}; "
                              f"use one of {sorted(task.criteria)} (or WeightedSum of them)")


def create_criterion(criterion: str, weight=None, labels=None, **kwargs) -> nn.Module:
    """The named loss; ``weight`` (per-class, e.g. from data_params/balance=loss) when given."""
    kinds()
    return CRITERIA.build(criterion, weight=weight, labels=labels, **kwargs)
