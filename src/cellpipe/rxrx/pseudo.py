"""Pseudo-label CSVs for Part III from an ensemble's per-plate assignment.

    python src/make_pseudo.py --data_root /data --ensemble_dir /predictions/ensemble \
        --csv_dir csv --out_dir csv/pseudo [--experiments HEPG2-08,U2OS-04] [--min_confidence 0.5]

Each fold keeps its Part II validation wells (true labels only, so Part III's
scores stay comparable and never grade pseudo labels) and trains on its Part II
training wells plus the chosen test experiments, whole, labelled by the
assignment. Rows carry ``dataset`` (train or test: which image folder).
"""
import json
import logging
import re
from pathlib import Path

import pandas as pd

from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_csv, write_text
from cellpipe.sources import rxrx1 as rxrx

log = logging.getLogger("make_pseudo")
ASSIGNED = layout.TEST_ASSIGNED
COLUMNS = ["id_code", "experiment", "plate", "well", "sirna", "dataset"]


UNITS = {"experiment": ["experiment"], "plate": ["experiment", "plate"]}


def unit_names(df: pd.DataFrame, unit: str) -> pd.Series:
    """``HEPG2-08`` per experiment, ``HEPG2-08/Plate2`` per plate."""
    if unit == "plate":
        return df["experiment"].astype(str) + "/Plate" + df["plate"].astype(int).astype(str)
    return df["experiment"].astype(str)


def experiment_confidence(assigned: pd.DataFrame, unit: str = "experiment") -> pd.DataFrame:
    """Mean ensemble probability of the assigned siRNA, per test experiment (or plate: ``unit``)."""
    if unit not in UNITS:
        raise DataError(f"--unit must be one of {list(UNITS)}, got {unit!r}")
    conf = (assigned.groupby(UNITS[unit])["prob"].agg(["mean", "size"])
            .rename(columns={"mean": "confidence", "size": "n_wells"}).reset_index()
            .sort_values("confidence", ascending=False))
    if unit == "plate":
        conf.insert(0, "unit", unit_names(conf, unit))
    return conf


def choose_experiments(conf: pd.DataFrame, experiments=None, min_confidence: float = 0.0, top: int = None):
    """By name when given, else every unit (experiment or plate) at or above min_confidence (best `top`)."""
    key = "unit" if "unit" in conf.columns else "experiment"
    if experiments:
        names = [e.strip() for e in (experiments.split(",") if isinstance(experiments, str) else experiments)]
        unknown = sorted(set(names) - set(conf[key]))
        if unknown:
            raise DataError(f"{key}s {unknown} are not in the ensemble's test predictions")
        return names
    chosen = conf[conf["confidence"] >= float(min_confidence)]
    if top:
        chosen = chosen.head(int(top))
    return chosen[key].tolist()


def fold_ids(csv_dir: Path):
    pattern = re.compile(r"train_(\d+)\.csv$")
    folds = sorted(int(m.group(1)) for p in csv_dir.glob("train_*.csv") if (m := pattern.search(p.name)))
    if not folds:
        raise DataError(f"no fold CSVs train_<k>.csv in {csv_dir} (run src/make_folds.py first)")
    return folds


def main(data_root, ensemble_dir, csv_dir="csv", out_dir="csv/pseudo", experiments=None,
         min_confidence: float = 0.0, top: int = None, unit: str = "experiment"):
    """Write {out_dir}/train_{k}.csv and valid_{k}.csv for every fold in csv_dir.

    Args:
        data_root: Kaggle data folder (test.csv is checked against the ensemble).
        ensemble_dir: output of src/ensemble.py holding test_assigned.csv.
        csv_dir: the Part II fold CSVs (train_{k}.csv, valid_{k}.csv).
        out_dir: where the pseudo-label fold CSVs go.
        experiments: comma-separated test experiments to add (overrides the rule).
        min_confidence: add experiments whose mean assigned probability is >= this.
        top: keep at most this many of the most confident experiments (plates).
        unit: experiment | plate: what is chosen whole (progressive rounds add the most confident
            plates first: bin/train_pseudo_rounds.sh).
    """
    csv_dir, out_dir = Path(csv_dir), Path(out_dir)
    assigned_path = Path(ensemble_dir) / ASSIGNED
    assigned = rxrx.read_csv(assigned_path, ["id_code", "experiment", "plate", "well", "sirna", "prob"])
    test = rxrx.read_csv(Path(data_root) / "test.csv", ["id_code"])
    stray = sorted(set(assigned["id_code"]) - set(test["id_code"]))
    if stray:
        raise DataError(f"{assigned_path} has id_codes not in test.csv, e.g. {stray[:3]}")
    conf = experiment_confidence(assigned, unit)
    chosen = choose_experiments(conf, experiments, min_confidence, top)
    if not chosen:
        raise DataError(f"no test {unit} reaches min_confidence={min_confidence}; best is "
                        f"{conf['confidence'].max():.3f}")
    pseudo = assigned[unit_names(assigned, unit).isin(chosen)].assign(dataset="test")[COLUMNS]
    log.info("pseudo-labelling %d wells of %s", len(pseudo), chosen)
    for k in fold_ids(csv_dir):
        train = rxrx.read_csv(csv_dir / layout.TRAIN_FOLD.format(k=k), ["id_code", "experiment", "plate", "well", "sirna"])
        valid = rxrx.read_csv(csv_dir / layout.VALID_FOLD.format(k=k), ["id_code", "experiment", "plate", "well", "sirna"])
        write_csv(pd.concat([train.assign(dataset="train")[COLUMNS], pseudo], ignore_index=True),
                  out_dir / layout.TRAIN_FOLD.format(k=k))
        write_csv(valid.assign(dataset="train")[COLUMNS], out_dir / layout.VALID_FOLD.format(k=k))
    key = "unit" if unit == "plate" else "experiment"
    write_csv(conf.assign(chosen=conf[key].isin(chosen)), out_dir / layout.PSEUDO_EXPERIMENTS)
    write_text(json.dumps({"experiments": chosen, "unit": unit, "min_confidence": min_confidence, "top": top,
                           "source": str(assigned_path), "n_wells": len(pseudo)}, indent=2),
               out_dir / layout.PSEUDO_JSON)
    print(conf.assign(chosen=conf[key].isin(chosen)).to_string(index=False))
    return {"experiments": chosen, "n_wells": len(pseudo), "out_dir": str(out_dir)}
