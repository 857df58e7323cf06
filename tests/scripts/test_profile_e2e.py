"""Profiles end to end with the real commands: `bash bin/demo_profile.sh` (make demo-profile) on a
small generated screen, and training on single-cell crops with bin/train_classify.sh, then cell
profiles averaged per well. Both train briefly and must beat their trivial baselines."""
import os
import subprocess
import sys

import pandas as pd
import pytest

import make_folds
import prep_crops
from conftest import REPO


def sh(cmd, env=None):
    r = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_demo_profile_prints_the_table_and_training_beats_chance(tmp_path):
    out = sh(["bash", "bin/demo_profile.sh"], env={
        "PYTHON": sys.executable, "DEMO_DIR": str(tmp_path), "EPOCHS": "3", "N_SIRNAS": "8",
        "DEMO_ARGS": "--image_size 32 --cell_types 2 --train_experiments_per_type 2 --negative_wells 4 --vignette 0.4"})
    assert "map_activity" in out and "profile demo finished" in out
    prof = tmp_path / "profile" / "profiles"
    table = pd.read_csv(prof / "evaluation.csv").set_index("correction")
    assert list(table.index) == ["none", "center_scale", "pca_whiten", "tvn"]
    # the trained embeddings classify held-out experiments' wells above the majority label's share
    assert table.loc["none", "acc_logistic"] > 2 * table.loc["none", "acc_majority"]
    assert (tmp_path / "profile" / "illum" / "illumination.png").is_file()
    wells = pd.read_parquet(prof / "corrected" / "tvn" / "wells.parquet")
    assert len(wells) == len(pd.read_parquet(prof / "wells.parquet"))


@pytest.mark.slow
def test_a_model_trained_on_single_cells_profiles_wells(demo_root, tmp_path):
    cells = tmp_path / "cells"
    prep_crops.main(root=str(demo_root), out_dir=str(cells), crop_size=16, nucleus_channel=1, sigma=1.0,
                    min_area=4, max_cells=8)
    make_folds.main(str(cells), out_dir=str(tmp_path / "csv"), n_folds=3, seed=0, source="cells")
    sh(["bash", "bin/train_classify.sh", "--data_params/image_size=16", "--stages/warmup/num_epochs=1",
        "--stages/finetune/num_epochs=3"],
       env={"PYTHON": sys.executable, "SOURCE": "cells", "DATA_DIR": str(cells), "LOG_DIR": str(tmp_path / "logs"),
            "CSV_DIR": str(tmp_path / "csv"), "FOLDS": "0"})
    run = next((tmp_path / "logs").rglob("DONE.json")).parent
    history = pd.read_csv(run / "finetune" / "history.csv") if (run / "finetune" / "history.csv").is_file() else None
    sh([sys.executable, "src/profile.py", "--model", str(run), "--out_dir", str(tmp_path / "prof"),
        "--null_size", "100"])
    table = pd.read_csv(tmp_path / "prof" / "evaluation.csv").set_index("correction")
    wells = pd.read_parquet(tmp_path / "prof" / "wells.parquet")
    n_wells = pd.read_parquet(cells / "cells.parquet")["well_id"].nunique()
    assert len(wells) == n_wells  # cells averaged into their wells
    assert table.loc["none", "acc_logistic"] > 2 * table.loc["none", "acc_majority"], (table, history)
