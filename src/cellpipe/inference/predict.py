"""Predict with finished runs: test logits, out-of-fold validation logits, per-sample CSVs.

For a run folder ``{model_root}/{channels}/fold_{k}/{model_name}/`` it writes
``{out_dir}/{channels}/fold_{k}/{model_name}/``: pred_test.npy (float32 logits in the
test table's row order, averaged over sites and TTA views), test_ids.csv,
pred_test.csv (class names and probabilities per sample), pred_valid.npy and
valid_ids.csv (the fold's validation samples), labels.json and meta.json; a multi-label
run adds submission.csv (0.5) and submission_optimal_threshold.csv (the run's fitted
thresholds, thresholds.json) in its source's submission format. Files
appear atomically; finished outputs are skipped unless ``overwrite``.
"""
import json
import logging
import pickle
from pathlib import Path
from typing import List, Optional

import pandas as pd
import torch

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_csv, write_npy, write_text
from cellpipe.data.build import context_spec, make_eval_dataset, split_table
from cellpipe.data.normalize import make_normalizer
from cellpipe.data.tta import check_tta, tta_views
from cellpipe.inference.adabn import adabn_logits
from cellpipe.models import create_model, load_checkpoint
from cellpipe.sources import make_source
from cellpipe.tasks import from_dict as task_from_dict
from cellpipe.training.evaluate import predict_logits, prediction_table

log = logging.getLogger("inference")


def find_runs(model_root, model_name: str) -> List[Path]:
    """Finished runs (with DONE.json) under model_root/<channels>/fold_<k>/<model_name>."""
    runs = layout.finished_runs(model_root, model_name)
    if not runs:
        raise DataError(f"no finished runs under {model_root}/<channels>/fold_<k>/{model_name} "
                        f"(no {layout.DONE_FILE} found)")
    return runs


def checkpoint_path(run_dir: Path, epoch: Optional[int] = None) -> Path:
    """The run's final model, or the checkpoint of ``epoch`` of its last stage (keep_epoch_checkpoints)."""
    if epoch is None:
        return run_dir / layout.FINAL_CHECKPOINT
    done = json.loads((run_dir / layout.DONE_FILE).read_text())
    stage = run_dir / done.get("last_stage", "finetune")
    path = stage / layout.EPOCH_CHECKPOINT.format(epoch=int(epoch))
    if not path.is_file():
        kept = sorted(p.name for p in (stage / "checkpoints").glob("model.0*.pth"))
        raise DataError(f"no checkpoint of epoch {epoch} in {stage}/checkpoints (kept: {kept}; train with "
                        f"state_params/keep_epoch_checkpoints=true to keep every epoch)")
    return path


