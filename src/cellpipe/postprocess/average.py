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
from typing import Dict, List

import numpy as np
import pandas as pd

from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_csv, write_npy, write_text
from cellpipe.core.tables import read_table
from cellpipe.data.labels import LabelMap, label_map_from_dict
from cellpipe.postprocess.blend import load_logits, run_weights
from cellpipe.postprocess.collect import Run, collect

log = logging.getLogger(__name__)
OOF_PREDICTIONS = "oof_predictions.csv"
OOF_SCORES = "oof_scores.json"
TEST_PROBS = layout.TEST_PROBS


def run_meta(run: Run) -> dict:
    path = run.dir / layout.PRED_META
    return json.loads(path.read_text()) if path.is_file() else {}


def _labels(runs: List[Run]) -> LabelMap:
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
    return label_map_from_dict(first)


def _weighted_mean(parts: List[np.ndarray], weights) -> np.ndarray:
    w = np.ones(len(parts)) if weights is None else np.asarray(weights, np.float64)
    return sum(wi * p for wi, p in zip(w, parts)) / w.sum()


def test_probabilities(runs: List[Run], labels: LabelMap, weights):
    ids = None
    parts = []
    for r in runs:
        run_ids = read_table(r.dir / layout.TEST_IDS, ["id"])["id"].astype(str).tolist()
        if ids is None:
            ids = run_ids
        elif run_ids != ids:
            raise DataError(f"{r.dir / layout.TEST_IDS} lists other test samples (or another order) than "
                            f"{runs[0].dir / layout.TEST_IDS}")
        parts.append(labels.probabilities(load_logits(r.test_path, len(ids))))
    return ids, _weighted_mean(parts, weights)


def oof_probabilities(runs: List[Run], labels: LabelMap, weights):
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


def score(labels: LabelMap, probs: np.ndarray, targets: np.ndarray, thresholds=None) -> Dict[str, float]:
    from cellpipe.training.metrics import hierarchy_metrics, multilabel_metrics

    logits = np.log(np.clip(probs, 1e-12, 1))  # a softmax of log-probabilities gives them back
    if labels.kind == "multilabel":
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        out = multilabel_metrics(labels, np.log(p / (1 - p)), targets)
        if thresholds is not None:
            from sklearn.metrics import f1_score

            ok = (targets >= 0).all(axis=1)
            hits = labels.predicted(probs[ok], thresholds)
            out["macro_f1_oof_thresholds"] = float(f1_score(targets[ok], hits, average="macro", zero_division=0))
        return out
    if labels.kind == "hierarchy":
        return hierarchy_metrics(labels, logits, targets)
    ok = targets >= 0
    return {"accuracy01": float((probs[ok].argmax(axis=1) == targets[ok]).mean())} if ok.any() else {}


def _table(ids, probs, labels: LabelMap, thresholds=None) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"id": ids}), labels.decode(probs, thresholds),
                      pd.DataFrame(probs, columns=labels.prob_columns())], axis=1)


def test_scores(truth_csv, ids, probs, labels: LabelMap, thresholds) -> dict:
    """Held-out scores against a truth file (id, label) that training never saw: for generated data
    and for reporting only; nothing is chosen on them."""
    truth = read_table(truth_csv, ["id", "label"])
    truth = truth.assign(id=truth["id"].astype(str)).set_index("id")
    missing = [i for i in ids if i not in truth.index]
    if missing:
        raise DataError(f"{truth_csv} lacks test id {missing[0]!r} ({len(missing)} missing)")
    table = truth.loc[list(ids)].reset_index()
    targets = labels.encode(table, str(truth_csv))
    return {f"test_{k}": v for k, v in score(labels, probs, targets, thresholds).items()}


def average(pred_dirs, out_dir, weights=None, model_names=None, channels=None, folds=None,
            threshold_grid=(0.02, 0.98, 0.01), truth=None) -> dict:
    """Average every run of ``pred_dirs`` (see the module doc); returns the OOF (and, with a
    ``truth`` file of id, label, the held-out test) scores."""
    from cellpipe.sources import source_class
    from cellpipe.training.evaluate import fit_thresholds, save_thresholds

    out_dir = Path(out_dir)
    runs = collect(pred_dirs, model_names, channels, folds)
    w = run_weights(runs, weights)
    labels = _labels(runs)
    ids, probs = test_probabilities(runs, labels, w)
    result = {"n_runs": len(runs), "n_test": len(ids), "target": labels.kind}
    oof_table, oof = oof_probabilities(runs, labels, w)
    thresholds = None
    if oof is not None:
        targets = labels.encode(oof_table, "out-of-fold labels (valid_ids.csv)")
        if labels.kind == "multilabel":
            ok = (targets >= 0).all(axis=1)
            thresholds = fit_thresholds(oof[ok], targets[ok], threshold_grid)
            save_thresholds(thresholds, labels.classes, out_dir / "thresholds.json", f"{int(ok.sum())} OOF samples")
        result.update({f"oof_{k}": v for k, v in score(labels, oof, targets, thresholds).items()},
                      n_oof=len(oof_table))
        oof_out = _table(oof_table["id"], oof, labels).assign(truth=labels.canonical(oof_table["label"]).to_numpy())
        write_csv(oof_out, out_dir / OOF_PREDICTIONS)
    else:
        log.warning("no run has validation predictions: no out-of-fold scores or thresholds")
    write_npy(probs.astype(np.float32), out_dir / TEST_PROBS)
    write_csv(_table(ids, probs, labels, thresholds), out_dir / layout.ENSEMBLE_PREDICTIONS)
    if labels.kind == "multilabel":
        source = source_class(run_meta(runs[0]).get("source", "manifest"))
        test = pd.DataFrame({"id": ids})
        write_csv(source.submission(test, labels.predicted(probs), labels), out_dir / layout.SUBMISSION)
        if thresholds is not None:
            write_csv(source.submission(test, labels.predicted(probs, thresholds), labels),
                      out_dir / layout.OPTIMAL_SUBMISSION)
    if truth is not None:
        result.update(test_scores(truth, ids, probs, labels, thresholds))
    write_text(json.dumps(result, indent=2) + "\n", out_dir / OOF_SCORES)
    log.info("ensemble of %d run(s): %s", len(runs), result)
    return result
