"""ArcFace and the cell-type input: start-up checks of train.py, and one real run with both."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import train
from conftest import tiny_train_args


def test_arcface_and_context_are_checked_before_training(tmp_path, demo_root, demo_csv, capsys):
    args = tiny_train_args(demo_root, demo_csv, 0, tmp_path / "run")
    assert train.main(args + ["--model_params/arcface=true"]) == 2  # centres without their loss
    assert "ArcFaceCombined and model_params/arcface=true go together" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train.main(args + ["--model_params/context_column=nope"])
    assert "'model_params/context_column'='nope'" in str(exit_info.value.code)
    assert not (tmp_path / "run" / "DONE.json").exists()


@pytest.mark.slow
def test_arcface_with_cell_type_context_learns_and_predicts(tmp_path, demo_root, demo_csv):
    from cellpipe.inference.predict import predict_run

    run = tmp_path / "ctx" / "[1,2,3,4,5]" / "fold_0" / "m"
    args = tiny_train_args(demo_root, demo_csv, 0, run) + ["--stages/finetune/num_epochs=8"]
    assert train.main(args + ["--model_params/context_column=cell_type", "--model_params/arcface=true",
                              "--criterion_params/criterion=ArcFaceCombined"]) == 0
    state = torch.load(run / "checkpoints" / "best.pth", weights_only=False)
    assert state["model_params"]["context_values"] == ["HEPG2", "HUVEC"]
    assert state["model_state_dict"]["context.weight"].shape[0] == 2
    assert state["model_state_dict"]["arc"].shape[0] == 16 and state["model_params"]["arcface"] is True
    done = json.loads((run / "DONE.json").read_text())
    print(f"arcface + context: valid top-1 {done['valid_top1_final']:.3f}, majority {done['baseline_top1_majority']:.3f}")
    assert done["valid_top1_final"] > 3 * done["baseline_top1_majority"]  # 0.375 vs 0.0625 when measured
    dest = predict_run(run, demo_root, tmp_path / "pred", adabn="plate")
    logits = np.load(dest / "pred_test.npy")
    assert logits.shape == (len(pd.read_csv(demo_root / "test.csv")), 16) and np.isfinite(logits).all()
