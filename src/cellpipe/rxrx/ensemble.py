"""The RxRx1 ensemble: average the prediction tree, match plates to siRNA groups, assign, score OOF.

Reads ``{pred_dir}/{channels_tag}/fold_{k}/{model_name}/pred_test.npy`` (raw logits in
test.csv row order) for every run, takes the (weighted) mean of the logits over channel
combinations, folds and models, applies a softmax with a temperature, finds which siRNA
group each test plate holds and assigns every siRNA at most one well per plate (see
plates.py). The same is done on the out-of-fold ``pred_valid.npy`` logits to report
accuracy before and after assignment per experiment.
"""
import logging
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pandas as pd
from tqdm import tqdm

from cellpipe.core import fsutil, layout
from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table
from cellpipe.postprocess.blend import average_logits, load_logits, run_weights
from cellpipe.postprocess.collect import VALID_FILE, VALID_IDS_FILE, collect
from cellpipe.postprocess.submission import validate_submission
from cellpipe.rxrx import plates
from cellpipe.tasks.base import softmax

log = logging.getLogger(__name__)


def plate_labels(probs: np.ndarray, df: pd.DataFrame, groups: np.ndarray, assignment: bool = True):
    """(labels, well_groups): per-plate assignment, or argmax when ``assignment`` is off."""
    keys = plates.plate_keys(df)
    well_groups = plates.match_plate_groups(probs, keys, groups)
    if not assignment:
        return probs.argmax(axis=1), well_groups
    return plates.assign(probs, keys, well_groups, groups), well_groups


def _mean_test_logits(runs, weights, n_rows) -> np.ndarray:
    arrays = (load_logits(r.pred_test_path, n_rows) for r in tqdm(runs, desc="test logits", unit="run"))
    return average_logits(arrays, weights)


def _fold_valid(fold_runs, fold_weights, fold):
    """(id_codes, mean pred_valid logits) of one fold, rows aligned on the first run's ids."""
    run_ids = []
    for r in fold_runs:
        ids = pd.Index(read_table(r.valid_ids_path, ["id"])["id"].astype(str))
        if ids.has_duplicates:
            raise DataError(f"{r.valid_ids_path} lists id_code {ids[ids.duplicated()][0]} twice")
        if run_ids and (len(ids) != len(run_ids[0]) or (ids.get_indexer(run_ids[0]) < 0).any()):
            raise DataError(f"{r.valid_ids_path} lists other wells than {fold_runs[0].valid_ids_path} (fold {fold})")
        run_ids.append(ids)
    arrays = (
        load_logits(r.valid_path, len(ids))[ids.get_indexer(run_ids[0])]
        for r, ids in tqdm(list(zip(fold_runs, run_ids)), desc=f"fold {fold} valid logits", unit="run")
    )
    return run_ids[0], average_logits(arrays, fold_weights)


def oof_accuracy(runs, weights, train_df, groups, temperature, keep: Optional[int] = None) -> Optional[pd.DataFrame]:
    """Per-experiment accuracy (argmax vs assigned) of the out-of-fold ensemble."""
    weights = weights if weights is not None else [1.0] * len(runs)
    with_valid = [(r, w) for r, w in zip(runs, weights) if r.has_valid]
    skipped = [r for r in runs if not r.has_valid]
    if skipped:
        log.warning("%d run(s) have no %s + %s, left out of the OOF score, e.g. %s",
                    len(skipped), VALID_FILE, VALID_IDS_FILE, skipped[0].dir)
    if not with_valid:
        return None
    id_parts, logit_parts = [], []
    for fold in sorted({r.fold for r, _ in with_valid}):
        fold_runs = [(r, w) for r, w in with_valid if r.fold == fold]
        ids, mean = _fold_valid([r for r, _ in fold_runs], [w for _, w in fold_runs], fold)
        id_parts.append(ids)
        logit_parts.append(mean)
    ids = id_parts[0].append(id_parts[1:]) if len(id_parts) > 1 else id_parts[0]
    if ids.has_duplicates:
        raise DataError(f"id_code {ids[ids.duplicated()][0]} is in the validation set of two folds")
    train = train_df.assign(id_code=train_df["id_code"].astype(str)).set_index("id_code")
    if train.index.has_duplicates:
        raise DataError(f"train.csv lists id_code {train.index[train.index.duplicated()][0]} more than once")
    absent = ids.difference(train.index)
    if len(absent):
        raise DataError(f"validation id_code(s) not in train.csv, e.g. {list(absent[:5])}")
    wells = train.loc[ids].reset_index()
    probs = softmax(np.concatenate(logit_parts)[:, :keep], temperature)
    labels, _ = plate_labels(probs, wells, groups)
    return accuracy_table(wells["experiment"], wells["sirna"], probs.argmax(axis=1), labels)


def accuracy_table(experiments, truth, argmax, assigned) -> pd.DataFrame:
    """Per-experiment n_wells, acc_argmax and acc_assigned, plus an ``ALL`` row."""
    truth = np.asarray(truth)
    hits = pd.DataFrame({
        "experiment": np.asarray(experiments).astype(str),
        "argmax": np.asarray(argmax) == truth,
        "assigned": np.asarray(assigned) == truth,
    })
    table = hits.groupby("experiment").agg(
        n_wells=("argmax", "size"), acc_argmax=("argmax", "mean"), acc_assigned=("assigned", "mean")
    ).reset_index()
    overall = pd.DataFrame([{"experiment": "ALL", "n_wells": len(hits),
                             "acc_argmax": hits["argmax"].mean(), "acc_assigned": hits["assigned"].mean()}])
    return pd.concat([table, overall], ignore_index=True)


