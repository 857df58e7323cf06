"""Ensemble the prediction tree into a Kaggle submission, with per-plate siRNA assignment.

Reads ``{pred_dir}/{channels_tag}/fold_{k}/{model_name}/pred_test.npy`` (raw logits in
test.csv row order) for every run, takes the (weighted) mean of the logits over channel
combinations, folds and models, applies a softmax with a temperature, finds which siRNA
group each test plate holds and assigns every siRNA at most one well per plate (see
plates.py). The same is done on the out-of-fold ``pred_valid.npy`` logits to report
accuracy before and after assignment per experiment.

    python src/ensemble.py --data_root=data --pred_dirs=logs/non_pseudo,logs/pseudo --out_dir=sub
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

import cli
import fsutil
import layout
import plates
import rxrx
from rxrx import DataError

log = logging.getLogger(__name__)

TEST_FILE, VALID_FILE, VALID_IDS_FILE = layout.PRED_TEST, layout.PRED_VALID, layout.VALID_IDS


@dataclass(frozen=True)
class Run:
    """One trained model's prediction folder: pred_dir/channels/fold_k/model."""

    pred_dir: Path
    channels: str  # channels_tag, e.g. "[1,2,3,4,5]"
    fold: int
    model: str

    @property
    def dir(self) -> Path:
        return self.pred_dir / self.channels / layout.fold_dir(self.fold) / self.model

    @property
    def test_path(self) -> Path:
        return self.dir / TEST_FILE

    @property
    def valid_path(self) -> Path:
        return self.dir / VALID_FILE

    @property
    def valid_ids_path(self) -> Path:
        return self.dir / VALID_IDS_FILE

    @property
    def has_valid(self) -> bool:
        return self.valid_path.is_file() and self.valid_ids_path.is_file()


def _as_list(value) -> Optional[list]:
    if value is None:
        return None
    if isinstance(value, (str, int, Path)):
        return [value]
    return list(value)


def _channel_tags(channels) -> Optional[set]:
    """Accept "[1,2,3,4,5]", [1,2,3,4,5] (one combination) or a list of either."""
    if channels is None:
        return None
    if isinstance(channels, str):
        return {rxrx.channels_tag(rxrx.parse_channels_tag(channels))}
    channels = list(channels)
    if channels and all(isinstance(c, (int, np.integer)) for c in channels):
        return {rxrx.channels_tag(rxrx.check_channels(channels))}
    return {
        rxrx.channels_tag(rxrx.parse_channels_tag(c) if isinstance(c, str) else rxrx.check_channels(c))
        for c in channels
    }


def collect(pred_dirs, model_names=None, channels=None, folds=None) -> List[Run]:
    """Every run under ``pred_dirs`` (a folder, a list, or "a,b") with a pred_test.npy.

    ``model_names``: a name or list; ``channels``: a channels tag, a channel list, or a
    list of either; ``folds``: an int or list. Sorted by (channels, fold, model, dir).
    """
    if isinstance(pred_dirs, str):  # "a,b" from the command line = two folders
        pred_dirs = [d for d in pred_dirs.split(",") if d]
    dirs = list(dict.fromkeys(Path(d) for d in _as_list(pred_dirs) or []))  # a folder once
    if not dirs:
        raise DataError("no prediction directory given (pred_dirs is empty)")
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"prediction directory not found: {d}")
    names = set(_as_list(model_names)) if model_names is not None else None
    tags = _channel_tags(channels)
    fold_set = {int(f) for f in _as_list(folds)} if folds is not None else None
    runs = []
    for d in dirs:
        for path in layout.prediction_files(d, TEST_FILE):
            model_dir = path.parent
            fold = layout.parse_fold(model_dir.parent.name)
            tag_name = model_dir.parent.parent.name
            try:
                tag = rxrx.channels_tag(rxrx.parse_channels_tag(tag_name))
            except DataError:
                log.warning("skipping %s: '%s' is not a channels folder like [1,2,3,4,5]", path, tag_name)
                continue
            if fold is None:
                log.warning("skipping %s: '%s' is not a fold folder like fold_0", path, model_dir.parent.name)
                continue
            # the folder's own spelling is kept for paths; filters compare the canonical tag
            run = Run(d, tag_name, fold, model_dir.name)
            if names is not None and run.model not in names:
                continue
            if tags is not None and tag not in tags:
                continue
            if fold_set is not None and run.fold not in fold_set:
                continue
            runs.append(run)
    if not runs:
        raise DataError(
            f"no {TEST_FILE} found as {{channels}}/fold_{{k}}/{{model}}/{TEST_FILE} under "
            f"{[str(d) for d in dirs]} (filters: model_names={model_names}, channels={channels}, folds={folds})"
        )
    return sorted(runs, key=lambda r: (r.channels, r.fold, r.model, str(r.pred_dir)))


