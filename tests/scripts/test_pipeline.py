"""End to end: the real bin/ scripts and CLIs on tiny generated data (32 px, 1+1 epochs).

Part I -> Part II -> predict-all -> ensemble -> pseudo labels -> Part III ->
predict-all -> ensemble -> a valid submission.csv; then a re-run is skipped.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
CHANNELS = "[1,2,3,4,5]"
MODEL_NAME = "test_resnet"
TINY = ["--data_params/source_params/control_offset=16", "--data_params/image_size=32", "--data_params/batch_size=32",
        "--stages/warmup/num_epochs=1", "--stages/finetune/num_epochs=1"]


def sh(args, env=None, **kw):
    """Run a command from the repo root; fail the test with its output on error."""
    proc = subprocess.run(args, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def py(script, *args):
    return sh([sys.executable, f"src/{script}", *map(str, args)])


@pytest.mark.slow
def test_whole_pipeline(demo_root, tmp_path):
    csv, logs, preds = tmp_path / "csv", tmp_path / "logs", tmp_path / "preds"
    env = {"PYTHON": sys.executable, "DATA_DIR": str(demo_root), "LOG_DIR": str(logs), "CSV_DIR": str(csv),
           "PSEUDO_CSV_DIR": str(csv / "pseudo"), "MODEL": "timm", "MODEL_NAME": MODEL_NAME,
           "CHANNELS": CHANNELS, "FOLDS": "0"}
    py("make_folds.py", "--data_root", demo_root, "--out_dir", csv, "--n_folds", 3, "--seed", 0)

    sh(["bash", "bin/train_control.sh", *TINY], env={**env, "OVERLAY": "configs/demo_control.yml"})
    control = logs / "pretrained_controls" / CHANNELS / MODEL_NAME
    assert json.loads((control / "DONE.json").read_text())["num_classes"] == 4

    sh(["bash", "bin/train.sh", *TINY, "--model_params/num_classes=16"], env={**env, "OVERLAY": "configs/demo.yml"})
    run = logs / "non_pseudo" / CHANNELS / "fold_0" / MODEL_NAME
    done = json.loads((run / "DONE.json").read_text())
    assert 0.0 <= done["valid"]["accuracy01"] <= 1.0
    cfg = (run / "config.yml").read_text()
    assert str(control / "checkpoints" / "best.pth") in cfg  # Part II started from Part I
    assert (run / "finetune" / "valid.csv").is_file(), "per-epoch CSV logs missing"
    assert list(run.rglob("events.out.tfevents*")), "TensorBoard events missing"

    py("inference.py", "predict-all", "--data_root", demo_root, "--model_root", logs / "non_pseudo",
       "--model_name", MODEL_NAME, "--out_dir", preds / "non_pseudo")
    test_rows = len(pd.read_csv(demo_root / "test.csv"))
    logits = np.load(preds / "non_pseudo" / CHANNELS / "fold_0" / MODEL_NAME / "pred_test.npy")
    assert logits.shape == (test_rows, 16) and logits.dtype == np.float32

    py("ensemble.py", "--data_root", demo_root, "--pred_dirs", preds / "non_pseudo", "--out_dir", tmp_path / "ens_np")
    py("make_pseudo.py", "--data_root", demo_root, "--ensemble_dir", tmp_path / "ens_np",
       "--csv_dir", csv, "--out_dir", csv / "pseudo")
    pseudo_train = pd.read_csv(csv / "pseudo" / "train_0.csv")
    assert set(pseudo_train["dataset"]) == {"train", "test"}

    sh(["bash", "bin/train_pseudo.sh", *TINY, "--model_params/num_classes=16"],
       env={**env, "OVERLAY": "configs/demo.yml"})
    assert (logs / "pseudo" / CHANNELS / "fold_0" / MODEL_NAME / "DONE.json").exists()

    py("inference.py", "predict-all", "--data_root", demo_root, "--model_root", logs / "pseudo",
       "--model_name", MODEL_NAME, "--out_dir", preds / "pseudo")
    py("ensemble.py", "--data_root", demo_root, "--pred_dirs", preds / "pseudo", "--out_dir", tmp_path / "ens_p")
    sub = pd.read_csv(tmp_path / "ens_p" / "submission.csv")
    test = pd.read_csv(demo_root / "test.csv")
    assert sorted(sub["id_code"]) == sorted(test["id_code"])
    assert sub["sirna"].between(0, 15).all()
    # the assignment gives each siRNA at most one well per test plate
    merged = sub.merge(test, on="id_code")
    assert not merged.duplicated(["experiment", "plate", "sirna"]).any()

    # a re-run of a finished script is skipped: checkpoints stay untouched
    best = run / "checkpoints" / "best.pth"
    before = best.stat().st_mtime_ns
    proc = sh(["bash", "bin/train.sh", *TINY, "--model_params/num_classes=16"],
              env={**env, "OVERLAY": "configs/demo.yml"})
    assert best.stat().st_mtime_ns == before
    assert "already finished" in proc.stderr


def test_channel_lists_are_not_globbed(tmp_path):
    """A file named like a glob match ('1') must not replace a channel list in bin/ loops."""
    (tmp_path / "1").write_text("")
    env = {"PYTHON": "echo", "CHANNELS": "[1,2,3,4,5] [1]", "FOLDS": "0", "LOG_DIR": "L", "PRETRAINED_CONTROL": ""}
    proc = subprocess.run(["bash", str(REPO / "bin" / "train.sh")], cwd=tmp_path, env={**os.environ, **env},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "--data_params/channels=[1,2,3,4,5]" in lines[0]
    assert "--data_params/channels=[1]" in lines[1]
    assert "--model_params/weight= " in lines[0] + " "  # empty PRETRAINED_CONTROL -> no weight
