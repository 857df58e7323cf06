"""Reports a person can read: run tables, accuracy plots and channel montages.

    python src/report.py runs --log_dir /logs                  # each run's valid scores vs chance
    python src/report.py ensemble --ensemble_dir E --data_root D --out_dir R
    python src/report.py run --run_dir R [--out_dir O]            # pictures of one single-label run
    python src/report.py cv --log_dir /logs/folder                # per-fold and mean +- std scores
"""
import json
import logging
from pathlib import Path

import pandas as pd

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.fsutil import write_csv
from cellpipe.reports.montage import write_montage
from cellpipe.reports.plots import accuracy_bars_png, confusion_matrix_png, per_class_f1_png, plate_heatmap_png
from cellpipe.rxrx.ensemble import accuracy_table
from cellpipe.sources import rxrx1 as rxrx

log = logging.getLogger("report")


def run_table(log_dir) -> pd.DataFrame:
    """One row per finished run under log_dir: part, channels, fold, model, scores, chance."""
    rows = []
    for done in sorted(Path(log_dir).rglob(layout.DONE_FILE)):
        run = done.parent
        rel = run.relative_to(log_dir).parts
        summary = json.loads(done.read_text())
        fold = next((p for p in rel if layout.parse_fold(p) is not None), "-")
        at = next((i for i, p in enumerate(rel) if p.startswith("[")), None)
        channels = rel[at] if at is not None else "-"
        # the part folder sits just above the channel folder (log_dir itself if it is a part)
        part = (rel[at - 1] if at else Path(log_dir).resolve().name) if at is not None else "-"
        valid = summary.get("valid", {})
        chance = 1.0 / summary["num_classes"]
        rows.append({"part": part, "channels": channels, "fold": fold,
                     "model": run.name, "classes": summary["num_classes"],
                     "top1": valid.get("accuracy01"), "top3": valid.get("accuracy03"),
                     "map3": valid.get("map03"), "chance": chance,
                     "top1_over_chance": valid.get("accuracy01", 0.0) / chance,
                     "minutes": summary.get("minutes")})
    if not rows:
        raise rxrx.DataError(f"no finished runs ({layout.DONE_FILE}) under {log_dir}")
    return pd.DataFrame(rows)


def runs(log_dir, out_csv=None):
    """Print (and optionally save) the table of finished runs' validation scores.

    Args:
        log_dir: folder holding pretrained_controls/, non_pseudo/, pseudo/.
        out_csv: also write the table here.
    """
    table = run_table(log_dir)
    if out_csv:
        write_csv(table, out_csv)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return None


def heldout_accuracy(ensemble_dir, data_root):
    """Accuracy of submission.csv against {data_root}/test_labels.csv (the demo has them)."""
    labels = Path(data_root) / "test_labels.csv"
    if not labels.is_file():
        return None
    sub = rxrx.read_csv(Path(ensemble_dir) / layout.TEST_ASSIGNED, ["id_code", "experiment", "sirna", "sirna_argmax"])
    truth = rxrx.read_csv(labels, ["id_code", "sirna"]).rename(columns={"sirna": "truth"})
    m = sub.merge(truth[["id_code", "truth"]], on="id_code", how="inner")
    return accuracy_table(m["experiment"], m["truth"], m["sirna_argmax"], m["sirna"])


