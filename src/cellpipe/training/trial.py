"""A run as a trial of an Optuna study (``tune_params``, set by src/sweep.py): each epoch's validation
metric is reported to the trial in the study's storage, and the study's pruner may end the run
early (train.py then exits with PRUNED_EXIT). The pruners are built here, from the sweep file's
``pruner`` mapping, by the sweep and by the trial alike."""
from typing import Optional

from catalyst import dl

from cellpipe.core.errors import ConfigError

PRUNED_EXIT = 3  # train.py's exit code for a pruned trial (src/sweep.py reads it)
PRUNERS = ("median", "halving", "none")


class Pruned(Exception):
    """The run's trial was pruned."""


def make_pruner(spec: Optional[dict]):
    """An Optuna pruner from ``{name: median | halving | none, ...its settings}`` (None: none).
    median: MedianPruner(n_startup_trials, n_warmup_steps); halving: SuccessiveHalvingPruner
    (min_resource, reduction_factor)."""
    import optuna

    spec = dict(spec or {"name": "none"})
    name = spec.pop("name", "none")
    if name not in PRUNERS:
        raise ConfigError(f"sweep pruner must be one of {list(PRUNERS)}, got {name!r}")
    try:
        if name == "median":
            return optuna.pruners.MedianPruner(**spec)
        if name == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(**spec)
    except TypeError as e:
        raise ConfigError(f"sweep pruner {name}: {e}") from None
    if spec:
        raise ConfigError(f"sweep pruner none takes no settings, got {sorted(spec)}")
    return optuna.pruners.NopPruner()


class TrialCallback(dl.Callback):
    """Report the validation ``metric`` of every epoch (numbered over the stages: ``offset`` + the
    stage's epoch) and raise Pruned when the study's pruner says so."""

    def __init__(self, tune: dict, metric: str, offset: int):
        super().__init__(order=dl.CallbackOrder.External)
        import optuna

        self.metric, self.offset = metric, offset
        study = optuna.load_study(study_name=tune["study"], storage=tune["storage"],
                                  pruner=make_pruner(tune.get("pruner")))
        self.trial = optuna.trial.Trial(study, int(tune["trial_id"]))

    def on_epoch_end(self, runner):
        value = runner.epoch_metrics.get("valid", {}).get(self.metric)
        if value is None:
            return
        step = self.offset + runner.epoch_step
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise Pruned(f"trial {self.trial.number} pruned after epoch {step} ({self.metric} {float(value):.4f})")
