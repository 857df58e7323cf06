"""Predict with finished runs: test logits and out-of-fold validation logits.

    python src/inference.py predict-all --data_root=/data/ --model_root=/logs/pseudo/ \
        --model_name=se_resnext50_32x4d --out_dir=/predictions/pseudo/

For every finished run ``{model_root}/{channels}/fold_{k}/{model_name}/`` it writes
``{out_dir}/{channels}/fold_{k}/{model_name}/pred_test.npy`` (float32 logits in
test.csv row order, averaged over sites and TTA views), ``pred_valid.npy`` and
``valid_ids.csv`` (the fold's validation wells). Files appear atomically;
finished outputs are skipped unless ``overwrite=True``.
"""
import compat  # noqa: F401  (must precede torchvision users)

import json
import logging
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

import cli
import layout
import rxrx
from dataset import load_normalizer, make_dataset
from fsutil import write_csv, write_npy, write_text
from models import create_model, load_checkpoint
from rxrx import DataError

log = logging.getLogger("inference")
TTA_VIEWS = {
    "none": [lambda x: x],
    "flip": [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2)],
    "d4": [lambda x, k=k, t=t: torch.rot90(x.transpose(-1, -2) if t else x, k, dims=(-2, -1))
           for t in (False, True) for k in range(4)],
}


def check_tta(tta: str) -> None:
    if tta not in TTA_VIEWS:
        raise DataError(f"unknown tta '{tta}'; known: {sorted(TTA_VIEWS)}")


def find_runs(model_root, model_name: str) -> List[Path]:
    """Finished runs (with DONE.json) under model_root/<channels>/fold_<k>/<model_name>."""
    runs = layout.finished_runs(model_root, model_name)
    if not runs:
        raise DataError(f"no finished runs under {model_root}/<channels>/fold_<k>/{model_name} "
                        f"(no {layout.DONE_FILE} found)")
    return runs


def load_run(run_dir: Path, device):
    """Model and resolved config of a run; the checkpoint must match its folder's channels."""
    ckpt_path = run_dir / layout.FINAL_CHECKPOINT
    if not ckpt_path.is_file():
        raise DataError(f"finished run without checkpoint: {ckpt_path}")
    cfg = yaml.safe_load((run_dir / layout.CONFIG_FILE).read_text())
    payload = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    folder_channels = rxrx.parse_channels_tag(run_dir.parent.parent.name)
    if list(payload.get("channels", [])) != folder_channels:
        raise DataError(
            f"checkpoint {ckpt_path} was trained on channels {payload.get('channels')} "
            f"but its folder says {folder_channels}"
        )
    params = dict(payload["model_params"], pretrained=None, weight=None)
    model = create_model(**params)
    model.load_state_dict(load_checkpoint(ckpt_path))
    return model.to(device).eval(), cfg


