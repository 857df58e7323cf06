"""Logits of a model over a dataset, and the per-sample / per-class validation tables of a run."""
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cellpipe.core import layout
from cellpipe.core.fsutil import write_csv
from cellpipe.models import call_model, flatten_sites

View = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def predict_logits(model, dataset, batch_size: int, num_workers: int = 0, device=None,
                   views: Optional[Sequence[View]] = None, reduce: str = "mean",
                   desc: Optional[str] = "predict", features: bool = False, per_site: bool = False) -> np.ndarray:
    """Logits for every row: each view (TTA) of each site, combined over views by ``reduce``
    (mean | max) and averaged over the sites; ``desc`` labels the progress bar (None: no bar).
    ``features``: the penultimate layer (the encoder's pooled features) instead of the logits;
    ``per_site``: rows x sites x outputs, the sites not averaged."""
    device = device or next(model.parameters()).device
    width = model.encoder.num_features if features else model.num_classes
    if len(dataset) == 0:
        return np.zeros((0, len(dataset.sites), width) if per_site else (0, width), np.float32)
    views = list(views or [lambda x: x])
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    use_amp = device.type == "cuda"
    out = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=desc is None):
        x = batch["features"].to(device, non_blocking=True)
        if x.ndim == 4:  # a train-mode dataset: one site
            x = x[:, None]
        b, s = x.shape[:2]
        context = batch.get("context")
        flat, context = flatten_sites(x, None if context is None else context.to(device))
        per_view = []
        for view in views:
            with torch.autocast(device.type, enabled=use_amp):
                y = model.features(view(flat), context) if features else call_model(model, view(flat), context)
                per_view.append(y.float())
        stacked = torch.stack(per_view)
        combined = stacked.max(dim=0).values if reduce == "max" else stacked.mean(dim=0)
        combined = combined.view(b, s, -1)
        out.append((combined if per_site else combined.mean(dim=1)).cpu())
    return torch.cat(out).numpy().astype(np.float32)


def prediction_table(logits: np.ndarray, table: pd.DataFrame, labels, targets=None,
                     thresholds=None) -> pd.DataFrame:
    """One row per sample: id, the task's decoded prediction (class names and probabilities;
    for a hierarchy every level), truth and loss when labelled, then one probability column per output."""
    probs = labels.probabilities(logits)
    out = pd.concat([pd.DataFrame({"id": table["id"].to_numpy()}), labels.decode(probs, thresholds)], axis=1)
    if "label" in table.columns:
        out["truth"] = labels.canonical(table["label"]).to_numpy()
        out = pd.concat([out, labels.truth_columns(table)], axis=1)
    if targets is None and "target" in table.columns:
        targets = table["target"].to_numpy()
    if targets is not None:
        out["loss"] = labels.sample_loss(probs, np.asarray(targets))
    return pd.concat([out, pd.DataFrame(probs, columns=labels.prob_columns())], axis=1)


def write_validation_report(logits: np.ndarray, table: pd.DataFrame, labels, logdir: Path, targets=None,
                            threshold_grid=None) -> dict:
    """valid_predictions.csv (per sample) and the task's per-class tables in the run folder; returns
    the task's final scores and the trivial baselines on the same targets."""
    logdir = Path(logdir)
    targets = np.asarray(table["target"] if targets is None else targets)
    write_csv(prediction_table(logits, table, labels, targets), logdir / layout.VALID_PREDICTIONS)
    return {**labels.report(logits, targets, logdir, threshold_grid), **labels.baselines(targets)}
