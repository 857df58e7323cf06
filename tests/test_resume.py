"""A training process killed with SIGKILL mid-stage resumes from its last finished epoch and ends
bit-identical (CPU, fixed seed) to a run that was never interrupted."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cellpipe.demo.generic import write_manifest
from cellpipe.demo.hpa import write_hpa

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6
KILL_AFTER = 2  # finished epochs of the finetune stage before the kill


def command(root, logdir, data_config, extra):
    return [sys.executable, str(REPO / "src" / "train.py"), "--config", str(REPO / "configs/classify.yml"),
            "--overlay", str(REPO / "configs" / "data" / data_config), "--overlay", str(REPO / "configs/tiny.yml"),
            "--logdir", str(logdir), f"--data_params/root={root}", f"--stages/finetune/num_epochs={EPOCHS}", *extra]


def finished_epochs(history: Path, stage: str) -> int:
    try:
        table = pd.read_csv(history)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0
    return int((table["stage"] == stage).sum())


def kill_mid_stage(cmd, logdir: Path) -> None:
    """Start ``cmd``, SIGKILL it once KILL_AFTER finetune epochs are on disk."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while finished_epochs(logdir / "history.csv", "finetune") < KILL_AFTER:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "training too slow"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "best.pth", weights_only=False)["model_state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["single", "multilabel"])
def test_kill_and_resume_ends_like_an_uninterrupted_run(tmp_path, kind):
    if kind == "single":  # with the stateful helpers: EMA, mixup (own generator), per-epoch history
        root, data_config = write_manifest(tmp_path / "data", per_class=12).parent, "manifest.yml"
        extra = ["--state_params/ema_decay=0.9", "--mix_params/mode=mixup"]
    else:
        import make_folds

        root, data_config = write_hpa(tmp_path / "data", n_train=60, n_test=8, size=32, duplicates=0), "hpa.yml"
        make_folds.main(str(root), out_dir=str(tmp_path / "csv"), n_folds=3, source="hpa", target="multilabel")
        extra = [f"--data_params/train_csv={tmp_path}/csv/train_0.csv", f"--data_params/valid_csv={tmp_path}/csv/valid_0.csv"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(root, whole, data_config, extra), cwd=REPO, check=True, capture_output=True)

    kill_mid_stage(command(root, killed, data_config, extra), killed)
    assert (killed / "finetune" / "checkpoints" / "resume.pth").is_file()
    assert not (killed / "finetune" / "STAGE_DONE.json").exists() and not (killed / "DONE.json").exists()
    # the resume state is written after history.csv: a kill between the two redoes that epoch
    done = torch.load(killed / "finetune" / "checkpoints" / "resume.pth", weights_only=False)["steps"][0]
    assert KILL_AFTER - 1 <= done < EPOCHS

    rerun = subprocess.run(command(root, killed, data_config, extra), cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming finetune after epoch {done} (of {EPOCHS})" in rerun.stderr + rerun.stdout
    assert "stage warmup already finished" in rerun.stderr + rerun.stdout
    # the same model and the same per-epoch history as the run that was never killed
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(pd.read_csv(whole / "history.csv"), pd.read_csv(killed / "history.csv"))
    assert not (killed / "finetune" / "checkpoints" / "resume.pth").exists()  # removed once the stage is done
