"""A grid of commands on a cluster engine (submitit: Slurm job arrays, or local processes).

Jobs are recorded one command per line in a grid file (JSON); ``run`` hands them to the engine:
dependencies come from the paths in the commands (a job waits for every earlier job whose output
folder, --logdir / --out_dir, lies under one of its path arguments or holds it); a training run
whose folder has DONE.json is not submitted; at most ``max_parallel`` jobs run at once; a failed
job's dependents are not started. The command line is src/grid.py.
"""
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Set

from cellpipe.core import layout
from cellpipe.core.errors import ConfigError
from cellpipe.core.fsutil import write_text

log = logging.getLogger("grid")
OUTPUT_FLAGS = ("--logdir", "--out_dir")
DONE_FILE = layout.DONE_FILE


# ------------------------------------------------------------------ the grid file
def read_grid(path) -> List[dict]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path} (start one with `python src/grid.py new {path}`)")
    jobs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                jobs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path} line {n}: not a JSON job ({e.msg})") from None
    return jobs


def add(grid, argv: List[str], cwd: Optional[str] = None) -> dict:
    """Append one command (a script and its arguments) to the grid file."""
    if not argv:
        raise ConfigError("grid add: no command given")
    job = {"argv": list(argv), "cwd": cwd or os.getcwd(), "output": output_of(argv)}
    if job["output"] is None:
        raise ConfigError(f"grid add: the command names no output folder ({' or '.join(OUTPUT_FLAGS)}): "
                          f"{' '.join(argv)}")
    with open(grid, "a") as f:  # one line per job: a crash mid-add loses at most that line
        f.write(json.dumps(job) + "\n")
    return job


def output_of(argv: List[str]) -> Optional[str]:
    for i, a in enumerate(argv):
        for flag in OUTPUT_FLAGS:
            if a == flag and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    return None


def _abs(path: str, cwd: str) -> Path:
    return Path(os.path.normpath(Path(cwd) / path))


def path_arguments(job: dict) -> List[Path]:
    """Every argument that looks like a path (``--k=v`` values too), made absolute."""
    out = []
    for a in job["argv"][1:]:
        value = a.split("=", 1)[1] if a.startswith("--") and "=" in a else a
        if value and not value.startswith("-") and ("/" in value or value.startswith(".")):
            out.append(_abs(value, job["cwd"]))
    return out


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def dependencies(jobs: List[dict]) -> List[Set[int]]:
    """For each job, the earlier jobs whose output it reads (see the module doc)."""
    outputs = [_abs(j["output"], j["cwd"]) for j in jobs]
    deps = []
    for i, job in enumerate(jobs):
        own = outputs[i]
        paths = [p for p in path_arguments(job) if p != own]
        deps.append({k for k in range(i) if any(_related(outputs[k], p) for p in paths)})
    return deps


def finished(job: dict) -> bool:
    """A training run with DONE.json is finished (the other tools skip their finished outputs themselves)."""
    return Path(job["argv"][0]).name == "train.py" and (_abs(job["output"], job["cwd"]) / DONE_FILE).is_file()


# ------------------------------------------------------------------ the engine
def make_executor(engine: str, folder: Path, gpus_per_job: int, timeout_min: int, partition: Optional[str],
                  cpus_per_job: Optional[int], mem_gb: Optional[int], max_parallel: int):
    import submitit

    if engine == "local":
        executor = submitit.LocalExecutor(folder=folder, python=sys.executable)
        executor.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus_per_job)
        return executor
    if engine == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_python=sys.executable)
        params = dict(timeout_min=timeout_min, gpus_per_node=gpus_per_job, slurm_array_parallelism=max_parallel,
                      tasks_per_node=1, nodes=1)
        if partition:
            params["slurm_partition"] = partition
        if cpus_per_job:
            params["cpus_per_task"] = cpus_per_job
        if mem_gb:
            params["mem_gb"] = mem_gb
        executor.update_parameters(**params)
        return executor
    raise ConfigError(f"grid run --engine: unknown engine '{engine}' (local | slurm)")


