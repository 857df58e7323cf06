"""Ensemble of any source's prediction tree: average the runs' probabilities, score out-of-fold.

For every run folder {pred_dir}/{channels}/fold_{k}/{model}/ (predict-all's output) the
test logits become probabilities by the run's target kind (softmax, sigmoid, or a softmax
per hierarchy level) and are averaged (optionally weighted). The folds' validation
predictions, concatenated, are the out-of-fold (OOF) set: it is scored, and for multi-label
runs it is where the per-class thresholds are fitted (never on test labels). Writes
predictions.csv (per test sample: class names and probabilities), oof_predictions.csv,
oof_scores.json, and for multi-label submission.csv (0.5) and submission_optimal_threshold.csv
(OOF thresholds, thresholds.json) in the source's submission format.
"""
import json
import logging
from pathlib import Path
from typing import List

import numpy as np
import pandas as pd

from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_csv, write_npy, write_text
from cellpipe.core.tables import read_table
from cellpipe.postprocess.blend import load_logits, run_weights
from cellpipe.postprocess.collect import Run, collect
from cellpipe.tasks import from_dict as task_from_dict
from cellpipe.tasks.base import Task, labelled_rows

log = logging.getLogger(__name__)


def run_meta(run: Run) -> dict:
    path = run.dir / layout.PRED_META
    return json.loads(path.read_text()) if path.is_file() else {}


def _labels(runs: List[Run]) -> Task:
    maps = {}
    for r in runs:
        path = r.dir / layout.LABELS_FILE
        if not path.is_file():
            raise DataError(f"{r.dir} has no {layout.LABELS_FILE}; re-run predict-all")
        maps[r.dir] = json.loads(path.read_text())
    first = next(iter(maps.values()))
    for d, m in maps.items():
        if m != first:
            raise DataError(f"{d}/{layout.LABELS_FILE} differs from {runs[0].dir}: runs of one ensemble must share "
                            f"their classes")
    return task_from_dict(first)


def _weighted_mean(parts: List[np.ndarray], weights) -> np.ndarray:
    w = np.ones(len(parts)) if weights is None else np.asarray(weights, np.float64)
    return sum(wi * p for wi, p in zip(w, parts)) / w.sum()


def heldout_probabilities(runs: List[Run], labels: Task, weights):
    ids = None
    parts = []
    for r in runs:
        run_ids = read_table(r.dir / layout.TEST_IDS, ["id"])["id"].astype(str).tolist()
        if ids is None:
            ids = run_ids
        elif run_ids != ids:
            raise DataError(f"{r.dir / layout.TEST_IDS} lists other test samples (or another order) than "
                            f"{runs[0].dir / layout.TEST_IDS}")
        parts.append(labels.probabilities(load_logits(r.pred_test_path, len(ids))))
    return ids, _weighted_mean(parts, weights)


def oof_probabilities(runs: List[Run], labels: Task, weights):
    """(table of id, label; probabilities): samples validated by several runs are averaged."""
    tables, probs, ws = [], [], []
    w = [1.0] * len(runs) if weights is None else list(weights)
    for r, wi in zip(runs, w):
        if not r.has_valid:
            continue
        t = read_table(r.valid_ids_path, ["id"])
        if "label" not in t.columns:
            t["label"] = None
        p = labels.probabilities(load_logits(r.valid_path, len(t)))
        tables.append(t.assign(id=t["id"].astype(str)))
        probs.append(p * wi)
        ws.append(np.full(len(t), wi))
    if not tables:
        return None, None
    table = pd.concat(tables, ignore_index=True)
    stacked, weight = np.concatenate(probs), np.concatenate(ws)
    codes, uniques = pd.factorize(table["id"])
    summed = np.zeros((len(uniques), stacked.shape[1]))
    np.add.at(summed, codes, stacked)
    total = np.bincount(codes, weights=weight)
    first = table.groupby(codes).head(1).reset_index(drop=True)
    return first, summed / total[:, None]


def _table(ids, probs, labels: Task, thresholds=None) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"id": ids}), labels.decode(probs, thresholds),
                      pd.DataFrame(probs, columns=labels.prob_columns())], axis=1)


def heldout_scores(truth_csv, ids, probs, labels: Task, thresholds) -> dict:
    """Held-out scores against a truth file (id, label) that training never saw: for generated data
    and for reporting only; nothing is chosen on them."""
    truth = read_table(truth_csv, ["id", "label"])
    truth = truth.assign(id=truth["id"].astype(str)).set_index("id")
    missing = [i for i in ids if i not in truth.index]
    if missing:
        raise DataError(f"{truth_csv} lacks test id {missing[0]!r} ({len(missing)} missing)")
    table = truth.loc[list(ids)].reset_index()
    targets = labels.encode(table, str(truth_csv))
    return {f"test_{k}": v for k, v in labels.score(probs, targets, thresholds).items()}


def average(pred_dirs, out_dir, weights=None, model_names=None, channels=None, folds=None,
            threshold_grid=None, truth=None) -> dict:
    """Average every run of ``pred_dirs`` (see the module doc); returns the OOF (and, with a
    ``truth`` file of id, label, the held-out test) scores."""
    from cellpipe.sources import source_class

    out_dir = Path(out_dir)
    runs = collect(pred_dirs, model_names, channels, folds)
    w = run_weights(runs, weights)
    labels = _labels(runs)
    ids, probs = heldout_probabilities(runs, labels, w)
    result = {"n_runs": len(runs), "n_test": len(ids), "target": labels.kind}
    oof_table, oof = oof_probabilities(runs, labels, w)
    thresholds = None
    if oof is not None:
        targets = labels.encode(oof_table, "out-of-fold labels (valid_ids.csv)")
        thresholds = labels.fit_thresholds(oof, targets, threshold_grid)
        if thresholds is not None:
            labels.save_thresholds(thresholds, out_dir / layout.ENSEMBLE_THRESHOLDS,
                                   f"{int(labelled_rows(targets).sum())} OOF samples")
        result.update({f"oof_{k}": v for k, v in labels.score(oof, targets, thresholds).items()},
                      n_oof=len(oof_table))
        oof_out = _table(oof_table["id"], oof, labels).assign(truth=labels.canonical(oof_table["label"]).to_numpy())
        write_csv(oof_out, out_dir / layout.OOF_PREDICTIONS)
    else:
        log.warning("no run has validation predictions: no out-of-fold scores or thresholds")
    write_npy(probs.astype(np.float32), out_dir / layout.TEST_PROBS)
    write_csv(_table(ids, probs, labels, thresholds), out_dir / layout.ENSEMBLE_PREDICTIONS)
    source = source_class(run_meta(runs[0]).get("source", "manifest"))
    for name, sub in labels.submissions(source, pd.DataFrame({"id": ids}), probs, thresholds).items():
        write_csv(sub, out_dir / name)
    if truth is not None:
        result.update(heldout_scores(truth, ids, probs, labels, thresholds))
    write_text(json.dumps(result, indent=2) + "\n", out_dir / layout.OOF_SCORES)
    log.info("ensemble of %d run(s): %s", len(runs), result)
    return result
