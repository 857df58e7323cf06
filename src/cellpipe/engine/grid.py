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
import re
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
SLURM_ALIVE = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RUNNING", "COMPLETING",
               "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
SLURM_DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
              "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}


def use_queue_state(delay_s: float) -> None:
    """Make submitit read Slurm job state from the queue (``squeue -t all``) instead of ``sacct``:
    a cluster without accounting answers sacct with an error, which submitit bypasses as state
    UNKNOWN forever, so a job that died without a result file (scancel, node failure) was never seen
    to end. Finished jobs stay in the queue for the cluster's MinJobAge (300 s by default); a polled
    job that has left it without a result counts as ended (LEFT_QUEUE). submitit builds array jobs
    as plain SlurmJob objects, so the watcher is replaced on that class (in this process only)."""
    from submitit.slurm import slurm

    class QueueWatcher(slurm.SlurmInfoWatcher):
        _asked = set()

        def _make_command(self):
            ids = {x.split("_")[0] for x in self._registered - self._finished}
            return ["squeue", "-h", "-t", "all", "-o", "%i|%T|%N", "-j", ",".join(sorted(ids))] if ids else None

        def read_info(self, string):
            text = string.decode() if isinstance(string, bytes) else string
            table = "JobID|State|NodeList\n" + "\n".join(line for line in text.splitlines() if line.strip())
            info = super().read_info(table)
            for job_id in self._registered - self._finished:
                if job_id not in info and job_id.split("_")[0] in self._asked:
                    info[job_id] = {"JobID": job_id, "State": "LEFT_QUEUE", "NodeList": ""}
            return info

        def update(self):
            self._asked = {x.split("_")[0] for x in self._registered - self._finished}
            super().update()
            # a failed state may be followed by a requeue (node failure, preemption): keep polling those
            self._finished = {j for j in self._finished if self.get_state(j, "cache") in ("COMPLETED", "LEFT_QUEUE")}

        def is_done(self, job_id, mode="standard"):
            state = _state_word(self.get_state(job_id, mode=mode))
            return state in SLURM_DONE or state == "LEFT_QUEUE"

    if type(slurm.SlurmJob.watcher).__name__ != "QueueWatcher":  # once per process
        slurm.SlurmJob.watcher = QueueWatcher(delay_s=delay_s)
    slurm.SlurmJob.watcher._delay_s = delay_s


def _state_word(state: str) -> str:
    """squeue's state without its qualifiers ("CANCELLED by 0" -> CANCELLED)."""
    return (state.split() or ["UNKNOWN"])[0].upper()


def gres_gpus(gres: str) -> int:
    """GPUs in a node's GRES string: "gpu:4", "gpu:a100:2(S:0-1),gpu:v100:1", "(null)" -> 4, 3, 0."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = item.strip().split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def partition_gpus(partition: Optional[str]) -> Dict[str, int]:
    """GPUs per node of ``partition`` (the default one when None), from sinfo's GRES column."""
    import subprocess

    cmd = ["sinfo", "-h", "-N", "-o", "%N|%G|%P"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError("grid run --engine slurm: sinfo not found (no Slurm client on this machine)") from None
    if out.returncode != 0:
        raise ConfigError(f"grid run --engine slurm: `{' '.join(cmd)}` failed: {out.stderr.strip()}")
    gpus = {}
    for line in out.stdout.splitlines():
        node, gres, part = (line.split("|") + ["", ""])[:3]
        if partition is None and not part.endswith("*"):
            continue  # sinfo marks the default partition with a star
        gpus[node] = gres_gpus(gres)
    if not gpus:
        raise ConfigError(f"grid run --engine slurm: no nodes in partition {partition or '(default)'}")
    return gpus


def resolve_gpus(engine: str, partition: Optional[str], requested: Optional[int]) -> int:
    """GPUs per job: ``requested``, or by default one where there are GPUs (a Slurm partition's nodes,
    or this machine) and none elsewhere. On Slurm a request no node of the partition can meet fails
    here, naming the fix, rather than pending forever."""
    if engine != "slurm":
        if requested is not None:
            return requested
        import torch

        return 1 if torch.cuda.is_available() else 0
    if requested is not None and requested <= 0:
        return 0
    gpus = partition_gpus(partition)
    if requested is None:
        requested = 1 if max(gpus.values()) > 0 else 0
        log.info("partition %s: %d GPU(s) per job by default", partition or "(default)", requested)
    elif max(gpus.values()) < requested:
        raise ConfigError(f"grid run: --gpus_per_job {requested} cannot be met by partition "
                          f"{partition or '(default)'} (GPUs per node: {gpus}); use --gpus_per_job 0 for CPU "
                          f"jobs or --partition with GPU nodes")
    return requested


def make_executor(engine: str, folder: Path, gpus_per_job: int, timeout_min: int, partition: Optional[str],
                  cpus_per_job: Optional[int], mem_gb: Optional[int], max_parallel: int, queue_poll_s: float = 15.0):
    import submitit

    if engine == "local":
        executor = submitit.LocalExecutor(folder=folder, python=sys.executable)
        executor.update_parameters(timeout_min=timeout_min, gpus_per_node=gpus_per_job)
        return executor
    if engine == "slurm":
        from submitit.slurm.slurm import SlurmExecutor

        use_queue_state(queue_poll_s)
        executor = SlurmExecutor(folder=folder, python=sys.executable)
        params = dict(time=timeout_min, array_parallelism=max_parallel, ntasks_per_node=1, nodes=1)
        if gpus_per_job:
            params["gpus_per_node"] = gpus_per_job
        if partition:
            params["partition"] = partition
        if cpus_per_job:
            params["cpus_per_task"] = cpus_per_job
        if mem_gb:
            params["mem"] = f"{mem_gb}GB"
        executor.update_parameters(**params)
        return executor
    raise ConfigError(f"grid run --engine: unknown engine '{engine}' (local | slurm)")


def submit(executor, engine: str, commands: List[list], gpus_per_job: int, free_gpus: List[int]) -> list:
    """Submit commands (argv, cwd) ready together: one Slurm job array, or local processes each with
    its own GPUs (taken from ``free_gpus``). Returns [(submitit job, gpus)]."""
    from submitit.helpers import CommandFunction

    functions = [CommandFunction([sys.executable, *argv], cwd=cwd, verbose=False) for argv, cwd in commands]
    if engine == "slurm":
        with executor.batch():
            jobs = [executor.submit(f) for f in functions]
        return [(job, []) for job in jobs]
    out = []
    for f in functions:  # submitit takes no parameter changes inside a batch
        gpus = [free_gpus.pop(0) for _ in range(gpus_per_job)]
        executor.update_parameters(visible_gpus=tuple(gpus))
        out.append((executor.submit(f), gpus))
    return out


def slurm_state(job) -> str:
    """The job's state as the queue tells it now (LEFT_QUEUE once it has left it)."""
    return _state_word(job.watcher.get_state(job.job_id, mode="force"))


RUNNING = "running"


def outcome(job, engine: str) -> Optional[str]:
    """RUNNING while the job runs, is pending, or was requeued by Slurm (a node failure or preemption:
    the failed attempt's result is set aside and the job waited for again); once it has ended, None
    when it succeeded, else one line of why it failed, with its Slurm state."""
    import submitit

    if not job.done():
        return RUNNING
    try:
        job.result()
        return None
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()] or [type(e).__name__]
        why = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
        if engine != "slurm":
            return why
        state = slurm_state(job)
        if state in SLURM_ALIVE:  # still running (the state lags the result file) or requeued
            result = job.paths.result_pickle
            if state != "RUNNING" and result.exists():
                result.rename(result.with_name(f"{result.stem}.failed-{time.time():.0f}.pkl"))
                log.warning("job %s was requeued by Slurm (%s): waiting for its next attempt", job.job_id, why)
            return RUNNING
        return f"{why} [Slurm state {state}]"


