"""Logits of a model over a dataset, and the per-sample / per-class validation tables of a run."""
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import precision_recall_fscore_support
from torch.utils.data import DataLoader
from tqdm import tqdm

from cellpipe.core import layout
from cellpipe.core.fsutil import write_csv

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
        flat = x.flatten(0, 1)
        per_view = []
        for view in views:
            with torch.autocast(device.type, enabled=use_amp):
                per_view.append(model(view(flat)).float())
        stacked = torch.stack(per_view)
        combined = stacked.max(dim=0).values if reduce == "max" else stacked.mean(dim=0)
        out.append(combined.view(b, s, -1).mean(dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def prediction_table(logits: np.ndarray, table: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """id, pred (class name), prob, truth (when labelled), then one probability column per class."""
    probs = softmax(logits)
    pred = probs.argmax(axis=1)
    out = pd.DataFrame({"id": table["id"].to_numpy(), "pred": np.asarray(classes, dtype=object)[pred],
                        "prob": probs[np.arange(len(pred)), pred]})
    if "label" in table.columns:
        out["truth"] = table["label"].to_numpy()
    if "target" in table.columns:
        target = table["target"].to_numpy()
        ok = target >= 0
        loss = np.full(len(target), np.nan)
        loss[ok] = -np.log(np.maximum(probs[np.flatnonzero(ok), target[ok]], 1e-12))
        out["loss"] = loss
    probs_df = pd.DataFrame(probs, columns=[f"prob_{c}" for c in classes])
    return pd.concat([out, probs_df], axis=1)


def per_class_table(truth: Sequence[int], pred: Sequence[int], classes: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (sklearn), plus macro and weighted means."""
    labels = list(range(len(classes)))
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"class": list(classes), "precision": p, "recall": r, "f1": f, "support": n})
    rows = []
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(truth, pred, labels=labels, average=avg, zero_division=0)
        rows.append({"class": f"{avg} avg", "precision": ap, "recall": ar, "f1": af, "support": int(np.sum(n))})
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


def write_validation_report(logits: np.ndarray, table: pd.DataFrame, labels, logdir: Path) -> dict:
    """valid_predictions.csv (per sample) and per_class.csv (per class) in the run folder."""
    logdir = Path(logdir)
    preds = prediction_table(logits, table, labels.classes)
    write_csv(preds, logdir / layout.VALID_PREDICTIONS)
    target = table["target"].to_numpy()
    ok = target >= 0
    pred_idx = logits.argmax(axis=1)
    write_csv(per_class_table(target[ok], pred_idx[ok], labels.classes), logdir / layout.PER_CLASS)
    return {"valid_top1_final": float((pred_idx[ok] == target[ok]).mean()) if ok.any() else None,
            "n_valid": int(ok.sum())}