def load_run(run_dir: Path, device, epoch: Optional[int] = None, check_folder: bool = True):
    """Model, resolved config and label map of a run; the checkpoint must match its folder's channels."""
    final = run_dir / layout.FINAL_CHECKPOINT
    if not final.is_file():
        raise DataError(f"finished run without checkpoint: {final}")
    cfg = cfglib.read_run_config(run_dir / layout.CONFIG_FILE)
    try:
        payload = torch.load(final, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError) as e:
        raise DataError(f"cannot read checkpoint {final}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(payload, dict) or "model_state_dict" not in payload or "model_params" not in payload:
        raise DataError(f"{final} is not a finished run's checkpoint (no model_state_dict / model_params)")
    if check_folder:
        folder_channels = layout.parse_channels_tag(run_dir.parent.parent.name)
        if folder_channels is not None and list(payload.get("channels", [])) != folder_channels:
            raise DataError(f"checkpoint {final} was trained on channels {payload.get('channels')} "
                            f"but its folder says {folder_channels}")
    model = create_model(**dict(payload["model_params"], pretrained=None, weight=None))
    # the final checkpoint is already in memory; only another epoch needs a second read
    state = payload["model_state_dict"] if epoch is None else load_checkpoint(checkpoint_path(run_dir, epoch))
    model.load_state_dict(state)
    labels = task_from_dict(payload["labels"])
    return model.to(device).eval(), cfg, labels, payload


def _data_params(cfg, data_root, sites, image_size):
    dp = dict(cfg["data_params"])
    if data_root is not None:
        dp["root"] = str(data_root)
    if sites is not None:
        dp["valid_sites"] = [int(s) for s in sites]
    dp["augmentations"] = {"train": [], "valid": []}
    if image_size:
        dp["image_size"] = int(image_size)
    return dp


def resolve_device(device: str) -> torch.device:
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def tta_settings(cfg: dict, tta=None, reduce=None, crop=None, adabn=None) -> dict:
    """TTA and AdaBN of a prediction: the flags, else the run's predict_params, else none/mean/off."""
    pp = cfg.get("predict_params") or {}
    tta = tta or pp.get("tta") or "none"
    reduce = reduce or pp.get("reduce") or "mean"
    crop = crop if crop is not None else pp.get("crop")
    adabn = adabn if adabn is not None else pp.get("adabn")
    check_tta(tta, reduce, crop, "--tta/--reduce/--crop or predict_params")
    return {"tta": tta, "reduce": reduce, "crop": float(crop) if "crop" in tta and crop is not None else None,
            "adabn": adabn or None}


def write_submissions(source, table: pd.DataFrame, probs, labels, run_dir: Path, dest: Path) -> None:
    """The task's submission files (multi-label: seed 004's pair at 0.5 and at the run's fitted
    thresholds, thresholds.json copied beside them)."""
    th_file = run_dir / layout.THRESHOLDS
    thresholds = labels.read_thresholds(th_file)
    if thresholds is not None:
        write_text(th_file.read_text(), dest / Path(layout.THRESHOLDS).name)
    for name, sub in labels.submissions(source, table, probs, thresholds).items():
        write_csv(sub, dest / name)


def predict_run(run_dir: Path, data_root, out_dir: Path, sites=None, tta=None, batch_size=32, num_workers=0,
                device="auto", overwrite=False, image_size=None, test_csv=None, reduce=None,
                epoch: Optional[int] = None, dest: Optional[Path] = None, crop=None, adabn=None) -> Path:
    """Write the prediction files of one run (see the module doc) into ``dest``
    (default: out_dir/{channels}/{fold}/{model_name}, the seed's tree)."""
    run_dir = Path(run_dir)
    config_file = run_dir / layout.CONFIG_FILE
    if not config_file.is_file():
        raise DataError(f"not a finished run folder (no {layout.CONFIG_FILE}): {run_dir}")
    cfg = cfglib.read_run_config(config_file)
    views = tta_settings(cfg, tta, reduce, crop, adabn)
    in_tree = dest is None
    if in_tree:
        dest = Path(out_dir) / run_dir.parent.parent.name / run_dir.parent.name / run_dir.name
    outputs = [dest / layout.PRED_TEST, dest / layout.PRED_VALID, dest / layout.VALID_IDS]
    settings = {"sites": None if sites is None else [int(s) for s in sites], **views, "epoch": epoch}
    if all(p.exists() for p in outputs) and not overwrite:
        meta_path = dest / layout.PRED_META
        made = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        defaults = {"reduce": "mean", "epoch": None, "crop": None, "adabn": None}
        made = {k: made.get(k, defaults.get(k)) for k in settings}
        if made != settings:
            raise DataError(f"{dest} holds predictions made with {made}, not {settings}; pass --overwrite to redo them")
        log.info("skip (exists): %s", dest)
        return dest
    device = resolve_device(device)
    model, cfg, labels, payload = load_run(run_dir, device, epoch, check_folder=in_tree)
    dp = _data_params(cfg, data_root, sites, image_size)
    source = make_source(dp)
    test = split_table(source, dp, "test", test_csv)
    valid = split_table(source, dp, "valid")
    normalizer = make_normalizer(dp, source, [test, valid], state=payload.get("normalization"))
    context = context_spec(payload["model_params"])
    test_ds = make_eval_dataset(dp, source, test, labels, normalizer, f"{source.describe()} test split", context)
    valid_ds = make_eval_dataset(dp, source, valid, labels, normalizer, f"{source.describe()} valid split", context)
    args = dict(batch_size=batch_size, num_workers=num_workers, device=device,
                views=tta_views(views["tta"], views["crop"]), reduce=views["reduce"])
    name = f"{run_dir.parent.parent.name}/{run_dir.parent.name}"
    if views["adabn"]:  # BatchNorm statistics of each plate (experiment, ...) before predicting it
        test_logits = adabn_logits(model, test_ds, views["adabn"], predict_logits, desc=f"{name} test", **args)
        valid_logits = adabn_logits(model, valid_ds, views["adabn"], predict_logits, desc=f"{name} valid", **args)
    else:
        test_logits = predict_logits(model, test_ds, desc=f"{name} test", **args)
        valid_logits = predict_logits(model, valid_ds, desc=f"{name} valid", **args)
    # the npy files last: their presence marks the folder finished
    labels.save(dest / layout.LABELS_FILE)
    write_csv(test_ds.table[["id"]], dest / layout.TEST_IDS)
    write_csv(prediction_table(test_logits, test_ds.table, labels, test_ds.targets), dest / layout.PRED_TEST_CSV)
    write_submissions(source, test_ds.table, labels.probabilities(test_logits), labels, run_dir, dest)
    # with the raw labels, so that an ensemble can score its out-of-fold predictions
    write_csv(valid_ds.table[["id", "label"]], dest / layout.VALID_IDS)
    meta = {"run": str(run_dir), **settings, "n_test": len(test_ds), "n_valid": len(valid_ds),
            "source": dp["source"], "target": labels.kind}
    write_text(json.dumps(meta, indent=2), dest / layout.PRED_META)
    write_npy(valid_logits, dest / layout.PRED_VALID)
    write_npy(test_logits, dest / layout.PRED_TEST)
    log.info("wrote %s (%d test, %d valid rows)", dest, len(test_ds), len(valid_ds))
    return dest


def predict_all(data_root, model_root, model_name, out_dir, sites=None, tta: Optional[str] = None,
                batch_size: int = 32, num_workers: int = 0, device: str = "auto",
                overwrite: bool = False, image_size: Optional[int] = None, test_csv: Optional[str] = None,
                reduce: Optional[str] = None, crop: Optional[float] = None, adabn: Optional[str] = None):
    """Predict with every finished run under model_root (see src/inference.py for the arguments)."""
    sites = None if sites is None else [int(s) for s in ([sites] if isinstance(sites, int) else sites)]
    runs = find_runs(model_root, model_name)
    log.info("%d finished runs under %s", len(runs), model_root)
    return [str(predict_run(r, data_root, Path(out_dir), sites, tta, batch_size, num_workers, device,
                            overwrite, image_size, test_csv, reduce, crop=crop, adabn=adabn)) for r in runs]
