"""The grid on a cluster engine: bin/grid.sh records the bin/ scripts' commands and src/grid.py runs
them through submitit's LocalExecutor (real processes, the engine's own local mode), in dependency order."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellpipe.engine import grid as engine

REPO = Path(__file__).resolve().parents[2]
CHANNELS = "[1,2,3,4,5]"
MODEL_NAME = "test_resnet"
TINY = {"data_params": {"control_offset": 16, "image_size": 32, "batch_size": 32},
        "stages": {"warmup": {"num_epochs": 1}, "finetune": {"num_epochs": 1}}}


def _job(argv, cwd="/repo"):
    return {"argv": argv, "cwd": cwd, "output": engine.output_of(argv)}


def test_dependencies_come_from_paths():
    jobs = [
        _job(["src/train.py", "--logdir", "logs/pretrained_controls/[1,2]/m"]),
        _job(["src/train.py", "--logdir", "logs/pretrained_controls/[3,4]/m"]),
        _job(["src/train.py", "--logdir", "logs/non_pseudo/[1,2]/fold_0/m",
              "--model_params/weight=logs/pretrained_controls/[1,2]/m/checkpoints/best.pth",
              "--data_params/train_csv=csv/train_0.csv"]),
        _job(["src/inference.py", "predict-all", "--model_root", "logs/non_pseudo", "--out_dir", "preds/np"]),
        _job(["src/make_pseudo.py", "--ensemble_dir", "preds/np", "--csv_dir", "csv", "--out_dir", "csv/pseudo"]),
        _job(["src/train.py", "--logdir", "logs/pseudo/[1,2]/fold_0/m",
              "--data_params/train_csv=csv/pseudo/train_0.csv"]),
    ]
    assert engine.dependencies(jobs) == [set(), set(), {0}, {2}, {3}, {4}]


def test_add_needs_an_output_folder(tmp_path):
    with pytest.raises(engine.ConfigError, match="no output folder"):
        engine.add(tmp_path / "g.jsonl", ["src/ensemble.py", "--data_root", "x"])


def _overlay(path: Path, base: str, num_classes: int) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"_base_": str(REPO / "configs" / base),
                                    "model_params": {"num_classes": num_classes}, **TINY}))
    return path


@pytest.mark.slow
def test_grid_runs_the_seed_flow_on_submitit_local(demo_root, demo_csv, tmp_path):
    logs, csv = tmp_path / "logs", tmp_path / "csv"
    subprocess.run(["cp", "-r", str(demo_csv), str(csv)], check=True)
    env = {**os.environ, "PYTHON": sys.executable, "DATA_DIR": str(demo_root), "LOG_DIR": str(logs),
           "CSV_DIR": str(csv), "MODEL": "timm", "MODEL_NAME": MODEL_NAME, "CHANNELS": CHANNELS, "FOLDS": "0 1",
           "OVERLAY": str(_overlay(tmp_path / "tiny.yml", "demo.yml", 16)),
           "CONTROL_OVERLAY": str(_overlay(tmp_path / "tiny_control.yml", "demo_control.yml", 4)),
           "ENGINE": "local", "MAX_PARALLEL": "2"}
    proc = subprocess.run(["bash", "bin/grid.sh", "--poll_s", "0.2"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = engine.read_grid(logs / "grid" / "jobs.jsonl")
    assert len(jobs) == 1 + 2 + 3 + 2 + 2  # Part I, Part II x 2 folds, predict/ensemble/pseudo, Part III x 2, ...
    summary = json.loads((logs / "grid" / "grid_summary.json").read_text())
    assert summary["done"] == list(range(len(jobs))) and not summary["failed"]
    # the engine ran every job as its own process, with its own submitit log folder
    assert len(list((logs / "grid" / "engine").glob("*/*_result.pkl"))) == len(jobs)

    part1 = logs / "pretrained_controls" / CHANNELS / MODEL_NAME
    part2 = [logs / "non_pseudo" / CHANNELS / f"fold_{k}" / MODEL_NAME for k in (0, 1)]
    part3 = [logs / "pseudo" / CHANNELS / f"fold_{k}" / MODEL_NAME for k in (0, 1)]
    for run in [part1, *part2, *part3]:
        assert (run / "DONE.json").is_file(), run
    # order: each part started after what it reads was finished
    for run in part2:
        assert (part1 / "DONE.json").stat().st_mtime < (run / "config.yml").stat().st_mtime
        assert str(part1 / "checkpoints" / "best.pth") in (run / "config.yml").read_text()
    for run in part3:
        assert (csv / "pseudo" / "train_0.csv").stat().st_mtime < (run / "config.yml").stat().st_mtime
        assert max((r / "DONE.json").stat().st_mtime for r in part2) < (run / "config.yml").stat().st_mtime
    assert (logs / "ensemble" / "pseudo" / "submission.csv").is_file()

    # a second grid run skips the finished training runs
    again = subprocess.run(["bash", "bin/grid.sh", "--poll_s", "0.2"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    summary = json.loads((logs / "grid" / "grid_summary.json").read_text())
    trains = [i for i, j in enumerate(jobs) if j["argv"][0].endswith("train.py")]
    assert summary["skipped"] == trains and not summary["failed"]