def main(
    data_root,
    pred_dirs,
    out_dir,
    temperature: float = 1.0,
    weights=None,
    model_names=None,
    channels=None,
    folds=None,
    assignment: bool = True,
    n_groups: int = plates.N_GROUPS,
    treatment_classes: Optional[int] = None,
) -> Dict[str, float]:
    """Write submission.csv, test_assigned.csv, test_probs.npy and oof_accuracy.csv.

    Args:
        data_root: folder with train.csv (groups, OOF labels) and test.csv (row order).
        pred_dirs: prediction tree(s) {channels}/fold_{k}/{model}/pred_test.npy; a list or "a,b".
        out_dir: output folder; every file is written atomically.
        temperature: softmax temperature applied to the mean logits (default 1.0 = none).
        weights: None (equal), {model_name: weight}, or one weight per run in collect() order.
        model_names: only these model folder names (a name or list; default all).
        channels: only these channel combinations, e.g. '[1,2,3,4,5]' or a list (default all).
        folds: only these folds (an int or list; default all).
        assignment: per-plate siRNA assignment (default True); False submits the argmax.
        n_groups: siRNA plate groups expected in train.csv (default 4, as in RxRx1).
        treatment_classes: logit columns that are treatment siRNAs (default: the highest siRNA
            id of train.csv + 1); further columns (controls trained as extra classes) are dropped.
    """
    data_root, out_dir = Path(data_root), Path(out_dir)
    test_csv, train_csv = data_root / "test.csv", data_root / "train.csv"
    test_df = read_table(test_csv, ["id_code", "experiment", "plate", "well"])
    train_df = read_table(train_csv, ["id_code", "experiment", "plate", "well", "sirna"])
    dup = test_df["id_code"][test_df["id_code"].duplicated()]
    if len(dup):
        raise DataError(f"{test_csv} lists id_code {dup.iloc[0]} more than once")
    runs = collect(pred_dirs, model_names, channels, folds)
    w = run_weights(runs, weights)
    log.info("ensembling %d run(s): %d channel combination(s), folds %s, models %s",
             len(runs), len({r.channels for r in runs}), sorted({r.fold for r in runs}),
             sorted({r.model for r in runs}))

    widths = {}
    for r in runs:  # headers only: a width mismatch fails before loading gigabytes
        try:
            widths[r.pred_test_path] = np.load(r.pred_test_path, mmap_mode="r").shape[-1]
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read logits {r.pred_test_path}: {e}") from None
    n_classes = widths[runs[0].pred_test_path]
    for path, width in widths.items():
        if width != n_classes:
            raise DataError(f"{path} has {width} classes but {runs[0].pred_test_path} has {n_classes}")
    n_treat = int(treatment_classes) if treatment_classes else int(train_df["sirna"].max()) + 1
    if n_classes > n_treat:  # controls trained as extra classes: test wells are treatments
        log.info("dropping %d logit columns beyond the %d treatment classes", n_classes - n_treat, n_treat)
        n_classes = n_treat
    try:
        groups = plates.plate_groups(train_df, n_groups=n_groups, n_classes=n_classes)
    except DataError as e:
        raise DataError(f"{train_csv}: {e}") from None

    probs = softmax(_mean_test_logits(runs, w, len(test_df))[:, :n_classes], temperature)
    labels, well_groups = plate_labels(probs, test_df, groups, assignment)
    sub = pd.DataFrame({"id_code": test_df["id_code"].astype(str), "sirna": labels.astype(np.int64)})
    validate_submission(sub, test_df, n_classes)
    assigned = test_df[["id_code", "experiment", "plate", "well"]].assign(
        sirna=labels,
        sirna_argmax=probs.argmax(axis=1),
        prob=probs[np.arange(len(labels)), labels],
        group=well_groups,
    )
    fsutil.write_npy(probs, out_dir / layout.TEST_PROBS)
    fsutil.write_csv(assigned, out_dir / layout.TEST_ASSIGNED)
    fsutil.write_csv(sub, out_dir / layout.SUBMISSION)
    changed = float((labels != assigned["sirna_argmax"].to_numpy()).mean())
    log.info("wrote %s (%d wells, %d classes); assignment changed %.1f%% of argmax labels",
             out_dir / layout.SUBMISSION, len(sub), n_classes, 100 * changed)
    result = {"n_runs": len(runs), "n_test": len(sub), "n_classes": n_classes, "changed_by_assignment": changed}

    table = oof_accuracy(runs, w, train_df, groups, temperature, keep=n_classes)
    if table is None:
        log.warning("no run has out-of-fold predictions; oof_accuracy.csv not written")
        return result
    fsutil.write_csv(table, out_dir / layout.OOF_ACCURACY)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    overall = table.iloc[-1]
    log.info("OOF accuracy over %d wells: argmax %.4f, assigned %.4f",
             overall["n_wells"], overall["acc_argmax"], overall["acc_assigned"])
    result.update(oof_wells=int(overall["n_wells"]), oof_acc_argmax=float(overall["acc_argmax"]),
                  oof_acc_assigned=float(overall["acc_assigned"]))
    return result

