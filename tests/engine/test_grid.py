"""The grid scheduler: dependencies from the commands' paths, the grid file and its errors (the whole seed
flow on submitit's LocalExecutor is tests/scripts/test_seed_flow.py)."""
from pathlib import Path

import pytest

from cellpipe.engine import grid as engine

REPO = Path(__file__).resolve().parents[2]


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




def test_gpus_are_counted_from_slurm_gres_strings():
    from cellpipe.engine.grid import gres_gpus

    assert gres_gpus("gpu:4") == 4 and gres_gpus("gpu:a100:2(S:0-1),gpu:v100:1") == 3
    assert gres_gpus("(null)") == 0 and gres_gpus("gpu") == 1 and gres_gpus("mps:100,gpu:2") == 2
