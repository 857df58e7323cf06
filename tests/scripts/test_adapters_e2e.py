"""Each input adapter end to end through the real commands: generate, (folds), bin/train_classify.sh, predict."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellpipe.demo.generic import WRITERS
from conftest import REPO, TINY_MODEL

pytestmark = pytest.mark.slow


def sh(*args, env=None):
    r = subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.parametrize("kind", ["manifest", "folder", "phenix", "rxrx1_2020"])
def test_adapter_trains_and_predicts_above_chance(kind, tmp_path):
    data = tmp_path / "data"
    WRITERS[kind](data)
    env = {"SOURCE": kind, "DATA_DIR": str(data), "LOG_DIR": str(tmp_path / "logs"), "OVERLAY": "configs/tiny.yml",
           "PYTHON": sys.executable, "FOLDS": "0"}
    if kind == "folder":  # cross-validation over the class folders: 2 of 3 stratified folds
        sh(sys.executable, "src/make_folds.py", str(data), "--out_dir", str(tmp_path / "csv"), "--n_folds", "3",
           "--source", kind, "--grouped", "false", "--splits", "train,valid")  # test stays held out
        env.update(CSV_DIR=str(tmp_path / "csv"), FOLDS="0 1")
    if kind == "rxrx1_2020":  # no validation split of its own: folds grouped by experiment
        sh(sys.executable, "src/make_folds.py", str(data), "--out_dir", str(tmp_path / "csv"), "--n_folds", "3",
           "--source", kind, "--seed", "0")
        env["CSV_DIR"] = str(tmp_path / "csv")
    sh("bash", "bin/train_classify.sh", "--stages/finetune/num_epochs=8", env=env)
    runs = sorted((tmp_path / "logs" / kind).glob(f"*/fold_*/{TINY_MODEL}/DONE.json"))
    assert len(runs) == (2 if kind == "folder" else 1), list((tmp_path / "logs").rglob("DONE.json"))
    run = runs[0].parent
    if kind == "folder":
        cv = sh(sys.executable, "src/report.py", "cv", f"--log_dir={tmp_path / 'logs' / kind}").stdout
        summary = pd.read_csv(tmp_path / "logs" / kind / "cv_summary.csv")
        folds = summary[summary["run"].str.contains("fold_")]
        assert len(folds) == 2 and "+-" in cv
        assert summary.set_index("run").loc["mean", "accuracy"] == pytest.approx(folds["accuracy"].mean())
    labels = json.loads((run / "checkpoints" / "labels.json").read_text())
    # class names come from the data: folder / label names, or rxrx1_2020's integer sirna_id
    assert labels["classes"] == (["0", "1", "2", "3"] if kind == "rxrx1_2020" else ["c0", "c1", "c2", "c3"])
    for name in ("valid_predictions.csv", "per_class.csv", "confusion_matrix.png", "config.yml"):
        assert (run / name).is_file(), name
    sh(sys.executable, "src/report.py", "run", f"--run_dir={run}")
    assert (run / "montage.png").is_file() and (run / "per_class_f1.png").is_file()
    if kind in ("phenix", "rxrx1_2020"):  # plate-based sources: a plate map of validation accuracy
        assert (run / "plate_accuracy.png").is_file()
    out = tmp_path / "pred"
    sh(sys.executable, "src/inference.py", "predict", f"--run_dir={run}", f"--out_dir={out}")
    pred = pd.read_csv(out / "pred_test.csv", dtype={"pred": str, "truth": str})
    ids = pd.read_csv(out / "test_ids.csv", dtype={"id": str})["id"]
    assert pred["id"].tolist() == ids.tolist() and set(pred["pred"]) <= set(labels["classes"])
    assert np.load(out / "pred_test.npy").shape == (len(ids), 4)
    labelled = pred[pred["truth"].notna()]
    assert len(labelled) > 0
    accuracy = float((labelled["pred"] == labelled["truth"]).mean())
    majority = float(labelled["truth"].value_counts(normalize=True).iloc[0])  # always the commonest class
    print(f"{kind}: test top-1 {accuracy:.3f} on {len(labelled)} samples (majority baseline {majority:.3f})")
    assert accuracy > majority + 0.2
    if kind == "folder":  # the same test images as new, unlabelled files: classify gives predict's numbers
        sh(sys.executable, "src/inference.py", "classify", str(data / "test"), f"--model={run}",
           f"--out={tmp_path / 'classified.csv'}")
        new = pd.read_csv(tmp_path / "classified.csv", keep_default_na=False)
        new.index = new["path"].map(lambda p: str(Path(p).relative_to(data)))
        prob = [f"prob_{c}" for c in labels["classes"]]
        assert (new["error"] == "").all() and len(new) == len(pred)
        assert np.allclose(new.loc[pred["id"], prob].to_numpy(float), pred[prob].to_numpy(float), atol=1e-5)