def default_parallel(engine: str, gpus_per_job: int) -> int:
    if engine != "local" or gpus_per_job == 0:
        return 1
    import torch

    return max(1, torch.cuda.device_count() // gpus_per_job)


def run(grid, engine: str = "local", max_parallel: Optional[int] = None, gpus_per_job: Optional[int] = None,
        timeout_min: int = 1440, partition: Optional[str] = None, cpus_per_job: Optional[int] = None,
        mem_gb: Optional[int] = None, poll_s: float = 2.0) -> Dict[str, List[int]]:
    """Submit every unfinished job once its dependencies finished, at most ``max_parallel`` at a time;
    wait for all. Returns {"done", "failed", "skipped", "blocked"} job numbers (0-based, grid order)."""
    import submitit

    jobs = read_grid(grid)
    deps = dependencies(jobs)
    if gpus_per_job is None:
        import torch

        gpus_per_job = 1 if (engine == "slurm" or torch.cuda.is_available()) else 0
    max_parallel = int(max_parallel or default_parallel(engine, gpus_per_job))
    if max_parallel < 1:
        raise ConfigError(f"grid run --max_parallel: expected at least 1, got {max_parallel}")
    folder = Path(grid).parent / "engine"
    executor = make_executor(engine, folder / "%j", gpus_per_job, timeout_min, partition, cpus_per_job, mem_gb,
                             max_parallel)
    free_gpus = list(range(max_parallel * gpus_per_job)) if engine == "local" else []
    skipped = {i for i, j in enumerate(jobs) if finished(j)}
    done, failed, running = set(skipped), set(), {}  # running: job number -> (submitit job, gpus)
    pending = [i for i in range(len(jobs)) if i not in done]
    log.info("%d jobs: %d finished already, %d to run on %s (at most %d at once)", len(jobs), len(skipped),
             len(pending), engine, max_parallel)
    while pending or running:
        for i, (job, gpus) in list(running.items()):
            if not job.done():
                continue
            del running[i]
            free_gpus += gpus
            try:
                job.result()
                done.add(i)
                log.info("finished [%d] %s", i, describe(jobs[i]))
            except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as e:
                failed.add(i)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.error("FAILED [%d] %s: %s (log: %s)", i, describe(jobs[i]), first, job.paths.stderr)
        blocked = {i for i in pending if deps[i] & failed}
        pending = [i for i in pending if i not in blocked]
        ready = [i for i in pending if deps[i] <= done][:max_parallel - len(running)]
        if ready:
            submitted = []
            if engine == "slurm":
                with executor.batch():  # jobs ready together: one Slurm job array
                    for i in ready:
                        submitted.append((i, executor.submit(command(jobs[i])), []))
            else:  # each local job gets its own GPUs (submitit takes no parameter changes inside a batch)
                for i in ready:
                    gpus = [free_gpus.pop(0) for _ in range(gpus_per_job)]
                    executor.update_parameters(visible_gpus=tuple(gpus))
                    submitted.append((i, executor.submit(command(jobs[i])), gpus))
            for i, job, gpus in submitted:
                running[i] = (job, gpus)
                log.info("started  [%d] %s (engine job %s)", i, describe(jobs[i]), job.job_id)
            pending = [i for i in pending if i not in running]
        if pending and not ready and not running:  # nothing can start: the rest wait on failed jobs
            break
        if running:
            time.sleep(poll_s)
    blocked = sorted(set(range(len(jobs))) - done - failed)
    summary = {"done": sorted(done - skipped), "skipped": sorted(skipped), "failed": sorted(failed),
               "blocked": blocked}
    write_text(json.dumps(summary, indent=2), Path(grid).parent / layout.GRID_SUMMARY)
    return summary


def command(job: dict):
    from submitit.helpers import CommandFunction

    return CommandFunction([sys.executable, *job["argv"]], cwd=job["cwd"], verbose=False)


def describe(job: dict) -> str:
    return f"{Path(job['argv'][0]).name} -> {job['output']}"


def show(grid) -> None:
    jobs = read_grid(grid)
    for i, (job, d) in enumerate(zip(jobs, dependencies(jobs))):
        state = "finished" if finished(job) else "to run"
        print(f"[{i}] {describe(job)}  after {sorted(d) or '-'}  ({state})")
