"""Start-up checks of every name a config resolves through a registry, before any data is read.

An unknown model, source, criterion, optimizer, scheduler, metric, table kind or
normalisation mode fails here with the config key and the known names, instead of
after an epoch of training.
"""
from cellpipe.core import config as cfglib
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.images import check_rescale
from cellpipe.data.build import resolve
from cellpipe.data.labels import KINDS
from cellpipe.data.normalize import modes
from cellpipe.models import MODELS
from cellpipe.sources import make_source
from cellpipe.training.losses import check_criterion
from cellpipe.training.metrics import KIND_METRICS, metric_known
from cellpipe.training.mixing import check_mix
from cellpipe.training.optim import OPTIMIZERS, SCHEDULERS


def check_names(cfg: dict):
    """Raise UnknownName / ConfigError naming the key; returns the (unread) source."""
    MODELS.check(cfg["model_params"]["model"], "model_params/model")
    dp = cfg["data_params"]
    kind = dp.get("target") or "single"
    if kind not in KINDS:
        raise ConfigError(f"config key 'data_params/target': unknown kind '{kind}'; known: {', '.join(KINDS)}")
    check_criterion(cfg["criterion_params"], kind, "criterion_params")
    check_mix(cfg.get("mix_params"))
    arc_loss = cfg["criterion_params"]["criterion"] == "ArcFaceCombined"
    if arc_loss != bool(cfg["model_params"].get("arcface")):
        raise ConfigError("criterion_params/criterion=ArcFaceCombined and model_params/arcface=true go together "
                          "(the loss needs the model's class centres, the centres need the loss)")
    check_criterion(cfg["valid_criterion_params"], kind, "valid_criterion_params")
    if kind != "single" and dp.get("balance") not in (None, "none"):
        raise ConfigError(f"config key 'data_params/balance'={dp['balance']} balances single labels; "
                          f"with data_params/target={kind} use a loss for imbalance (e.g. FocalLoss)")
    if kind == "hierarchy" and not (dp.get("hierarchy") or {}).get("file"):
        raise ConfigError("config key 'data_params/hierarchy/file' is required with data_params/target=hierarchy")
    for name in cfg["stages"]:
        st = cfglib.stage_settings(cfg, name)
        OPTIMIZERS.check(st["optimizer_params"]["optimizer"], f"stages/{name}/optimizer_params/optimizer")
        if st.get("scheduler_params"):
            SCHEDULERS.check(st["scheduler_params"].get("scheduler"), f"stages/{name}/scheduler_params/scheduler")
    metric = cfg["state_params"]["main_metric"]
    if not metric_known(kind, metric):
        extra = ", accuracy_<level>" if kind == "hierarchy" else ""
        raise ConfigError(f"config key 'state_params/main_metric': unknown metric '{metric}' for "
                          f"data_params/target={kind}; known: {', '.join(KIND_METRICS[kind])}{extra}")
    try:
        check_rescale(dp.get("rescale"))
    except DataError as e:
        raise ConfigError(str(e)) from None
    source = make_source(dp)  # checks data_params/source, source_params and (rxrx1) dataset
    resolve(cfg, source)  # channels and sites against the source's own
    for key, level in (("data_params/batch_by", dp.get("batch_by")),
                       ("predict_params/adabn", (cfg.get("predict_params") or {}).get("adabn"))):
        if level and level not in source.levels:
            raise ConfigError(f"config key '{key}': unknown level '{level}' for source '{source.name}'; "
                              f"known: {', '.join(sorted(source.levels))}")
    if dp["normalization"] not in modes(source):
        raise ConfigError(f"config key 'data_params/normalization': unknown mode '{dp['normalization']}' for "
                          f"source '{source.name}'; known: {', '.join(modes(source))}")
    return source
