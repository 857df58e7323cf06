"""Start-up checks of every name a config resolves through a registry, before any data is read.

An unknown model, source, criterion, optimizer, scheduler, metric, table kind or
normalisation mode fails here with the config key and the known names, instead of
after an epoch of training.
"""
from cellpipe.core import config as cfglib
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.images import check_rescale
from cellpipe.data.build import resolve
from cellpipe.data.normalize import modes
from cellpipe.models import MODELS
from cellpipe.sources import make_source
from cellpipe.training.losses import CRITERIA
from cellpipe.training.metrics import METRIC_NAMES
from cellpipe.training.optim import OPTIMIZERS, SCHEDULERS


def check_names(cfg: dict):
    """Raise UnknownName / ConfigError naming the key; returns the (unread) source."""
    MODELS.check(cfg["model_params"]["model"], "model_params/model")
    CRITERIA.check(cfg["criterion_params"]["criterion"], "criterion_params/criterion")
    CRITERIA.check(cfg["valid_criterion_params"]["criterion"], "valid_criterion_params/criterion")
    for name in cfg["stages"]:
        st = cfglib.stage_settings(cfg, name)
        OPTIMIZERS.check(st["optimizer_params"]["optimizer"], f"stages/{name}/optimizer_params/optimizer")
        if st.get("scheduler_params"):
            SCHEDULERS.check(st["scheduler_params"].get("scheduler"), f"stages/{name}/scheduler_params/scheduler")
    metric = cfg["state_params"]["main_metric"]
    if metric not in METRIC_NAMES:
        raise ConfigError(f"config key 'state_params/main_metric': unknown metric '{metric}'; "
                          f"known: {', '.join(METRIC_NAMES)}")
    dp = cfg["data_params"]
    try:
        check_rescale(dp.get("rescale"))
    except DataError as e:
        raise ConfigError(str(e)) from None
    source = make_source(dp)  # checks data_params/source, source_params and (rxrx1) dataset
    resolve(cfg, source)  # channels and sites against the source's own
    if dp["normalization"] not in modes(source):
        raise ConfigError(f"config key 'data_params/normalization': unknown mode '{dp['normalization']}' for "
                          f"source '{source.name}'; known: {', '.join(modes(source))}")
    return source