def ensemble(ensemble_dir, data_root, out_dir, name: str = None, montage_wells: int = 6, tile_size: int = 160):
    """Per-experiment accuracy table (CSV + printed), before/after plot and a montage PNG.

    Args:
        ensemble_dir: output of src/ensemble.py (oof_accuracy.csv, test_assigned.csv).
        data_root: data folder (images for the montage; test_labels.csv if present).
        out_dir: where the report files go.
        name: prefix of the report files (default: the ensemble folder's name).
        montage_wells: number of test wells in the channel montage.
        tile_size: pixel size of each montage tile.
    """
    ensemble_dir, out_dir = Path(ensemble_dir), Path(out_dir)
    name = name or ensemble_dir.name
    oof = rxrx.read_csv(ensemble_dir / layout.OOF_ACCURACY, ["experiment", "acc_argmax", "acc_assigned"])
    write_csv(oof, out_dir / f"{name}_oof_accuracy.csv")
    print(f"\n{name}: out-of-fold accuracy per experiment")
    print(oof.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    accuracy_bars_png(oof, out_dir / f"{name}_oof_accuracy.png", f"{name}: out-of-fold accuracy")
    test = heldout_accuracy(ensemble_dir, data_root)
    if test is not None:
        write_csv(test, out_dir / f"{name}_test_accuracy.csv")
        print(f"\n{name}: test accuracy against test_labels.csv")
        print(test.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        accuracy_bars_png(test, out_dir / f"{name}_test_accuracy.png", f"{name}: test accuracy")
    assigned = rxrx.read_csv(ensemble_dir / layout.TEST_ASSIGNED, ["experiment", "plate", "well"])
    source = rxrx.Rxrx1Source(data_root)
    wells = assigned.assign(dataset="test", id=assigned["id_code"] if "id_code" in assigned else rxrx.id_codes(assigned))
    write_montage(source, wells, out_dir / f"{name}_montage.png", max_samples=montage_wells, tile_size=tile_size)
    log.info("report written to %s", out_dir)
    return None


def run(run_dir, out_dir=None, data_root=None, montage_samples: int = 6, tile_size: int = 160):
    """Pictures of one finished single-label run: confusion matrix, per-class F1, a montage of
    validation samples in the source's colours and, for plate-based sources, a plate map of
    validation accuracy (edge and batch effects show at a glance).

    Args:
        run_dir: a finished run folder (valid_predictions.csv, per_class.csv, config.yml).
        out_dir: where the PNGs go (default: the run folder).
        data_root: the data folder (default: the run's data_params/root).
        montage_samples: validation samples in the montage.
        tile_size: pixel size of each montage tile.
    """

    from cellpipe.data.build import split_table
    from cellpipe.sources import make_source

    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    preds = rxrx.read_csv(run_dir / layout.VALID_PREDICTIONS, ["id", "pred", "truth"])
    written = [confusion_matrix_png(run_dir / layout.VALID_PREDICTIONS, out_dir / layout.CONFUSION_PNG),
               per_class_f1_png(run_dir / layout.PER_CLASS, out_dir / "per_class_f1.png")]
    dp = cfglib.read_run_config(run_dir / layout.CONFIG_FILE)["data_params"]
    if data_root is not None:
        dp["root"] = str(data_root)
    source = make_source(dp)
    valid = split_table(source, dp, "valid")
    written.append(write_montage(source, valid, out_dir / "montage.png", channels=dp["channels"],
                                 max_samples=montage_samples, tile_size=tile_size))
    if source.plate_columns and source.well_column:
        hits = valid.merge(preds.astype({"id": str}), on="id")
        hits["correct"] = (hits["pred"].astype(str) == hits["truth"].astype(str)).astype(float)
        written.append(plate_heatmap_png(hits, "correct", out_dir / "plate_accuracy.png",
                                         plate_columns=source.plate_columns, well_column=source.well_column,
                                         title="validation accuracy per well"))
    for path in written:
        if path is not None:
            print(f"wrote {path}")
    return None


def cv_table(log_dir) -> pd.DataFrame:
    """Per-fold validation scores of the finished runs under log_dir, plus mean and std rows."""
    rows = []
    for done in sorted(Path(log_dir).rglob(layout.DONE_FILE)):
        run_dir = done.parent
        fold = layout.parse_fold(run_dir.parent.name)
        summary = json.loads(done.read_text())
        per_class = run_dir / layout.PER_CLASS
        macro = None
        if per_class.is_file():
            pc = pd.read_csv(per_class, dtype={"class": str})
            macro = pc.loc[pc["class"] == "macro avg", ["precision", "recall", "f1"]].iloc[0]
        rows.append({"run": str(run_dir.relative_to(log_dir)), "fold": fold,
                     "accuracy": summary["valid"].get("accuracy01"),
                     "precision": None if macro is None else macro["precision"],
                     "recall": None if macro is None else macro["recall"],
                     "f1": None if macro is None else macro["f1"], "n_valid": summary.get("n_valid")})
    if not rows:
        raise rxrx.DataError(f"no finished runs ({layout.DONE_FILE}) under {log_dir}")
    table = pd.DataFrame(rows)
    scores = table[["accuracy", "precision", "recall", "f1"]].astype(float)
    stats = pd.DataFrame([{"run": "mean", **scores.mean().to_dict()}, {"run": "std", **scores.std(ddof=0).to_dict()}])
    return pd.concat([table, stats], ignore_index=True)


def cv(log_dir, out_csv=None):
    """Cross-validation summary (seed 003): per-fold accuracy and macro precision / recall / F1, mean +- std.

    Args:
        log_dir: folder holding the fold runs, e.g. /logs/folder (any depth below it).
        out_csv: where to write the table (default {log_dir}/cv_summary.csv).
    """
    table = cv_table(log_dir)
    write_csv(table, out_csv or Path(log_dir) / layout.CV_SUMMARY)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    mean, std = table.iloc[-2], table.iloc[-1]
    print(f"accuracy {mean['accuracy']:.3f} +- {std['accuracy']:.3f} over {len(table) - 2} fold(s)")
    return None
