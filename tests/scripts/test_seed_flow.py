"""The seed's whole flow end to end, once: bin/grid.sh records bin/flow.sh's commands (the bin/ scripts
and CLIs users type) and src/grid.py runs them as Slurm jobs on the test cluster (tests/slurm_cluster.py), with the docs'
command (docs/speed.md: ``ENGINE=slurm MAX_PARALLEL=.. bash bin/grid.sh --partition ..``).

Part I -> Part II -> predict-all -> ensemble -> pseudo labels -> Part III -> predict-all ->
ensemble -> a valid submission.csv that beats chance; every finished run would be skipped by a second run.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cellpipe.engine import grid as engine

REPO = Path(__file__).resolve().parents[2]
CHANNELS = "[1,2,3,4,5]"
MODEL_NAME = "test_resnet"
TINY = {"data_params": {"source_params": {"control_offset": 16}, "image_size": 32, "batch_size": 32},
        "stages": {"warmup": {"num_epochs": 1}, "finetune": {"num_epochs": 3}}}


def _overlay(path: Path, base: str, num_classes: int) -> Path:
    path.write_text(yaml.safe_dump({"_base_": str(REPO / "configs" / base),
                                    "model_params": {"num_classes": num_classes}, **TINY}))
    return path


def grid_flow(env):
    proc = subprocess.run(["bash", "bin/grid.sh", "--partition", "cpu", "--cpus_per_job", "1", "--mem_gb", "4",
                           "--poll_s", "0.2", "--queue_poll_s", "1"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_seed_flow_on_the_grid(demo_root, demo_csv, tmp_path, slurm):
    logs, csv = tmp_path / "logs", tmp_path / "csv"
    subprocess.run(["cp", "-r", str(demo_csv), str(csv)], check=True)
    env = {**slurm.env, "PYTHON": sys.executable, "DATA_DIR": str(demo_root), "LOG_DIR": str(logs),
           "CSV_DIR": str(csv), "MODEL": "timm", "MODEL_NAME": MODEL_NAME, "CHANNELS": CHANNELS, "FOLDS": "0",
           "OVERLAY": str(_overlay(tmp_path / "tiny.yml", "demo.yml", 16)),
           "CONTROL_OVERLAY": str(_overlay(tmp_path / "tiny_control.yml", "demo_control.yml", 4)),
           "ENGINE": "slurm", "MAX_PARALLEL": "2"}
    proc = grid_flow(env)
    assert "0 GPU(s) per job by default" in proc.stderr
    jobs = engine.read_grid(logs / "grid" / "jobs.jsonl")
    assert len(jobs) == 1 + 1 + 3 + 1 + 2  # Part I, Part II, predict/ensemble/pseudo, Part III, predict/ensemble
    summary = json.loads((logs / "grid" / "grid_summary.json").read_text())
    assert summary["done"] == list(range(len(jobs))) and not summary["failed"]
    # every job ran as its own Slurm job, with its own submitit log folder; the CPU partition's
    # default is no GPU
    assert len(list((logs / "grid" / "engine").glob("*/*_result.pkl"))) == len(jobs)

    part1 = logs / "pretrained_controls" / CHANNELS / MODEL_NAME
    part2 = [logs / "non_pseudo" / CHANNELS / "fold_0" / MODEL_NAME]
    part3 = [logs / "pseudo" / CHANNELS / "fold_0" / MODEL_NAME]
    assert json.loads((part1 / "DONE.json").read_text())["num_classes"] == 4
    for run in [*part2, *part3]:
        done = json.loads((run / "DONE.json").read_text())
        assert done["num_classes"] == 16 and done["channels"] == [1, 2, 3, 4, 5]
        assert (run / "finetune" / "valid.csv").is_file() and list(run.rglob("events.out.tfevents*"))
    # order: each part started after what it reads was finished; Part II and III start from Part I
    for run in [*part2, *part3]:
        assert (part1 / "DONE.json").stat().st_mtime < (run / "config.yml").stat().st_mtime
        assert str(part1 / "checkpoints" / "best.pth") in (run / "config.yml").read_text()
    for run in part3:
        assert (csv / "pseudo" / "train_0.csv").stat().st_mtime < (run / "config.yml").stat().st_mtime
        assert max((r / "DONE.json").stat().st_mtime for r in part2) < (run / "config.yml").stat().st_mtime
    pseudo_train = pd.read_csv(csv / "pseudo" / "train_0.csv")
    assert set(pseudo_train["dataset"]) == {"train", "test"}
    cfg = yaml.safe_load((part3[0] / "config.yml").read_text())  # Part III trained on the pseudo-label fold
    assert cfg["data_params"]["source_params"]["dataset"] == "pseudo"
    assert cfg["data_params"]["train_csv"] == f"{csv}/pseudo/train_0.csv"
    assert f"train samples: {len(pseudo_train)}" in (part3[0] / "train.log").read_text()

    test = pd.read_csv(demo_root / "test.csv")
    logits = np.load(logs / "predictions" / "non_pseudo" / CHANNELS / "fold_0" / MODEL_NAME / "pred_test.npy")
    assert logits.shape == (len(test), 16) and logits.dtype == np.float32
    sub = pd.read_csv(logs / "ensemble" / "pseudo" / "submission.csv")
    assert sorted(sub["id_code"]) == sorted(test["id_code"]) and sub["sirna"].between(0, 15).all()
    merged = sub.merge(test, on="id_code")  # the assignment gives each siRNA at most one well per test plate
    assert not merged.duplicated(["experiment", "plate", "sirna"]).any()
    # held-out test labels (never used by the flow): the final submission beats chance (1/16) clearly
    truth = pd.read_csv(demo_root / "test_labels.csv").set_index("id_code")["sirna"]
    accuracy = float((sub.set_index("id_code")["sirna"] == truth[sub["id_code"]].to_numpy()).mean())
    oof = pd.read_csv(logs / "ensemble" / "non_pseudo" / "oof_accuracy.csv").set_index("experiment")
    print(f"seed flow: Part II OOF assigned {oof.loc['ALL', 'acc_assigned']:.3f}, final test accuracy {accuracy:.3f}")
    assert accuracy > 3 / 16 and oof.loc["ALL", "acc_assigned"] > 3 / 16

    # a second grid run skips the finished training runs: the rule src/grid.py's run applies to every job
    trains = [j for j in jobs if j["argv"][0].endswith("train.py")]
    assert len(trains) == 3 and all(engine.finished(j) for j in trains)
    assert not any(engine.finished(j) for j in jobs if j not in trains)  # the others always rerun (and skip themselves)
