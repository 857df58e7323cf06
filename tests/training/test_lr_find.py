"""src/lr_find.py: the learning-rate range test and its suggestion."""
import json

import numpy as np
import pandas as pd
import pytest

import lr_find
from cellpipe.demo.generic import write_manifest
from cellpipe.training.lr_find import suggest


def test_the_suggestion_is_the_steepest_descent_capped_at_a_tenth_of_the_minimum():
    lr = np.logspace(-6, 0, 61)
    x = np.log10(lr)
    smoothed = 2 - np.tanh(2 * (x + 3)) + np.exp(3 * (x + 1))  # falls fastest at 1e-3, lowest near 1e-1.6
    advice = suggest(pd.DataFrame({"lr": lr, "smoothed": smoothed}))
    assert advice["steepest"] == pytest.approx(1e-3, rel=0.3)
    assert advice["min_over_10"] == pytest.approx(lr[smoothed.argmin()] / 10)
    assert advice["suggested"] == min(advice["steepest"], advice["min_over_10"])
    assert suggest(pd.DataFrame({"lr": [1e-3, 1e-2], "smoothed": [1.0, 0.5]}))["suggested"] is None


@pytest.mark.slow
def test_the_range_test_runs_on_a_config_and_suggests_a_rate_on_the_descent(tmp_path):
    root = write_manifest(tmp_path / "data", per_class=8).parent
    out = tmp_path / "lr"
    assert lr_find.main(["--config", "configs/classify.yml", "--overlay", "configs/model/compact.yml", "--overlay",
                         "configs/data/manifest.yml", "--overlay", "configs/tiny.yml", f"--data_params/root={root}",
                         "--out_dir", str(out), "--steps", "40"]) == 0
    table = pd.read_csv(out / "lr_find.csv")
    advice = json.loads((out / "lr_find.json").read_text())
    assert (np.diff(table["lr"]) > 0).all() and table["lr"].iloc[0] == pytest.approx(1e-6)
    assert 1e-6 < advice["suggested"] < 1.0 and (out / "lr_find.png").stat().st_size > 5000
    at = table.iloc[(table["lr"] - advice["suggested"]).abs().argmin()]
    assert at["smoothed"] < table["smoothed"].iloc[0]  # the loss already falls there
    with pytest.raises(SystemExit, match="--stage polish"):
        lr_find.main(["--config", "configs/classify.yml", "--overlay", "configs/data/manifest.yml",
                      f"--data_params/root={root}", "--out_dir", str(out), "--stage", "polish"])