@torch.inference_mode()
def predict(model, dataset, batch_size: int, num_workers: int, device, tta: str = "none",
            desc: str = "predict") -> np.ndarray:
    """Logits for every row, averaged over the dataset's sites and the TTA views."""
    check_tta(tta)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    use_amp = device.type == "cuda"
    out = []
    for batch in tqdm(loader, desc=desc, leave=False):
        x = batch["features"].to(device, non_blocking=True)  # (B, sites, C, H, W)
        b, s = x.shape[:2]
        flat = x.flatten(0, 1)
        total = 0
        for view in TTA_VIEWS[tta]:
            with torch.autocast(device.type, enabled=use_amp):
                total = total + model(view(flat)).float()
        out.append((total / len(TTA_VIEWS[tta])).view(b, s, -1).mean(dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def _data_params(cfg, data_root, sites, image_size):
    dp = dict(cfg["data_params"])
    dp["root"] = str(data_root)
    dp["valid_sites"] = list(sites)
    dp["augmentations"] = {"train": [], "valid": []}
    if image_size:
        dp["image_size"] = int(image_size)
    return dp


def predict_run(run_dir: Path, data_root, out_dir: Path, sites=(1, 2), tta="none", batch_size=32,
                num_workers=0, device="auto", overwrite=False, image_size=None, test_csv=None) -> Path:
    """Write pred_test.npy, pred_valid.npy and valid_ids.csv for one run."""
    channels_tag, fold, model_name = run_dir.parent.parent.name, run_dir.parent.name, run_dir.name
    check_tta(tta)
    dest = out_dir / channels_tag / fold / model_name
    outputs = [dest / layout.PRED_TEST, dest / layout.PRED_VALID, dest / layout.VALID_IDS]
    settings = {"sites": list(sites), "tta": tta}
    if all(p.exists() for p in outputs) and not overwrite:
        meta_path = dest / layout.PRED_META
        made = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        made = {k: made.get(k) for k in settings}
        if made != settings:
            raise DataError(f"{dest} holds predictions made with {made}, not {settings}; pass --overwrite to redo them")
        log.info("skip (exists): %s", dest)
        return dest
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model, cfg = load_run(run_dir, device)
    dp = _data_params(cfg, data_root, sites, image_size)
    normalizer = load_normalizer(dp)
    test_csv = test_csv or Path(data_root) / "test.csv"
    test_ds = make_dataset(dp, "valid", normalizer=normalizer, csv=test_csv, kind="test")
    valid_ds = make_dataset(dp, "valid", normalizer=normalizer)
    args = dict(batch_size=batch_size, num_workers=num_workers, device=device, tta=tta)
    test_logits = predict(model, test_ds, desc=f"{channels_tag}/{fold} test", **args)
    valid_logits = predict(model, valid_ds, desc=f"{channels_tag}/{fold} valid", **args)
    write_npy(test_logits, dest / layout.PRED_TEST)
    write_npy(valid_logits, dest / layout.PRED_VALID)
    write_csv(valid_ds.table[["id_code"]], dest / layout.VALID_IDS)
    meta = {"run": str(run_dir), **settings, "n_test": len(test_ds), "n_valid": len(valid_ds)}
    write_text(json.dumps(meta, indent=2), dest / layout.PRED_META)
    log.info("wrote %s (%d test, %d valid rows)", dest, len(test_ds), len(valid_ds))
    return dest


def predict_all(data_root, model_root, model_name, out_dir, sites=(1, 2), tta: str = "none",
                batch_size: int = 32, num_workers: int = 0, device: str = "auto",
                overwrite: bool = False, image_size: Optional[int] = None, test_csv: Optional[str] = None):
    """Predict with every finished run under model_root.

    Args:
        data_root: Kaggle data folder (test.csv, test/, train/, pixel_stats.csv).
        model_root: a part's log folder, e.g. /logs/non_pseudo or /logs/pseudo.
        model_name: backbone folder name, e.g. se_resnext50_32x4d.
        out_dir: where {channels}/fold_{k}/{model_name}/pred_test.npy go.
        sites: sites whose logits are averaged (default both: 1,2).
        tta: none | flip (identity + h/v flips) | d4 (8 dihedral views); logits averaged.
        batch_size: wells per batch (each well is len(sites) images per view).
        num_workers: DataLoader worker processes.
        device: auto (CUDA when present) | cpu | cuda | cuda:N.
        overwrite: recompute outputs that already exist.
        image_size: resize to this size instead of the run's training size.
        test_csv: rows to predict (default {data_root}/test.csv).
    """
    sites = [int(s) for s in ([sites] if isinstance(sites, int) else sites)]
    runs = find_runs(model_root, model_name)
    log.info("%d finished runs under %s", len(runs), model_root)
    return [str(predict_run(r, data_root, Path(out_dir), sites, tta, batch_size, num_workers, device,
                            overwrite, image_size, test_csv)) for r in runs]


if __name__ == "__main__":
    cli.run({"predict-all": predict_all, "predict_all": predict_all})
