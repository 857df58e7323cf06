"""Time lost to a kill in the middle of a stage: resuming from the last epoch against restarting the stage.

    make bench-resume          # python bench/bench_resume.py [--epochs 12] [--out_dir bench_out/resume]

Trains one Part II run of the demo data (tiny model, 64 px) three times with src/train.py:
uninterrupted (timed per epoch from history.csv); killed with SIGKILL when half of the finetune
epochs are done, then re-run with its resume state (today's behaviour); and killed the same way,
then re-run after deleting the resume state (the old behaviour: the stage restarts). Prints the
rerun times against the work that was left, and checks the resumed model equals the uninterrupted one.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fire
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]


def train_cmd(data, csv, logdir, epochs):
    return [sys.executable, str(REPO / "src/train.py"), "--config", str(REPO / "configs/config.yml"),
            "--overlay", str(REPO / "configs/demo.yml"), "--logdir", str(logdir), f"--data_params/root={data}",
            f"--data_params/train_csv={csv}/train_0.csv", f"--data_params/valid_csv={csv}/valid_0.csv",
            "--model_params/num_classes=32", "--data_params/source_params/control_offset=32",
            f"--stages/finetune/num_epochs={epochs}"]


def run(cmd) -> float:
    start = time.time()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - start


def kill_after(cmd, logdir: Path, epochs_done: int) -> None:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    resume = logdir / "finetune" / "checkpoints" / "resume.pth"
    while True:
        if proc.poll() is not None:
            raise SystemExit("the run ended before it could be killed")
        if resume.is_file():
            try:
                if torch.load(resume, weights_only=False)["steps"][0] >= epochs_done:
                    break
            except Exception:  # noqa: BLE001 - read while being renamed into place: try again
                pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main(out_dir="bench_out/resume", epochs: int = 12):
    out = Path(out_dir)
    data, csv = out / "data", out / "csv"
    if not (data / "train.csv").is_file():
        subprocess.run([sys.executable, "src/make_demo_data.py", "--out_dir", str(data)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([sys.executable, "src/make_folds.py", str(data), "--out_dir", str(csv), "--n_folds", "3"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    half = epochs // 2
    rows = {}
    for name in ("whole", "resumed", "restarted"):
        shutil.rmtree(out / name, ignore_errors=True)
    rows["uninterrupted run"] = run(train_cmd(data, csv, out / "whole", epochs))
    for name in ("resumed", "restarted"):
        logdir = out / name
        kill_after(train_cmd(data, csv, logdir, epochs), logdir, half)
        if name == "restarted":
            (logdir / "finetune" / "checkpoints" / "resume.pth").unlink()
        rows[f"rerun after a kill at epoch {half}/{epochs} ({name})"] = run(train_cmd(data, csv, logdir, epochs))
    # the work left after the kill, from the uninterrupted run's own epoch times
    history = pd.read_csv(out / "whole" / "history.csv")
    total = rows["uninterrupted run"]
    left = total * (epochs - half) / len(history)  # the share of the run's epochs still to do
    print(f"{'':55s} seconds  / work left ({left:.0f} s)")
    for name, seconds in rows.items():
        print(f"{name:55s} {seconds:7.1f}  {seconds / left:5.2f}")
    a = torch.load(out / "whole" / "checkpoints" / "best.pth", weights_only=False)["model_state_dict"]
    b = torch.load(out / "resumed" / "checkpoints" / "best.pth", weights_only=False)["model_state_dict"]
    print("resumed model bit-identical to the uninterrupted one:", all(torch.equal(a[k], b[k]) for k in a))


if __name__ == "__main__":
    fire.Fire(main)
