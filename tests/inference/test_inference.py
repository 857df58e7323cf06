"""predict-all on two tiny finished runs: output files, skipping, a manual forward pass, TTA, errors, CLI."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cellpipe.core.errors import DataError
from cellpipe.data.build import load_normalizer, make_dataset
from cellpipe.inference import predict as inference
from cellpipe.models import create_model, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
N_CLASSES = 16
OUTPUTS = ("pred_test.npy", "pred_valid.npy", "valid_ids.csv")


def run_dir(runs, fold):
    return Path(runs["model_root"]) / runs["channels"] / f"fold_{fold}" / runs["model_name"]


def pred_dir(out_dir, runs, fold):
    return Path(out_dir) / runs["channels"] / f"fold_{fold}" / runs["model_name"]


def predict(runs, out_dir, **kwargs):
    return inference.predict_all(data_root=str(runs["data_root"]), model_root=str(runs["model_root"]),
                                 model_name=runs["model_name"], out_dir=str(out_dir), device="cpu", **kwargs)


@pytest.fixture(scope="module")
def predictions(untrained_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("preds")
    returned = predict(untrained_runs, out)
    return {"out": out, "returned": returned, **untrained_runs}


def test_predict_all_writes_every_run(predictions):
    runs = predictions
    n_test = len(pd.read_csv(Path(runs["data_root"]) / "test.csv"))
    assert sorted(predictions["returned"]) == sorted(str(pred_dir(runs["out"], runs, k)) for k in runs["folds"])
    tests = []
    for fold in runs["folds"]:
        d = pred_dir(runs["out"], runs, fold)
        test = np.load(d / "pred_test.npy")
        assert test.dtype == np.float32 and test.shape == (n_test, N_CLASSES)
        assert np.isfinite(test).all()
        valid_csv = pd.read_csv(Path(runs["csv_dir"]) / f"valid_{fold}.csv")
        ids = pd.read_csv(d / "valid_ids.csv")
        assert list(ids.columns) == ["id", "label"]  # the label lets an ensemble score out-of-fold
        assert ids["id"].tolist() == valid_csv["id_code"].tolist()
        test_ids = pd.read_csv(d / "test_ids.csv")["id"]
        assert test_ids.tolist() == pd.read_csv(Path(runs["data_root"]) / "test.csv")["id_code"].tolist()
        labels = json.loads((d / "labels.json").read_text())
        assert labels["kind"] == "single" and labels["classes"] == [str(i) for i in range(N_CLASSES)]
        per_sample = pd.read_csv(d / "pred_test.csv")
        assert per_sample["id"].tolist() == test_ids.tolist()
        assert (per_sample["pred"].astype(str) == pd.Series(np.load(d / "pred_test.npy").argmax(1)).astype(str)).all()
        np.testing.assert_allclose(per_sample[[f"prob_{c}" for c in labels["classes"]]].sum(axis=1), 1, rtol=1e-5)
        valid = np.load(d / "pred_valid.npy")
        assert valid.dtype == np.float32 and valid.shape == (len(valid_csv), N_CLASSES)
        tests.append(test)
    # two differently trained models give different logits
    assert not np.allclose(tests[0], tests[1])


def test_second_call_skips_and_overwrite_rewrites(predictions, tmp_path):
    out = tmp_path / "preds"
    shutil.copytree(predictions["out"], out)
    files = [pred_dir(out, predictions, k) / name for k in predictions["folds"] for name in OUTPUTS]
    old = 1_000_000_000
    for f in files:
        os.utime(f, (old, old))
    predict(predictions, out)
    assert [f.stat().st_mtime for f in files] == [old] * len(files)
    predict(predictions, out, overwrite=True)
    assert all(f.stat().st_mtime != old for f in files)
    for k in predictions["folds"]:  # same model, same data: same logits
        np.testing.assert_allclose(np.load(pred_dir(out, predictions, k) / "pred_test.npy"),
                                   np.load(pred_dir(predictions["out"], predictions, k) / "pred_test.npy"),
                                   atol=1e-5)


def test_outputs_made_with_other_settings_are_not_silently_kept(predictions, tmp_path):
    out = tmp_path / "preds"
    shutil.copytree(predictions["out"], out)
    with pytest.raises(DataError, match="overwrite"):
        predict(predictions, out, tta="flip")
    with pytest.raises(DataError, match="unknown tta"):  # checked before the skip
        predict(predictions, out, tta="bogus")


def manual_logits(runs, fold, csv, kind, row):
    """Forward pass of one well, both sites averaged, built by hand from the run's files."""
    rd = run_dir(runs, fold)
    payload = torch.load(rd / "checkpoints" / "best.pth", map_location="cpu", weights_only=False)
    model = create_model(**dict(payload["model_params"], pretrained=None, weight=None))
    model.load_state_dict(load_checkpoint(rd / "checkpoints" / "best.pth"))
    model.eval()
    dp = yaml.safe_load((rd / "config.yml").read_text())["data_params"]
    dp.update(root=str(runs["data_root"]), valid_sites=[1, 2])
    ds = make_dataset(dp, "valid", normalizer=load_normalizer(dp), csv=csv, table=kind)
    assert not ds.train
    x = ds[row]["features"]
    assert x.shape == (2, 5, 32, 32)  # both sites, 5 channels
    with torch.no_grad():
        return model(x).mean(dim=0).numpy()


