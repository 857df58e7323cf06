"""Folds grouped by experiment and the control hold-out split."""
import json

import pandas as pd
import pytest

import make_folds
from cellpipe.sources import rxrx1 as rxrx


def fake_train(counts, wells=5):
    """train.csv-like table: ``counts`` maps cell type -> number of experiments."""
    rows = [(rxrx.id_code(f"{ct}-{i:02d}", 1, f"B{w:02d}"), f"{ct}-{i:02d}", 1, f"B{w:02d}", w)
            for ct, n in counts.items() for i in range(1, n + 1) for w in range(2, 2 + wells)]
    return pd.DataFrame(rows, columns=["id_code", "experiment", "plate", "well", "sirna"])


@pytest.mark.parametrize("counts,n_folds", [({"HEPG2": 3, "HUVEC": 3}, 3),
                                            ({"HEPG2": 7, "HUVEC": 16, "RPE": 7, "U2OS": 3}, 5)])
def test_folds_group_by_experiment_and_spread_cell_types(counts, n_folds):
    train = fake_train(counts)
    folds = make_folds.make_folds(train, n_folds, seed=42)
    assert len(folds) == n_folds
    seen = []
    for tr, va in folds:
        assert not set(tr.experiment) & set(va.experiment)
        assert sorted(pd.concat([tr, va]).id_code) == sorted(train.id_code)
        assert (va.cell_type == va.experiment.str.split("-").str[0]).all()
        seen += sorted(va.experiment.unique())
    assert sorted(seen) == sorted(train.experiment.unique())  # each experiment validated exactly once
    per_fold = pd.DataFrame([va.groupby("cell_type").experiment.nunique() for _, va in folds]).fillna(0)
    for ct, n in counts.items():  # each cell type as even over folds as its experiment count allows
        assert per_fold[ct].sum() == n and per_fold[ct].max() - per_fold[ct].min() <= 1, ct


def test_folds_are_seeded():
    train = fake_train({"HEPG2": 7, "HUVEC": 16, "RPE": 7, "U2OS": 3})
    valid = lambda seed: [sorted(va.experiment.unique()) for _, va in make_folds.make_folds(train, 5, seed)]
    assert valid(1) == valid(1)
    assert valid(1) != valid(2)


def test_too_few_experiments_raise():
    with pytest.raises(rxrx.DataError, match=r"4 experiments.*n_folds=5"):
        make_folds.make_folds(fake_train({"HEPG2": 2, "HUVEC": 2}), 5, seed=0)


def test_split_controls_holds_out_experiments_per_type(demo_root):
    controls = make_folds.load_controls(demo_root)
    tr, va = make_folds.split_controls(controls, per_type=1, seed=42)
    assert not set(tr.experiment) & set(va.experiment)
    assert va.groupby("cell_type").experiment.nunique().to_dict() == {"HEPG2": 1, "HUVEC": 1}
    assert len(tr) + len(va) == len(controls)
    both = pd.concat([tr, va])
    assert set(both.dataset) == {"train", "test"}
    assert (both.dataset == both.experiment.str.endswith("-04").map({True: "test", False: "train"})).all()
    with pytest.raises(rxrx.DataError, match="HEPG2 has 4"):
        make_folds.split_controls(controls, per_type=4, seed=42)


def test_main_writes_csvs_and_json(demo_root, tmp_path):
    out = tmp_path / "csv"
    make_folds.main(str(demo_root), out_dir=str(out), n_folds=3, seed=7, control_valid_per_type=1)
    train = pd.read_csv(demo_root / "train.csv")
    meta = json.loads((out / "folds.json").read_text())
    assert meta["n_folds"] == 3 and meta["seed"] == 7 and "experiment" in meta["rule"]
    for k in range(3):
        tr, va = pd.read_csv(out / f"train_{k}.csv"), pd.read_csv(out / f"valid_{k}.csv")
        assert list(tr.columns) == list(train.columns) + ["cell_type"] == list(va.columns)
        assert sorted(pd.concat([tr, va]).id_code) == sorted(train.id_code)
        assert meta["folds"][k]["valid_experiments"] == sorted(va.experiment.unique())
    c_tr, c_va = pd.read_csv(out / "control_train.csv"), pd.read_csv(out / "control_valid.csv")
    assert list(c_va.columns) == ["id_code", "experiment", "plate", "well", "sirna", "well_type", "dataset",
                                  "cell_type"]
    assert meta["control_valid_experiments"] == sorted(c_va.experiment.unique())
    assert not set(c_tr.experiment) & set(c_va.experiment)
    assert not list(out.glob(".*"))  # no temporary files left behind
