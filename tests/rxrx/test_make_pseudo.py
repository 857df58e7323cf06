"""Pseudo-label fold CSVs from a real (tiny) predict-all + ensemble, and a Part III run on them."""
import json
from pathlib import Path

import pandas as pd
import pytest

import make_pseudo
from cellpipe.core.errors import DataError
from cellpipe.data import build as dataset
from cellpipe.inference import predict as inference
from cellpipe.rxrx import ensemble
from cellpipe.sources.base import TABLE_COLUMNS
from cellpipe.sources.rxrx1 import TABLES

REPO = Path(__file__).resolve().parents[2]
WELL = ["id_code", "experiment", "plate", "well", "sirna"]


@pytest.fixture(scope="module")
def ens(untrained_runs, tmp_path_factory):
    """predict-all on the two trained runs, then ensemble.main: test_assigned.csv and friends."""
    tmp = tmp_path_factory.mktemp("pseudo_src")
    inference.predict_all(untrained_runs["data_root"], untrained_runs["model_root"], untrained_runs["model_name"],
                          tmp / "preds", device="cpu")
    ensemble.main(data_root=str(untrained_runs["data_root"]), pred_dirs=str(tmp / "preds"), out_dir=str(tmp / "ens"))
    assigned = pd.read_csv(tmp / "ens" / "test_assigned.csv")
    return {**untrained_runs, "ens_dir": tmp / "ens", "assigned": assigned}


def run_pseudo(ens, out_dir, **kwargs):
    return make_pseudo.main(data_root=str(ens["data_root"]), ensemble_dir=str(ens["ens_dir"]),
                            csv_dir=str(ens["csv_dir"]), out_dir=str(out_dir), **kwargs)


@pytest.fixture(scope="module")
def pseudo_all(ens, tmp_path_factory):
    out = tmp_path_factory.mktemp("pseudo_csv")
    return {"out": out, "result": run_pseudo(ens, out)}


def test_every_fold_gets_train_rows_plus_all_pseudo_wells(ens, pseudo_all):
    out, assigned = pseudo_all["out"], ens["assigned"]
    test = pd.read_csv(Path(ens["data_root"]) / "test.csv")
    assert len(assigned) == len(test) and set(assigned["id_code"]) == set(test["id_code"])
    assert sorted(pseudo_all["result"]["experiments"]) == sorted(test["experiment"].unique())
    assert pseudo_all["result"]["n_wells"] == len(test)
    folds = sorted(int(p.stem.split("_")[1]) for p in Path(ens["csv_dir"]).glob("train_*.csv"))
    assert folds == [0, 1, 2]
    for k in folds:
        orig_train = pd.read_csv(Path(ens["csv_dir"]) / f"train_{k}.csv")
        orig_valid = pd.read_csv(Path(ens["csv_dir"]) / f"valid_{k}.csv")
        train = pd.read_csv(out / f"train_{k}.csv")
        valid = pd.read_csv(out / f"valid_{k}.csv")
        assert list(train.columns) == make_pseudo.COLUMNS and list(valid.columns) == make_pseudo.COLUMNS
        assert set(train["dataset"]) == {"train", "test"}
        real = train[train["dataset"] == "train"].reset_index(drop=True)
        pd.testing.assert_frame_equal(real[WELL], orig_train[WELL])
        fake = train[train["dataset"] == "test"].set_index("id_code")
        assert len(fake) == len(test) and set(fake.index) == set(test["id_code"])
        expected = assigned.set_index("id_code").loc[fake.index]
        assert (fake["sirna"] == expected["sirna"]).all()  # the assignment, not the argmax
        assert (fake[["experiment", "plate", "well"]] == expected[["experiment", "plate", "well"]]).all().all()
        # validation keeps the Part II wells only, with their true labels
        assert (valid["dataset"] == "train").all()
        pd.testing.assert_frame_equal(valid[WELL], orig_valid[WELL])
        assert not set(valid["id_code"]) & set(train["id_code"])
    meta = json.loads((out / "pseudo.json").read_text())
    assert meta["n_wells"] == len(test) and sorted(meta["experiments"]) == sorted(test["experiment"].unique())


def test_choose_by_name(ens, tmp_path):
    name = sorted(ens["assigned"]["experiment"].unique())[0]
    res = run_pseudo(ens, tmp_path, experiments=name)
    assert res["experiments"] == [name]
    train = pd.read_csv(tmp_path / "train_0.csv")
    fake = train[train["dataset"] == "test"]
    assert set(fake["experiment"]) == {name}
    assert len(fake) == (ens["assigned"]["experiment"] == name).sum() == res["n_wells"]
    chosen = pd.read_csv(tmp_path / "pseudo_experiments.csv").set_index("experiment")["chosen"]
    assert chosen[name] and chosen.sum() == 1


def test_unknown_experiment_name_raises(ens, tmp_path):
    with pytest.raises(DataError, match="NOPE-99"):
        run_pseudo(ens, tmp_path, experiments="NOPE-99")
    assert not (tmp_path / "train_0.csv").exists()


def test_min_confidence_rule(ens, tmp_path):
    conf = ens["assigned"].groupby("experiment")["prob"].mean()
    best = conf.idxmax()
    res = run_pseudo(ens, tmp_path / "at_best", min_confidence=float(conf.max()))
    assert res["experiments"] == [best]
    with pytest.raises(DataError, match="no test experiment reaches min_confidence"):
        run_pseudo(ens, tmp_path / "above", min_confidence=float(conf.max()) + 1e-3)
    assert not (tmp_path / "above" / "train_0.csv").exists()


def test_pseudo_csvs_load_through_dataset_tables(ens, pseudo_all, tmp_path):
    csv = pseudo_all["out"] / "train_0.csv"
    table = TABLES.build("pseudo", csv=csv)
    raw = pd.read_csv(csv)
    assert list(table.columns[:len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert len(table) == len(raw)
    assert (table["label"].to_numpy() == raw["sirna"].astype(str).to_numpy()).all()
    assert table["label"].astype(int).between(0, 15).all()
    assert table["dataset"].value_counts()["test"] == len(ens["assigned"])
    # and as a training set: every image exists (train/ and test/ folders) and a test row loads
    dp = dict(root=str(ens["data_root"]), source_params={"dataset": "pseudo", "control_offset": 16}, channels=[1, 2, 3, 4, 5], image_size=32,
              normalization="plate", train_sites=[1, 2], valid_sites=[1, 2])
    ds = dataset.make_dataset(dp, "train", num_classes=16, csv=csv)
    i = int((ds.table["dataset"] == "test").to_numpy().argmax())
    item = ds[i]
    assert item["features"].shape == (5, 32, 32) and item["targets"] == int(ds.table.loc[i, "label"])


def test_plate_units_rank_plates_by_confidence():
    from cellpipe.rxrx.pseudo import choose_experiments, experiment_confidence

    assigned = pd.DataFrame({"experiment": ["A", "A", "A", "B"], "plate": [1, 1, 2, 1], "prob": [0.9, 0.7, 0.2, 0.5]})
    conf = experiment_confidence(assigned, unit="plate")
    assert conf["unit"].tolist() == ["A/Plate1", "B/Plate1", "A/Plate2"]
    assert choose_experiments(conf, top=2) == ["A/Plate1", "B/Plate1"]
    with pytest.raises(DataError, match="--unit must be one of"):
        experiment_confidence(assigned, unit="well")
