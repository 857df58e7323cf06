"""ReduceLROnPlateau as a stage scheduler: stepped once per epoch on the main validation metric, and
its counters survive a resume like every scheduler's."""
import pandas as pd
import pytest
import torch

import train
from cellpipe.demo.generic import write_manifest
from cellpipe.training.optim import create_scheduler


def test_plateau_state_survives_a_save_and_load():
    def make():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, create_scheduler(opt, {"scheduler": "ReduceLROnPlateau", "factor": 0.5, "patience": 1}, 5, 3)

    opt, sched = make()
    assert sched.per_epoch and sched.mode == "max"
    for score in (0.5, 0.6, 0.6):  # one epoch without a better score: patience 1 not yet exceeded
        sched.step(score)
    again_opt, again = make()
    again.load_state_dict(sched.state_dict())
    again_opt.load_state_dict(opt.state_dict())
    for s in (sched, again):
        s.step(0.6)  # the second epoch without: halved, in the original and the resumed one alike
    assert opt.param_groups[0]["lr"] == again_opt.param_groups[0]["lr"] == 0.5
    minimizing = create_scheduler(make()[0], {"scheduler": "ReduceLROnPlateau"}, 5, 3, minimize=True)
    assert minimizing.mode == "min"


@pytest.mark.slow
def test_a_stage_with_reduce_on_plateau_halves_the_lr_after_an_epoch_without_progress(tmp_path):
    root = write_manifest(tmp_path / "data", per_class=8).parent
    assert train.main(["--config", "configs/classify.yml", "--overlay", "configs/data/manifest.yml", "--overlay",
                       "configs/tiny.yml", "--logdir", str(tmp_path / "run"), f"--data_params/root={root}",
                       "--stages/finetune/num_epochs=5", "--stages/finetune/optimizer_params/lr=0.01",
                       "--stages/finetune/scheduler_params={scheduler: ReduceLROnPlateau, factor: 0.5, patience: 0}"]) == 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    fine = history[history["stage"] == "finetune"].reset_index(drop=True)
    lr, score = fine["lr"].tolist(), fine["valid_accuracy01"].tolist()
    assert lr[0] == pytest.approx(0.01)
    for e in range(1, len(fine)):  # patience 0: an epoch that does not beat the best so far halves the lr
        improved = score[e] > max(score[:e])  # (the lr column is the lr after that epoch's step)
        assert lr[e] == pytest.approx(lr[e - 1] * (1.0 if improved else 0.5)), (e, lr, score)
    assert min(lr) < 0.01  # the sequence above did reduce it
