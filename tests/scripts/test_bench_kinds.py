"""bench/bench_kinds.py end to end on a tiny row: the project's commands and the plain CNN on the same splits."""
import json
import subprocess

import pandas as pd
import pytest

from conftest import REPO, run_bench

pytestmark = pytest.mark.slow


def test_kinds_table_and_candidates_from_the_real_commands(tmp_path):
    row = {"kind": "manifest", "source": "manifest", "data_config": "configs/data/manifest.yml", "metric": "accuracy01",
           "data": {"n_classes": 4, "per_class": 60, "size": 24, "hard": 0.3},
           "train": ["--data_params/image_size=24", "--model_params/model_name=cnn3_w16",
                     "--stages/finetune/num_epochs=3"],
           "candidates": {"flip": {"predict": ["--tta", "flip"]}}}
    cfg = {"model_config": "configs/model/compact.yml", "plain": {"width": 16}, "rows": {"small_rgb": row}}
    cmd, out = run_bench("bench_kinds.py", cfg, tmp_path)
    table = pd.read_csv(out / "kinds.csv")
    assert table["row"].tolist() == ["small_rgb"] and table["kind"].tolist() == ["single"]  # kind: from the run
    # 1 + 3 epochs on 4 easy classes (36 test images): the recipe is well above the majority class; the
    # plain CNN's last epoch at a constant rate may not be (it is scored, not judged, here)
    truth = pd.read_csv(out / "small_rgb" / "test_truth.csv")["label"]
    majority = truth.value_counts(normalize=True).max()
    assert table["project"][0] > majority + 0.15 and 0 < table["plain"][0] <= 1, (majority, table.to_dict())
    assert table["wall_ratio"][0] > 0 and table["epoch_ratio"][0] > 0
    detail = json.loads((out / "small_rgb" / "row.json").read_text())
    assert set(detail["project_timings"]) == {"train_classify", "inference", "ensemble", "epochs"}
    run = next((out / "small_rgb" / "project" / "logs").rglob("DONE.json")).parent
    assert run.name == "cnn3_w16" and pd.read_csv(run / "history.csv")["seconds"].gt(0).all()
    # candidates: ranked on the validation split; the test split is never scored
    sel = tmp_path / "sel"
    r = subprocess.run(cmd + ["--candidates_dir", str(sel)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ranked = pd.read_csv(sel / "candidates.csv")
    assert ranked["candidate"].tolist() == ["flip"] and ranked["valid_accuracy01"].between(0, 1).all()
    scores = json.loads((sel / "small_rgb" / "flip" / "ensemble" / "oof_scores.json").read_text())
    assert "oof_accuracy01" in scores and not any(k.startswith("test_") for k in scores)
    meta = json.loads(next((sel / "small_rgb" / "flip" / "predictions").rglob("meta.json")).read_text())
    assert meta["tta"] == "flip"