def run_weights(runs: Sequence[Run], weights=None) -> Optional[List[float]]:
    """Per-run weights from None, a {model_name: weight} dict, or one weight per run."""
    if weights is None:
        return None
    if isinstance(weights, dict):
        unknown = sorted({r.model for r in runs} - set(weights))
        if unknown:
            raise DataError(f"weights lack model(s) {unknown}; given for {sorted(weights)}")
        return [float(weights[r.model]) for r in runs]
    weights = list(weights)
    if len(weights) != len(runs):
        raise DataError(f"{len(weights)} weights given for {len(runs)} runs; pass one per run or a dict per model")
    return [float(w) for w in weights]


def load_logits(path: Path, n_rows: Optional[int] = None) -> np.ndarray:
    """A 2-D float logits array; the row count must be ``n_rows`` when given."""
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read logits {path}: {e}") from None
    if arr.ndim != 2:
        raise DataError(f"{path} has shape {arr.shape}, expected (n_wells, n_classes)")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise DataError(f"{path} has {arr.shape[0]} rows but the table has {n_rows} wells")
    if not np.isfinite(arr).all():
        raise DataError(f"{path} contains NaN or infinite logits")
    return arr.astype(np.float32, copy=False)


def average_logits(arrays: Iterable[np.ndarray], weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Weighted mean of logit arrays (weights normalised to sum 1; None = equal).

    ``arrays`` may be a generator: they are summed one at a time, so memory holds two.
    The sum is float32 and in place: float64 is 3-6x slower on full-size arrays and
    float32 rounding is far below any logit difference that matters.
    """
    total, weight_sum, n = None, 0.0, 0
    for i, arr in enumerate(arrays):
        w = 1.0 if weights is None else float(weights[i])
        if w < 0 or not np.isfinite(w):
            raise DataError(f"weight {i} is {w}; weights must be finite and >= 0")
        arr = np.asarray(arr)
        if w != 1.0:
            arr = arr * np.float32(w)
        if total is None:
            total = np.array(arr, dtype=np.float32)  # a copy: callers' arrays stay untouched
        elif arr.shape != total.shape:
            raise DataError(f"logit array {i} has shape {arr.shape}, the first has {total.shape}")
        else:
            np.add(total, arr, out=total, casting="unsafe")
        weight_sum += w
        n += 1
    if n == 0:
        raise DataError("no logit arrays to average")
    if weights is not None and len(weights) != n:
        raise DataError(f"{len(weights)} weights given for {n} logit arrays")
    if weight_sum <= 0:
        raise DataError("weights sum to 0")
    total /= np.float32(weight_sum)
    return total


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row softmax of logits / temperature (temperature > 1 flattens, < 1 sharpens)."""
    if not temperature > 0:
        raise DataError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def plate_labels(probs: np.ndarray, df: pd.DataFrame, groups: np.ndarray, assignment: bool = True):
    """(labels, well_groups): per-plate assignment, or argmax when ``assignment`` is off."""
    keys = plates.plate_keys(df)
    well_groups = plates.match_plate_groups(probs, keys, groups)
    if not assignment:
        return probs.argmax(axis=1), well_groups
    return plates.assign(probs, keys, well_groups, groups), well_groups


def validate_submission(sub: pd.DataFrame, test_df: pd.DataFrame, n_classes: int) -> None:
    """Raise DataError unless every test id_code appears once with an integer sirna in range."""
    if list(sub.columns) != ["id_code", "sirna"]:
        raise DataError(f"submission columns are {list(sub.columns)}, expected ['id_code', 'sirna']")
    dup = sub["id_code"][sub["id_code"].duplicated()].unique()
    if len(dup):
        raise DataError(f"submission has {len(dup)} duplicated id_code(s), e.g. {list(dup[:5])}")
    expected = pd.Index(test_df["id_code"])
    given = pd.Index(sub["id_code"])
    missing = expected.difference(given)
    if len(missing):
        raise DataError(f"submission lacks {len(missing)} test id_code(s), e.g. {list(missing[:5])}")
    extra = given.difference(expected)
    if len(extra):
        raise DataError(f"submission has {len(extra)} id_code(s) not in test.csv, e.g. {list(extra[:5])}")
    if not pd.api.types.is_integer_dtype(sub["sirna"]):
        raise DataError(f"submission sirna must be integers, got dtype {sub['sirna'].dtype}")
    bad = sub["id_code"][(sub["sirna"] < 0) | (sub["sirna"] >= n_classes)]
    if len(bad):
        raise DataError(f"submission sirna outside 0..{n_classes - 1} for {len(bad)} id_code(s), e.g. {list(bad[:5])}")


def _mean_test_logits(runs, weights, n_rows) -> np.ndarray:
    arrays = (load_logits(r.test_path, n_rows) for r in tqdm(runs, desc="test logits", unit="run"))
    return average_logits(arrays, weights)


def _fold_valid(fold_runs, fold_weights, fold):
    """(id_codes, mean pred_valid logits) of one fold, rows aligned on the first run's ids."""
    run_ids = []
    for r in fold_runs:
        ids = pd.Index(rxrx.read_csv(r.valid_ids_path, ["id_code"])["id_code"].astype(str))
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


def oof_accuracy(runs, weights, train_df, groups, temperature) -> Optional[pd.DataFrame]:
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
    probs = softmax(np.concatenate(logit_parts), temperature)
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
    """
    data_root, out_dir = Path(data_root), Path(out_dir)
    test_csv, train_csv = data_root / "test.csv", data_root / "train.csv"
    test_df = rxrx.read_csv(test_csv, ["id_code", "experiment", "plate", "well"])
    train_df = rxrx.read_csv(train_csv, ["id_code", "experiment", "plate", "well", "sirna"])
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
            widths[r.test_path] = np.load(r.test_path, mmap_mode="r").shape[-1]
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read logits {r.test_path}: {e}") from None
    n_classes = widths[runs[0].test_path]
    for path, width in widths.items():
        if width != n_classes:
            raise DataError(f"{path} has {width} classes but {runs[0].test_path} has {n_classes}")
    try:
        groups = plates.plate_groups(train_df, n_groups=n_groups, n_classes=n_classes)
    except DataError as e:
        raise DataError(f"{train_csv}: {e}") from None

    probs = softmax(_mean_test_logits(runs, w, len(test_df)), temperature)
    labels, well_groups = plate_labels(probs, test_df, groups, assignment)
    sub = pd.DataFrame({"id_code": test_df["id_code"].astype(str), "sirna": labels.astype(np.int64)})
    validate_submission(sub, test_df, n_classes)
    assigned = test_df[["id_code", "experiment", "plate", "well"]].assign(
        sirna=labels,
        sirna_argmax=probs.argmax(axis=1),
        prob=probs[np.arange(len(labels)), labels],
        group=well_groups,
    )
    fsutil.write_npy(probs, out_dir / "test_probs.npy")
    fsutil.write_csv(assigned, out_dir / "test_assigned.csv")
    fsutil.write_csv(sub, out_dir / "submission.csv")
    changed = float((labels != assigned["sirna_argmax"].to_numpy()).mean())
    log.info("wrote %s (%d wells, %d classes); assignment changed %.1f%% of argmax labels",
             out_dir / "submission.csv", len(sub), n_classes, 100 * changed)
    result = {"n_runs": len(runs), "n_test": len(sub), "n_classes": n_classes, "changed_by_assignment": changed}

    table = oof_accuracy(runs, w, train_df, groups, temperature)
    if table is None:
        log.warning("no run has out-of-fold predictions; oof_accuracy.csv not written")
        return result
    fsutil.write_csv(table, out_dir / "oof_accuracy.csv")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    overall = table.iloc[-1]
    log.info("OOF accuracy over %d wells: argmax %.4f, assigned %.4f",
             overall["n_wells"], overall["acc_argmax"], overall["acc_assigned"])
    result.update(oof_wells=int(overall["n_wells"]), oof_acc_argmax=float(overall["acc_argmax"]),
                  oof_acc_assigned=float(overall["acc_assigned"]))
    return result


if __name__ == "__main__":
    cli.run(main)
