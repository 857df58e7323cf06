"""Reports: the run table over finished runs, and the ensemble report files."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import report
from cellpipe.core.errors import DataError
from cellpipe.inference import predict as inference
from cellpipe.rxrx import ensemble


@pytest.fixture(scope="module")
def ens_dir(untrained_runs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report_src")
    inference.predict_all(untrained_runs["data_root"], untrained_runs["model_root"], untrained_runs["model_name"],
                          tmp / "preds", device="cpu")
    out = tmp / "demo_ens"
    ensemble.main(data_root=str(untrained_runs["data_root"]), pred_dirs=str(tmp / "preds"), out_dir=str(out))
    return out


def test_run_table_has_one_row_per_run(untrained_runs):
    table = report.run_table(untrained_runs["log_dir"])
    assert len(table) == len(untrained_runs["folds"])
    assert sorted(table["fold"]) == [f"fold_{k}" for k in untrained_runs["folds"]]
    assert set(table["part"]) == {"non_pseudo"}
    assert set(table["channels"]) == {untrained_runs["channels"]}
    assert set(table["model"]) == {untrained_runs["model_name"]}
    assert (table["classes"] == 16).all()
    assert np.allclose(table["chance"], 1 / 16)
    assert table["top1"].between(0, 1).all() and table["top3"].between(0, 1).all()
    assert (table["top3"] >= table["top1"]).all()
    np.testing.assert_allclose(table["top1_over_chance"], table["top1"] * 16)
    for row in table.itertuples():
        done = json.loads((Path(untrained_runs["log_dir"]) / row.part / row.channels / row.fold / row.model
                           / "DONE.json").read_text())
        assert row.top1 == pytest.approx(done["valid"]["accuracy01"])
        assert row.map3 == pytest.approx(done["valid"]["map03"])


def test_run_table_of_a_part_folder_names_the_part(untrained_runs):
    table = report.run_table(untrained_runs["model_root"])
    assert set(table["part"]) == {"non_pseudo"}
    assert set(table["channels"]) == {untrained_runs["channels"]}


def test_runs_cli_function_writes_csv(untrained_runs, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    report.runs(untrained_runs["log_dir"], out_csv=str(out))
    saved = pd.read_csv(out)
    assert len(saved) == len(untrained_runs["folds"]) and "top1_over_chance" in saved.columns
    assert "fold_0" in capsys.readouterr().out


def test_run_table_without_runs_raises(tmp_path):
    (tmp_path / "non_pseudo" / "[1,2,3,4,5]" / "fold_0" / "m").mkdir(parents=True)  # unfinished run
    with pytest.raises(DataError, match="no finished runs"):
        report.run_table(tmp_path)


def check_png(path, min_w, min_h):
    img = cv2.imread(str(path))
    assert img is not None, f"{path} does not load"
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    assert img.std() > 5  # not a blank canvas
    return img


def test_ensemble_report_files(untrained_runs, ens_dir, tmp_path):
    out = tmp_path / "report"
    report.ensemble(ens_dir, untrained_runs["data_root"], out, montage_wells=6)
    name = ens_dir.name
    oof = pd.read_csv(out / f"{name}_oof_accuracy.csv")
    pd.testing.assert_frame_equal(oof, pd.read_csv(ens_dir / "oof_accuracy.csv"))
    assert oof["experiment"].iloc[-1] == "ALL"
    check_png(out / f"{name}_oof_accuracy.png", 300, 200)
    montage = check_png(out / f"{name}_montage.png", 6 * 32, 32)
    assert montage.shape[1] < 7 * (32 + 200)  # 6 tiles, not every test well

    # test accuracy against test_labels.csv, checked by hand
    test = pd.read_csv(out / f"{name}_test_accuracy.csv").set_index("experiment")
    check_png(out / f"{name}_test_accuracy.png", 300, 200)
    assigned = pd.read_csv(ens_dir / "test_assigned.csv")
    truth = pd.read_csv(Path(untrained_runs["data_root"]) / "test_labels.csv")[["id_code", "sirna"]]
    m = assigned.merge(truth.rename(columns={"sirna": "truth"}), on="id_code")
    assert len(m) == len(assigned)
    assert set(test.index) == set(assigned["experiment"]) | {"ALL"}
    assert test.loc["ALL", "acc_assigned"] == pytest.approx((m["sirna"] == m["truth"]).mean())
    assert test.loc["ALL", "acc_argmax"] == pytest.approx((m["sirna_argmax"] == m["truth"]).mean())
    for exp, g in m.groupby("experiment"):
        assert test.loc[exp, "acc_assigned"] == pytest.approx((g["sirna"] == g["truth"]).mean())


def test_ensemble_report_without_test_labels(untrained_runs, ens_dir, tmp_path):
    data = tmp_path / "data"  # the demo data minus test_labels.csv (links, no copies)
    data.mkdir()
    for entry in Path(untrained_runs["data_root"]).iterdir():
        if entry.name != "test_labels.csv":
            os.symlink(entry, data / entry.name)
    out = tmp_path / "report"
    report.ensemble(ens_dir, data, out, name="nolabels", montage_wells=2)
    assert (out / "nolabels_oof_accuracy.csv").is_file()
    assert not (out / "nolabels_test_accuracy.csv").exists()
    assert not (out / "nolabels_test_accuracy.png").exists()
    check_png(out / "nolabels_montage.png", 2 * 32, 32)