def default_parallel(engine: str, gpus_per_job: int) -> int:
    if engine != "local" or gpus_per_job == 0:
        return 1
    import torch

    return max(1, torch.cuda.device_count() // gpus_per_job)


def run(grid, engine: str = "local", max_parallel: Optional[int] = None, gpus_per_job: Optional[int] = None,
        timeout_min: int = 1440, partition: Optional[str] = None, cpus_per_job: Optional[int] = None,
        mem_gb: Optional[int] = None, poll_s: float = 2.0, queue_poll_s: float = 15.0) -> Dict[str, List[int]]:
    """Submit every unfinished job once its dependencies finished, at most ``max_parallel`` at a time;
    wait for all. Returns {"done", "failed", "skipped", "blocked"} job numbers (0-based, grid order)."""
    jobs = read_grid(grid)
    deps = dependencies(jobs)
    gpus_per_job = resolve_gpus(engine, partition, gpus_per_job)
    max_parallel = int(max_parallel or default_parallel(engine, gpus_per_job))
    if max_parallel < 1:
        raise ConfigError(f"grid run --max_parallel: expected at least 1, got {max_parallel}")
    folder = Path(grid).parent / "engine"
    executor = make_executor(engine, folder / "%j", gpus_per_job, timeout_min, partition, cpus_per_job, mem_gb,
                             max_parallel, queue_poll_s)
    free_gpus = list(range(max_parallel * gpus_per_job)) if engine == "local" else []
    skipped = {i for i, j in enumerate(jobs) if finished(j)}
    done, failed, running = set(skipped), set(), {}  # running: job number -> (submitit job, gpus)
    pending = [i for i in range(len(jobs)) if i not in done]
    log.info("%d jobs: %d finished already, %d to run on %s (at most %d at once)", len(jobs), len(skipped),
             len(pending), engine, max_parallel)
    while pending or running:
        for i, (job, gpus) in list(running.items()):
            why = outcome(job, engine)
            if why == RUNNING:
                continue
            del running[i]
            free_gpus += gpus
            if why is None:
                done.add(i)
                log.info("finished [%d] %s", i, describe(jobs[i]))
            else:
                failed.add(i)
                log.error("FAILED [%d] %s: %s (log: %s)", i, describe(jobs[i]), why, job.paths.stderr)
        blocked = {i for i in pending if deps[i] & failed}
        pending = [i for i in pending if i not in blocked]
        ready = [i for i in pending if deps[i] <= done][:max_parallel - len(running)]
        if ready:
            submitted = [(i, job, gpus) for i, (job, gpus) in
                         zip(ready, submit(executor, engine, [(jobs[i]["argv"], jobs[i]["cwd"]) for i in ready],
                                           gpus_per_job, free_gpus))]
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


def describe(job: dict) -> str:
    return f"{Path(job['argv'][0]).name} -> {job['output']}"


def show(grid) -> None:
    jobs = read_grid(grid)
    for i, (job, d) in enumerate(zip(jobs, dependencies(jobs))):
        state = "finished" if finished(job) else "to run"
        print(f"[{i}] {describe(job)}  after {sorted(d) or '-'}  ({state})")
