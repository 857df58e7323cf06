"""Start-up checks of every name a config resolves through a registry, before any data is read.

An unknown model, source, criterion, optimizer, scheduler, metric, table kind or
normalisation mode fails here with the config key and the known names, instead of
after an epoch of training.
"""
from cellpipe.core import config as cfglib
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.images import check_rescale
from cellpipe.data.build import augmentation_warnings, resolve
from cellpipe.data.normalize import modes
from cellpipe.data.tta import check_tta
from cellpipe.models import MODELS
from cellpipe.sources import make_source
from cellpipe.tasks import resolve_defaults, task_class
from cellpipe.training.losses import check_criterion
from cellpipe.training.mixing import check_mix
from cellpipe.training.optim import OPTIMIZERS, SCHEDULERS


def check_names(cfg: dict):
    """Raise UnknownName / ConfigError naming the key; returns the (unread) source."""
    MODELS.check(cfg["model_params"]["model"], "model_params/model")
    dp = cfg["data_params"]
    task = task_class(dp.get("target"))
    resolve_defaults(cfg)
    check_criterion(cfg["criterion_params"], task, "criterion_params")
    check_mix(cfg.get("mix_params"))
    arc_loss = cfg["criterion_params"]["criterion"] == "ArcFaceCombined"
    if arc_loss != bool(cfg["model_params"].get("arcface")):
        raise ConfigError("criterion_params/criterion=ArcFaceCombined and model_params/arcface=true go together "
                          "(the loss needs the model's class centres, the centres need the loss)")
    check_criterion(cfg["valid_criterion_params"], task, "valid_criterion_params")
    task.check_config(cfg)
    for name in cfg["stages"]:
        st = cfglib.stage_settings(cfg, name)
        OPTIMIZERS.check(st["optimizer_params"]["optimizer"], f"stages/{name}/optimizer_params/optimizer")
        if st.get("scheduler_params"):
            SCHEDULERS.check(st["scheduler_params"].get("scheduler"), f"stages/{name}/scheduler_params/scheduler")
    metric = cfg["state_params"]["main_metric"]
    if not task.metric_known(metric):
        raise ConfigError(f"config key 'state_params/main_metric': unknown metric '{metric}' for "
                          f"data_params/target={task.kind}; known: {task.metric_choices()}")
    pp = cfg.get("predict_params") or {}
    try:
        check_rescale(dp.get("rescale"))
        check_tta(pp.get("tta") or "none", pp.get("reduce") or "mean", pp.get("crop"), "config key 'predict_params'")
    except DataError as e:
        raise ConfigError(str(e)) from None
    source = make_source(dp)  # checks data_params/source, source_params and (rxrx1) dataset
    resolve(cfg, source)  # channels and sites against the source's own
    for key, level in (("data_params/batch_by", dp.get("batch_by")),
                       ("predict_params/adabn", (cfg.get("predict_params") or {}).get("adabn"))):
        if level and level not in source.levels:
            raise ConfigError(f"config key '{key}': unknown level '{level}' for source '{source.name}'; "
                              f"known: {', '.join(sorted(source.levels))}")
    augmentation_warnings(dp, source)  # the runner logs the warnings; a drop of every channel fails here
    if dp["normalization"] not in modes(source):
        raise ConfigError(f"config key 'data_params/normalization': unknown mode '{dp['normalization']}' for "
                          f"source '{source.name}'; known: {', '.join(modes(source))}")
    return source
