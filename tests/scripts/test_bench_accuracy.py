"""bench/bench_accuracy.py end to end on a tiny configuration: its rows run the real commands."""
import subprocess

import pandas as pd
import pytest

from conftest import REPO, run_bench

pytestmark = pytest.mark.slow


def test_ablation_table_from_the_real_commands(tmp_path):
    cfg = {"data": {"n_sirnas": 8, "n_controls": 2, "image_size": 32, "cell_types": 1, "train_experiments_per_type": 3,
                    "test_experiments_per_type": 1, "seed": 0},
           "folds": [0], "channels": "[1,2,3,4,5,6]", "overlay": "configs/demo.yml",
           "train": ["--model_params/num_classes=8", "--data_params/source_params/control_offset=8",
                     "--stages/finetune/num_epochs=1", "--data_params/image_size=32"],
           "rows": {"rounds": {"predict": ["--adabn", "plate"],
                               "pseudo_rounds": {"rounds": 1, "top_step": 2, "unit": "plate"}}}}
    cmd, out = run_bench("bench_accuracy.py", cfg, tmp_path)
    table = pd.read_csv(out / "ablation.csv")
    assert table["row"].tolist() == ["rounds"]
    # the pseudo round trained on the 2 most confident test plates, labelled by the Part II ensemble
    chosen = pd.read_csv(out / "rounds" / "csv" / "pseudo_r1" / "pseudo_experiments.csv")
    assert chosen["chosen"].sum() == 2 and chosen["unit"].str.contains("/Plate").all()
    # the bench's machinery, not its scores: 8 wells per fold cannot measure accuracy (the seed flow's
    # test and `make bench-accuracy` do); the scores are fractions of those wells
    for col in ("oof_argmax", "oof_assigned", "test_argmax", "test_assigned"):
        assert table[col].between(0, 1).all(), col
    assert "oof_gain" not in table  # gains are against a baseline row, and this table has none
    meta = (out / "rounds" / "predictions").rglob("meta.json")
    assert all('"adabn": "plate"' in m.read_text() for m in meta)
    # a finished row is reused, an unknown row is one clear line
    again = subprocess.run(cmd + ["--rows", "rounds"], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "rounds" in again.stdout
    bad = subprocess.run(cmd + ["--rows", "mixupp"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown row(s) ['mixupp']" in bad.stderr
