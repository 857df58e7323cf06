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

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4
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
def test_kill_and_resume_ends_like_an_uninterrupted_run(tmp_path):
    # with the stateful helpers: EMA, mixup (own generator), per-epoch history; the resume state is the
    # same for every target kind (the task only decides the loss and the metrics)
    root, data_config = write_manifest(tmp_path / "data", per_class=12).parent, "manifest.yml"
    extra = ["--state_params/ema_decay=0.9", "--mix_params/mode=mixup"]
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
    # the same epochs and metrics; only each epoch's wall time ("seconds") differs from run to run
    pd.testing.assert_frame_equal(*(pd.read_csv(r / "history.csv").drop(columns="seconds") for r in (whole, killed)))
    assert not (killed / "finetune" / "checkpoints" / "resume.pth").exists()  # removed once the stage is done


def test_one_process_per_run_folder_and_stale_locks_are_taken_over(tmp_path):
    from cellpipe.core.errors import DataError
    from cellpipe.core.runlock import LOCK_FILE, run_lock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, 'src');"
                               "from cellpipe.core.runlock import run_lock\n"
                               f"with run_lock({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(60)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=f"in use by pid {holder.pid} on "):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / LOCK_FILE).is_file()  # left behind by the killed holder ...
    with run_lock(tmp_path):  # ... and taken over
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_FILE).read_text()


def tiny_run(root, logdir, *extra):
    import train

    return train.main(["--config", str(REPO / "configs/classify.yml"), "--overlay",
                       str(REPO / "configs/data/manifest.yml"), "--overlay", str(REPO / "configs/tiny.yml"),
                       "--logdir", str(logdir), f"--data_params/root={root}", *extra])


@pytest.mark.slow
def test_force_ignores_the_resume_state(tmp_path):
    root = write_manifest(tmp_path / "data", per_class=6).parent
    resume = tmp_path / "run" / "finetune" / "checkpoints" / "resume.pth"
    resume.parent.mkdir(parents=True)
    resume.write_bytes(b"left by a killed run of another model")
    with pytest.raises(SystemExit, match="cannot resume from .*resume.pth"):
        tiny_run(root, tmp_path / "run")
    assert tiny_run(root, tmp_path / "run", "--force") == 0  # as its error message says
    assert (tmp_path / "run" / "DONE.json").is_file() and not resume.exists()


def test_full_or_unwritable_output_fails_before_training(tmp_path, monkeypatch):
    import shutil as shutil_module
    from collections import namedtuple

    root = write_manifest(tmp_path / "data", per_class=6).parent
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(SystemExit, match="not enough free space in .*run: 0 MiB free, this run's checkpoints"):
        tiny_run(root, tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*DONE.json")) and not list((tmp_path / "run").rglob("*.pth"))
    monkeypatch.undo()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="output folder .*file/run is not writable"):
        tiny_run(root, tmp_path / "file" / "run")


def wait_for(path_glob_root: Path, pattern: str, proc, timeout=120):
    deadline = time.time() + timeout
    while not list(path_glob_root.glob(pattern)):
        assert proc.poll() is None, f"ended before {pattern} appeared"
        assert time.time() < deadline
        time.sleep(0.01)


def outputs(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_killed_predict_all_and_ensemble_rerun_to_the_same_files(tmp_path, untrained_runs):
    data, model_root = untrained_runs["data_root"], untrained_runs["model_root"]
    predict = [sys.executable, "src/inference.py", "predict-all", "--data_root", str(data), "--model_root",
               str(model_root), "--model_name", untrained_runs["model_name"], "--tta", "d4"]
    subprocess.run(predict + ["--out_dir", str(tmp_path / "ref")], cwd=REPO, check=True, capture_output=True)
    out = tmp_path / "pred"
    proc = subprocess.Popen(predict + ["--out_dir", str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(out, "*/fold_0/*/pred_test.npy", proc)  # the first run is done, the second is not
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("*/fold_1/*/pred_test.npy"))
    partial = outputs(out)
    reference = outputs(tmp_path / "ref")
    # what the kill left holds no half-written file under a final name
    assert all(partial[p] == reference[p] for p in partial if not p.name.startswith("."))
    subprocess.run(predict + ["--out_dir", str(out)], cwd=REPO, check=True, capture_output=True)
    assert {p: b for p, b in outputs(out).items() if not p.name.startswith(".")} == reference

    ensemble = [sys.executable, "src/ensemble.py", "--data_root", str(data), "--pred_dirs", str(out)]
    subprocess.run(ensemble + ["--out_dir", str(tmp_path / "ens_ref")], cwd=REPO, check=True, capture_output=True)
    ens = tmp_path / "ens"
    proc = subprocess.Popen(ensemble + ["--out_dir", str(ens)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(ens, "test_probs.npy", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reference = outputs(tmp_path / "ens_ref")
    assert all(b == reference[p] for p, b in outputs(ens).items() if not p.name.startswith("."))
    subprocess.run(ensemble + ["--out_dir", str(ens)], cwd=REPO, check=True, capture_output=True)
    assert {p: b for p, b in outputs(ens).items() if not p.name.startswith(".")} == reference