@pytest.mark.parametrize("fold", [0, 1])
def test_logits_match_manual_forward_pass(predictions, fold):
    runs = predictions
    d = pred_dir(runs["out"], runs, fold)
    row = 3
    expected = manual_logits(runs, fold, Path(runs["data_root"]) / "test.csv", "test", row)
    np.testing.assert_allclose(np.load(d / "pred_test.npy")[row], expected, atol=1e-4)
    expected = manual_logits(runs, fold, Path(runs["csv_dir"]) / f"valid_{fold}.csv", "non_pseudo", row)
    np.testing.assert_allclose(np.load(d / "pred_valid.npy")[row], expected, atol=1e-4)


def test_single_site_predicts_that_site_only(predictions, tmp_path):
    runs = predictions
    dest = inference.predict_run(run_dir(runs, 0), runs["data_root"], tmp_path, sites=[1], device="cpu")
    one = np.load(Path(dest) / "pred_test.npy")
    both = np.load(pred_dir(runs["out"], runs, 0) / "pred_test.npy")
    assert one.shape == both.shape and not np.allclose(one, both, atol=1e-5)
    rd = run_dir(runs, 0)
    model = create_model(**dict(torch.load(rd / "checkpoints" / "best.pth", weights_only=False)["model_params"]))
    model.load_state_dict(load_checkpoint(rd / "checkpoints" / "best.pth"))
    dp = dict(yaml.safe_load((rd / "config.yml").read_text())["data_params"], valid_sites=[1])
    x = make_dataset(dp, "valid", csv=Path(runs["data_root"]) / "test.csv", table="test")[0]["features"]
    with torch.no_grad():
        np.testing.assert_allclose(one[0], model.eval()(x)[0].numpy(), atol=1e-4)


def test_flip_tta_changes_logits_not_shape(predictions, tmp_path):
    runs = predictions
    dest = inference.predict_run(run_dir(runs, 0), runs["data_root"], tmp_path, tta="flip", device="cpu")
    flip = np.load(Path(dest) / "pred_test.npy")
    plain = np.load(pred_dir(runs["out"], runs, 0) / "pred_test.npy")
    assert flip.shape == plain.shape and flip.dtype == np.float32
    assert not np.allclose(flip, plain, atol=1e-5)
    assert yaml.safe_load((Path(dest) / "meta.json").read_text())["tta"] == "flip"


def test_unknown_tta_raises(untrained_runs, tmp_path):
    with pytest.raises(DataError, match="unknown tta 'bogus'"):
        predict(untrained_runs, tmp_path / "out", tta="bogus")


def test_no_finished_runs_raises(untrained_runs, tmp_path):
    empty = tmp_path / "empty"
    (empty / "[1,2,3,4,5]" / "fold_0" / "test_resnet").mkdir(parents=True)  # unfinished: no DONE.json
    with pytest.raises(DataError, match=r"no finished runs under .*empty.*test_resnet.*DONE\.json"):
        inference.predict_all(untrained_runs["data_root"], empty, "test_resnet", tmp_path / "out")


def test_checkpoint_channels_must_match_folder(untrained_runs, tmp_path):
    root = tmp_path / "model_root"
    shutil.copytree(run_dir(untrained_runs, 0), root / "[1,2,3,4,6]" / "fold_0" / "test_resnet")
    with pytest.raises(DataError, match=r"trained on channels \[1, 2, 3, 4, 5\] but its folder says \[1, 2, 3, 4, 6\]"):
        inference.predict_all(untrained_runs["data_root"], root, "test_resnet", tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npy"))


def cli(*args):
    return subprocess.Popen([sys.executable, "src/inference.py", "predict-all", *map(str, args)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_predicts_and_fails_cleanly(predictions, tmp_path):
    runs = predictions
    out, empty = tmp_path / "cli_out", tmp_path / "empty"
    empty.mkdir()
    # both start at once: most of each call is importing torch
    good = cli(f"--data_root={runs['data_root']}", f"--model_root={runs['model_root']}",
               f"--model_name={runs['model_name']}", f"--out_dir={out}", "--device=cpu")
    bad = cli(f"--data_root={runs['data_root']}", f"--model_root={empty}", "--model_name=test_resnet",
              f"--out_dir={tmp_path / 'none'}")
    _, good_err = good.communicate(timeout=120)
    _, bad_err = bad.communicate(timeout=120)

    assert good.returncode == 0, good_err[-2000:]
    for k in runs["folds"]:
        np.testing.assert_allclose(np.load(pred_dir(out, runs, k) / "pred_test.npy"),
                                   np.load(pred_dir(runs["out"], runs, k) / "pred_test.npy"), atol=1e-5)

    assert bad.returncode != 0
    assert "Traceback" not in bad_err
    errors = [line for line in bad_err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no finished runs" in errors[0] and str(empty) in errors[0]
    assert bad_err.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "none").exists()
