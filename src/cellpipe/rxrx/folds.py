"""Fold CSVs grouped by experiment, and the held-out split of the control wells.

Validation must score unseen experiments (the test set is unseen experiments),
so a fold never splits an experiment; cell types are stratified so that each
fold validates on a mix of them. The control split (Part I) holds out whole
experiments per cell type for the same reason. The seed and the rule are
written to folds.json beside the CSVs, so the folds are reproducible data.
"""
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from cellpipe.core import fsutil, layout
from cellpipe.sources import rxrx1 as rxrx

log = logging.getLogger(__name__)

FOLD_RULE = ("StratifiedGroupKFold over train.csv wells: groups = experiment (every experiment in exactly "
             "one validation fold), stratified by cell type, shuffled with the seed")
CONTROL_RULE = ("control wells of train_controls.csv and test_controls.csv; per cell type, "
                "{per_type} whole experiment(s) drawn with the seed are validation, the rest training")
CONTROL_COLUMNS = ["id_code", "experiment", "plate", "well", "sirna", "well_type", "dataset", "cell_type"]


def with_cell_type(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["cell_type"] = out.experiment.map(rxrx.cell_type)
    return out


def make_folds(train_df: pd.DataFrame, n_folds: int, seed: int):
    """Split train wells into ``n_folds`` (train, valid) pairs grouped by experiment."""
    df = with_cell_type(train_df).reset_index(drop=True)
    n_exp = df.experiment.nunique()
    if n_folds < 2:
        raise rxrx.DataError(f"n_folds={n_folds} must be at least 2")
    if n_exp < n_folds:
        raise rxrx.DataError(f"train.csv has {n_exp} experiments, fewer than n_folds={n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for k, (tr, va) in enumerate(splitter.split(df, y=df.cell_type, groups=df.experiment)):
        if len(va) == 0:
            raise rxrx.DataError(f"fold {k} got no validation experiment ({n_exp} experiments, {n_folds} folds)")
        folds.append((df.iloc[tr].reset_index(drop=True), df.iloc[va].reset_index(drop=True)))
    return folds


def split_controls(controls_df: pd.DataFrame, per_type: int, seed: int):
    """Hold out ``per_type`` whole experiments per cell type -> (train_df, valid_df)."""
    if per_type < 0:
        raise rxrx.DataError(f"control_valid_per_type={per_type} must be 0 or more")
    df = with_cell_type(controls_df)
    rng = np.random.default_rng(seed)
    held = []
    for ct, exps in df.groupby("cell_type").experiment.unique().items():
        exps = sorted(exps)
        if per_type >= len(exps):
            raise rxrx.DataError(
                f"cell type {ct} has {len(exps)} control experiment(s); holding out "
                f"control_valid_per_type={per_type} leaves none to train on")
        held += sorted(rng.choice(exps, size=per_type, replace=False).tolist())
    is_valid = df.experiment.isin(held)
    return df[~is_valid].reset_index(drop=True), df[is_valid].reset_index(drop=True)


def load_controls(root: Path) -> pd.DataFrame:
    """Both control CSVs with the image folder each well lives in."""
    parts = []
    for dataset in rxrx.DATASETS:
        path = root / f"{dataset}_controls.csv"
        df = rxrx.read_csv(path, required=CONTROL_COLUMNS[:6])
        parts.append(df[CONTROL_COLUMNS[:6]].assign(dataset=dataset))
    return pd.concat(parts, ignore_index=True)


def write_rxrx1_folds(data_root, out_dir, n_folds: int, seed: int, control_valid_per_type: int):
    """train_{k}.csv / valid_{k}.csv, control_train.csv / control_valid.csv and folds.json."""
    root, out_dir = Path(data_root), Path(out_dir)
    train = rxrx.read_csv(root / "train.csv", required=("id_code",) + rxrx.WELL_COLUMNS + ("sirna",),
                          integers=("plate", "sirna"), unique=("id_code",))
    folds = make_folds(train, n_folds, seed)
    record = []
    for k, (tr, va) in enumerate(folds):
        fsutil.write_csv(tr, out_dir / layout.TRAIN_FOLD.format(k=k))
        fsutil.write_csv(va, out_dir / layout.VALID_FOLD.format(k=k))
        record.append({"fold": k, "valid_experiments": sorted(va.experiment.unique().tolist()),
                       "n_train": len(tr), "n_valid": len(va)})
        log.info("fold %d: %d train / %d valid wells, valid experiments %s",
                 k, len(tr), len(va), record[-1]["valid_experiments"])
    ctrl_train, ctrl_valid = split_controls(load_controls(root), control_valid_per_type, seed)
    fsutil.write_csv(ctrl_train[CONTROL_COLUMNS], out_dir / layout.CONTROL_TRAIN)
    fsutil.write_csv(ctrl_valid[CONTROL_COLUMNS], out_dir / layout.CONTROL_VALID)
    meta = {
        "n_folds": n_folds, "seed": seed, "rule": FOLD_RULE, "folds": record,
        "control_valid_per_type": control_valid_per_type,
        "control_rule": CONTROL_RULE.format(per_type=control_valid_per_type),
        "control_valid_experiments": sorted(ctrl_valid.experiment.unique().tolist()),
        "n_control_train": len(ctrl_train), "n_control_valid": len(ctrl_valid),
    }
    fsutil.write_text(json.dumps(meta, indent=2) + "\n", out_dir / layout.FOLDS_JSON)
    print(f"wrote {n_folds} folds and the control split ({len(ctrl_train)} train / "
          f"{len(ctrl_valid)} valid wells) to {out_dir}")

