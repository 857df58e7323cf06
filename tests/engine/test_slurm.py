"""The grid engine on a real single-node Slurm (tests/slurm_cluster.py): job arrays, a failing job
and its dependents, scancel, a node failure with requeue, the GPU request on a GPU-less partition,
and the same grid on the local engine giving the same summary."""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
GRID = [sys.executable, str(REPO / "src" / "grid.py")]
JOB = textwrap.dedent("""
    import argparse, pathlib, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--out_dir"); p.add_argument("--fail", type=int, default=0)
    p.add_argument("--steps", type=int, default=1); p.add_argument("--step_s", type=float, default=0)
    p.add_argument("inputs", nargs="*")
    a = p.parse_args()
    out = pathlib.Path(a.out_dir); out.mkdir(parents=True, exist_ok=True)
    with open(out / "attempts", "a") as f:
        f.write("attempt\\n")
    if a.fail:
        sys.exit("this job was asked to fail")
    for k in range(len(list(out.glob("step_*"))), a.steps):  # resumable: steps already written are kept
        time.sleep(a.step_s)
        (out / f"step_{k}").write_text("")
    (out / "DONE").write_text("")
""")


def _grid(tmp_path, name, jobs):
    script = tmp_path / "job.py"
    tmp_path.mkdir(parents=True, exist_ok=True)
    script.write_text(JOB)
    grid = tmp_path / name / "jobs.jsonl"
    subprocess.run(GRID + ["new", str(grid)], check=True, cwd=tmp_path)
    for args in jobs:
        subprocess.run(GRID + ["add", str(grid), str(script), *args], check=True, cwd=tmp_path)
    return grid


def _run(grid, engine, env, *extra, timeout=300):
    return subprocess.run(GRID + ["run", str(grid), "--engine", engine, "--poll_s", "0.2", "--queue_poll_s", "1",
                                  *extra], cwd=grid.parent.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_an_array_a_failure_and_its_dependents_mean_the_same_on_slurm_and_locally(slurm, tmp_path):
    jobs = [["--out_dir", "out/a"], ["--out_dir", "out/b", "--fail", "1"], ["--out_dir", "out/c", "./out/b"],
            ["--out_dir", "out/d"]]
    summaries = {}
    for engine in ("slurm", "local"):
        grid = _grid(tmp_path / engine, "grid", jobs)
        r = _run(grid, engine, slurm.env, "--max_parallel", "3", "--gpus_per_job", "0")
        assert r.returncode == 1, r.stderr[-3000:]
        summaries[engine] = json.loads((grid.parent / "grid_summary.json").read_text())
        assert "FAILED [1] job.py -> out/b" in r.stderr, r.stderr[-3000:]
        logs = "".join(p.read_text() for p in (grid.parent / "engine").rglob("*_log.err"))
        assert "this job was asked to fail" in logs  # the job's own stderr, in the log the error line names
        assert not (grid.parent.parent / "out" / "c").exists()  # a failed job's dependents never start
    assert summaries["slurm"] == summaries["local"] == {"done": [0, 3], "skipped": [], "failed": [1], "blocked": [2]}
    # the three jobs ready together went to Slurm as one job array (ids N_0, N_1, N_2)
    folders = [p.name for p in (tmp_path / "slurm" / "grid" / "engine").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    assert len({f.split("_")[0] for f in folders}) == 1 and len(folders) == 3, folders
    # without accounting the state comes from the queue: the failure is named with its Slurm state
    r = _run(_grid(tmp_path / "again", "grid", jobs[1:2]), "slurm", slurm.env, "--gpus_per_job", "0")
    assert "[Slurm state FAILED]" in r.stderr and "Bypassing sacct" not in r.stderr, r.stderr[-2000:]


def test_gpu_requests_on_a_partition_without_gpus(slurm, tmp_path):
    grid = _grid(tmp_path, "grid", [["--out_dir", "out/a"]])
    r = _run(grid, "slurm", slurm.env, "--gpus_per_job", "1")
    assert r.returncode == 1 and not (tmp_path / "out" / "a").exists()
    assert r.stderr.strip().splitlines()[-1].startswith("error: grid run: --gpus_per_job 1 cannot be met by partition")
    assert "--gpus_per_job 0" in r.stderr
    r = _run(grid, "slurm", slurm.env)  # the default asks for the GPUs the partition has: none here
    assert r.returncode == 0 and (tmp_path / "out" / "a" / "DONE").is_file(), r.stderr[-2000:]
    assert "0 GPU(s) per job by default" in r.stderr


def test_a_cancelled_job_ends_the_grid_with_its_state(slurm, tmp_path):
    grid = _grid(tmp_path, "grid", [["--out_dir", "out/slow", "--steps", "600", "--step_s", "0.2"]])
    driver = subprocess.Popen(GRID + ["run", str(grid), "--engine", "slurm", "--gpus_per_job", "0", "--poll_s", "0.2",
                                      "--queue_poll_s", "1"], cwd=tmp_path, env=slurm.env, stderr=subprocess.PIPE,
                              text=True)
    slurm.wait(lambda: (tmp_path / "out" / "slow" / "step_0").exists(), "the job to run")
    job = next(j for j, s in slurm.jobs("R").items())
    slurm.run("scancel", job)
    err = driver.communicate(timeout=120)[1]
    assert driver.returncode == 1 and "[Slurm state CANCELLED]" in err, err[-2000:]
    assert json.loads((grid.parent / "grid_summary.json").read_text())["failed"] == [0]


def test_a_job_on_a_failed_node_is_requeued_and_resumes(slurm, tmp_path):
    out = tmp_path / "out" / "long"
    grid = _grid(tmp_path, "grid", [["--out_dir", "out/long", "--steps", "30", "--step_s", "0.2"]])
    driver = subprocess.Popen(GRID + ["run", str(grid), "--engine", "slurm", "--gpus_per_job", "0", "--poll_s", "0.2",
                                      "--queue_poll_s", "1"], cwd=tmp_path, env=slurm.env, stderr=subprocess.PIPE,
                              text=True)
    slurm.wait(lambda: (out / "step_3").exists(), "the job to run a few steps")
    slurm.node_failure()
    err = driver.communicate(timeout=240)[1]
    assert driver.returncode == 0, err[-3000:]
    steps = len(list(out.glob("step_*")))
    attempts = (out / "attempts").read_text().split()
    assert (out / "DONE").is_file() and steps == 30 and len(attempts) == 2, (steps, attempts)
    assert json.loads((grid.parent / "grid_summary.json").read_text())["done"] == [0]
