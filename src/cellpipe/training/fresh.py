"""A finished run whose model is freshly initialised, in train.py's exact format (config.yml,
checkpoints/best.pth, labels.json, valid_predictions.csv, per_class.csv, DONE.json): for what consumes
runs and measures machinery, not accuracy (tests of prediction, ensembles, reports; the service's
load benchmark). Takes about a second."""
import time
from pathlib import Path

import torch

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.data.build import prepare_training
from cellpipe.models import create_model
from cellpipe.training.checks import check_names
from cellpipe.training.evaluate import predict_logits
from cellpipe.training.runner import finish_run


def fresh_run(cfg: dict, logdir, seed: int = 0) -> Path:
    """Write the run of resolved config ``cfg`` with initial weights drawn from ``seed`` into ``logdir``."""
    check_names(cfg)
    prepared = prepare_training(cfg, workers=0)
    torch.manual_seed(seed)
    model = create_model(**cfg["model_params"]).eval()
    logdir = Path(logdir)
    (logdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (logdir / layout.CONFIG_FILE).write_text(cfglib.dump(cfg))
    logits = predict_logits(model, prepared.valid, cfg["data_params"]["batch_size"])
    valid = prepared.labels.epoch_metrics(logits, prepared.valid.targets)  # the untrained model's real scores
    finish_run(cfg, logdir, model, prepared, {"best_epoch": 0, "valid": valid}, "finetune", time.time())
    return logdir
