"""Logits of a model over a dataset, and the per-sample / per-class validation tables of a run."""
import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import precision_recall_fscore_support
from torch.utils.data import DataLoader
from tqdm import tqdm

from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_csv, write_text
from cellpipe.data.labels import LabelMap
from cellpipe.models import call_model, flatten_sites

View = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def predict_logits(model, dataset, batch_size: int, num_workers: int = 0, device=None,
                   views: Optional[Sequence[View]] = None, reduce: str = "mean", desc: str = "predict") -> np.ndarray:
    """Logits for every row: each view (TTA) of each site, combined over views by ``reduce``
    (mean | max) and averaged over the sites."""
    device = device or next(model.parameters()).device
    if len(dataset) == 0:
        return np.zeros((0, model.num_classes), np.float32)
    views = list(views or [lambda x: x])
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    use_amp = device.type == "cuda"
    out = []
    for batch in tqdm(loader, desc=desc, leave=False):
        x = batch["features"].to(device, non_blocking=True)
        if x.ndim == 4:  # a train-mode dataset: one site
            x = x[:, None]
        b, s = x.shape[:2]
        context = batch.get("context")
        flat, context = flatten_sites(x, None if context is None else context.to(device))
        per_view = []
        for view in views:
            with torch.autocast(device.type, enabled=use_amp):
                per_view.append(call_model(model, view(flat), context).float())
        stacked = torch.stack(per_view)
        combined = stacked.max(dim=0).values if reduce == "max" else stacked.mean(dim=0)
        out.append(combined.view(b, s, -1).mean(dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def prediction_table(logits: np.ndarray, table: pd.DataFrame, labels, targets=None,
                     thresholds=None) -> pd.DataFrame:
    """One row per sample: id, the label map's decoded prediction (class names and probabilities;
    for a hierarchy every level), truth and loss when labelled, then one probability column per output.
    ``labels`` is the run's label map (a plain class list means single label)."""
    if not hasattr(labels, "kind"):
        labels = LabelMap(list(labels))
    probs = labels.probabilities(logits)
    out = pd.concat([pd.DataFrame({"id": table["id"].to_numpy()}), labels.decode(probs, thresholds)], axis=1)
    if "label" in table.columns:
        out["truth"] = labels.canonical(table["label"]).to_numpy()
        if labels.kind == "hierarchy":
            out = pd.concat([out, labels.truth_columns(table)], axis=1)
    if targets is None and "target" in table.columns:
        targets = table["target"].to_numpy()
    if targets is not None:
        out["loss"] = labels.sample_loss(probs, np.asarray(targets))
    return pd.concat([out, pd.DataFrame(probs, columns=labels.prob_columns())], axis=1)


def per_class_table(truth: Sequence[int], pred: Sequence[int], classes: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (sklearn), plus macro and weighted means.
    Single label: index arrays; multi-label: 0/1 matrices (samples x classes)."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    labels = None if truth.ndim == 2 else list(range(len(classes)))
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"class": list(classes), "precision": p, "recall": r, "f1": f, "support": n})
    rows = []
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(truth, pred, labels=labels, average=avg, zero_division=0)
        rows.append({"class": f"{avg} avg", "precision": ap, "recall": ar, "f1": af, "support": int(np.sum(n))})
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def fit_thresholds(probs: np.ndarray, targets: np.ndarray, grid=(0.02, 0.98, 0.01)) -> np.ndarray:
    """Per class, the threshold of ``grid`` (start, stop, step) maximising that class's F1 on
    ``probs``; 0.5 for a class without positives (nothing to fit)."""
    lo, hi, step = (float(v) for v in grid)
    cand = np.round(np.arange(lo, hi + step / 2, step), 6)
    out = np.full(probs.shape[1], 0.5)
    for k in range(probs.shape[1]):
        y = targets[:, k] > 0
        if not y.any():
            continue
        hits = probs[:, k][None, :] >= cand[:, None]          # thresholds x samples
        tp = (hits & y).sum(axis=1)
        f1 = 2 * tp / np.maximum(hits.sum(axis=1) + y.sum(), 1)
        out[k] = cand[int(np.argmax(f1))]  # first best: the lowest threshold among ties
    return out


def save_thresholds(thresholds: np.ndarray, classes: Sequence[str], path: Path, fitted_on: str) -> None:
    write_text(json.dumps({"classes": list(classes), "thresholds": [round(float(t), 4) for t in thresholds],
                           "fitted_on": fitted_on}, indent=1) + "\n", path)


def load_thresholds(path: Path, classes: Sequence[str]) -> np.ndarray:
    d = json.loads(Path(path).read_text())
    if list(d.get("classes", [])) != list(classes):
        raise DataError(f"{path}: thresholds are for classes {d.get('classes')[:5]}..., not the model's")
    return np.asarray(d["thresholds"], np.float64)


def baselines(labels, targets: np.ndarray) -> dict:
    """Scores of trivial predictors on the same validation targets (what a run must clearly beat):
    the most frequent class (per level), or for multi-label every class / no class (macro F1)."""
    if labels.kind == "multilabel":
        y = targets[(targets >= 0).all(axis=1)].astype(int)
        if not len(y):
            return {}
        every = precision_recall_fscore_support(y, np.ones_like(y), average="macro", zero_division=0)[2]
        return {"baseline_macro_f1_all_positive": float(every), "baseline_macro_f1_all_negative": 0.0}
    cols = targets[:, None] if targets.ndim == 1 else targets
    cols = cols[(cols >= 0).all(axis=1)]
    if not len(cols):
        return {}
    names = ["top1"] if labels.kind == "single" else [f"accuracy_{lvl}" for lvl in labels.levels]
    return {f"baseline_{n}_majority": float(np.bincount(cols[:, k]).max() / len(cols)) for k, n in enumerate(names)}


def write_validation_report(logits: np.ndarray, table: pd.DataFrame, labels, logdir: Path, targets=None,
                            threshold_grid=(0.02, 0.98, 0.01)) -> dict:
    """valid_predictions.csv (per sample) and per_class.csv (per class) in the run folder; a
    hierarchy adds per_class_<level>.csv per coarser level, a multi-label run fits per-class
    thresholds on these predictions (checkpoints/thresholds.json, scored here in-sample)."""
    logdir = Path(logdir)
    targets = np.asarray(table["target"] if targets is None else targets)
    write_csv(prediction_table(logits, table, labels, targets), logdir / layout.VALID_PREDICTIONS)
    return {**_report(logits, table, labels, logdir, targets, threshold_grid), **baselines(labels, targets)}


def _report(logits, table, labels, logdir, targets, threshold_grid) -> dict:
    probs = labels.probabilities(logits)
    if labels.kind == "multilabel":
        ok = (targets >= 0).all(axis=1)
        th = fit_thresholds(probs[ok], targets[ok], threshold_grid)
        save_thresholds(th, labels.classes, logdir / layout.THRESHOLDS, f"{int(ok.sum())} validation samples")
        hits, fitted = labels.predicted(probs[ok]), labels.predicted(probs[ok], th)
        table_05 = per_class_table(targets[ok].astype(int), hits.astype(int), labels.classes)
        table_fit = per_class_table(targets[ok].astype(int), fitted.astype(int), labels.classes)
        write_csv(table_05.assign(threshold=list(th) + [np.nan, np.nan], f1_at_threshold=table_fit["f1"]),
                  logdir / layout.PER_CLASS)
        return {"valid_macro_f1_final": float(table_05["f1"].iloc[-2]),
                "valid_macro_f1_thresholds_in_sample": float(table_fit["f1"].iloc[-2]), "n_valid": int(ok.sum())}
    if labels.kind == "hierarchy":
        ok = (targets >= 0).all(axis=1)
        finest = labels.joint(probs[ok])
        out = {"n_valid": int(ok.sum())}
        for k, level in enumerate(labels.levels):
            pred = labels.ancestry[finest, k]
            name = layout.PER_CLASS if k == 0 else layout.PER_CLASS.replace(".csv", f"_{level}.csv")
            write_csv(per_class_table(targets[ok, k], pred, labels.level_classes[k]), logdir / name)
            out[f"valid_accuracy_{level}"] = float((pred == targets[ok, k]).mean()) if ok.any() else None
        out["valid_top1_final"] = out[f"valid_accuracy_{labels.levels[0]}"]
        out["valid_head_disagreement"] = float(1 - labels.decode(probs[ok])["consistent"].mean()) if ok.any() else None
        return out
    ok = targets >= 0
    pred_idx = logits.argmax(axis=1)
    write_csv(per_class_table(targets[ok], pred_idx[ok], labels.classes), logdir / layout.PER_CLASS)
    return {"valid_top1_final": float((pred_idx[ok] == targets[ok]).mean()) if ok.any() else None,
            "n_valid": int(ok.sum())}
