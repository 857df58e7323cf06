"""Reports a person can read: run tables, accuracy plots and channel montages.

    python src/report.py runs --log_dir /logs                  # each run's valid scores vs chance
    python src/report.py ensemble --ensemble_dir E --data_root D --out_dir R
"""
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import cli  # noqa: E402
from ensemble import accuracy_table  # noqa: E402
import layout  # noqa: E402
import rxrx  # noqa: E402
from fsutil import atomic_path, write_csv  # noqa: E402
from montage import write_montage  # noqa: E402

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


def plot_assignment(acc: pd.DataFrame, out_png, title: str) -> Path:
    """Bar chart of per-experiment accuracy before and after the plate assignment."""
    acc = acc[acc["experiment"] != "ALL"]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(acc) + 2), 4))
    x = range(len(acc))
    width = 0.4
    ax.bar([i - width / 2 for i in x], acc["acc_argmax"], width, label="argmax")
    ax.bar([i + width / 2 for i in x], acc["acc_assigned"], width, label="per-plate assignment")
    ax.set_xticks(list(x))
    ax.set_xticklabels(acc["experiment"], rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out_png


def test_accuracy(ensemble_dir, data_root):
    """Accuracy of submission.csv against {data_root}/test_labels.csv (the demo has them)."""
    labels = Path(data_root) / "test_labels.csv"
    if not labels.is_file():
        return None
    sub = rxrx.read_csv(Path(ensemble_dir) / "test_assigned.csv", ["id_code", "experiment", "sirna", "sirna_argmax"])
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
    oof = rxrx.read_csv(ensemble_dir / "oof_accuracy.csv", ["experiment", "acc_argmax", "acc_assigned"])
    write_csv(oof, out_dir / f"{name}_oof_accuracy.csv")
    print(f"\n{name}: out-of-fold accuracy per experiment")
    print(oof.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    plot_assignment(oof, out_dir / f"{name}_oof_accuracy.png", f"{name}: out-of-fold accuracy")
    test = test_accuracy(ensemble_dir, data_root)
    if test is not None:
        write_csv(test, out_dir / f"{name}_test_accuracy.csv")
        print(f"\n{name}: test accuracy against test_labels.csv")
        print(test.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        plot_assignment(test, out_dir / f"{name}_test_accuracy.png", f"{name}: test accuracy")
    assigned = rxrx.read_csv(ensemble_dir / "test_assigned.csv", ["experiment", "plate", "well"])
    write_montage(data_root, assigned.assign(dataset="test"), out_dir / f"{name}_montage.png",
                  max_wells=montage_wells, tile_size=tile_size)
    log.info("report written to %s", out_dir)
    return None


if __name__ == "__main__":
    cli.run({"runs": runs, "ensemble": ensemble})
