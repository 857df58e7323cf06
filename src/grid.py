"""Run the bin/ scripts' grid of runs on a cluster engine (submitit: Slurm job arrays, or local processes).

    python src/grid.py new   GRID                        # start an empty grid file
    python src/grid.py add   GRID src/train.py ARGS...   # append a job (what LAUNCH does in bin/)
    python src/grid.py run   GRID --engine slurm|local [--max_parallel N] [--gpus_per_job 1]
                             [--timeout_min 1440] [--partition P] [--cpus_per_job 8] [--mem_gb 64]
    python src/grid.py show  GRID                        # the jobs, their dependencies and state

bin/grid.sh builds the whole seed pipeline (Parts I, II, predict-all, ensemble, pseudo labels,
Part III, predict-all, ensemble) this way: every bin/ script runs its loop as usual, but with
``LAUNCH="python src/grid.py add GRID"`` each command is recorded instead of run. ``run`` then
hands the jobs to the engine:

- dependencies come from the paths in the commands: a job waits for every earlier job whose
  output folder (--logdir / --out_dir) lies under one of its path arguments, or holds it (a Part II
  run's Part I weights; predict-all's model root over the Part II runs; Part III's pseudo-label CSVs);
- a training run whose folder has DONE.json is finished and not submitted (the others resume);
- at most ``max_parallel`` jobs run at once (the GPUs you have; locally each job gets its own GPU
  through CUDA_VISIBLE_DEVICES); jobs that become ready together go to Slurm as one job array;
- a failed job's dependents are not started; ``run`` ends non-zero naming each failed job and its log.

The engine's own logs (stdout/stderr of every job) go to GRID's folder/engine/.
"""
import argparse
import json
import sys
from pathlib import Path

from cellpipe.core import cli
from cellpipe.core.fsutil import write_text
from cellpipe.engine.grid import add, run, show


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("new", help="start an empty grid file").add_argument("grid")
    a = sub.add_parser("add", help="append a command (script and arguments)")
    a.add_argument("grid")
    a.add_argument("command", nargs=argparse.REMAINDER)
    r = sub.add_parser("run", help="run the grid on an engine")
    r.add_argument("grid")
    r.add_argument("--engine", default="local", choices=["local", "slurm"])
    r.add_argument("--max_parallel", type=int, default=None, help="jobs at once (default: local GPUs, else 1)")
    r.add_argument("--gpus_per_job", type=int, default=None, help="default: 1 with CUDA or on Slurm, else 0")
    r.add_argument("--timeout_min", type=int, default=1440)
    r.add_argument("--partition", default=None)
    r.add_argument("--cpus_per_job", type=int, default=None)
    r.add_argument("--mem_gb", type=int, default=None)
    r.add_argument("--poll_s", type=float, default=2.0, help="seconds between checks of the jobs' result files")
    r.add_argument("--queue_poll_s", type=float, default=15.0, help="at most this many seconds between Slurm queue reads")
    sub.add_parser("show", help="list the jobs, their dependencies and state").add_argument("grid")
    args = p.parse_args(argv)
    cli.setup_logging()
    try:
        if args.cmd == "new":
            Path(args.grid).parent.mkdir(parents=True, exist_ok=True)
            write_text("", args.grid)
        elif args.cmd == "add":
            add(args.grid, args.command)
        elif args.cmd == "show":
            show(args.grid)
        else:
            summary = run(args.grid, args.engine, args.max_parallel, args.gpus_per_job, args.timeout_min,
                          args.partition, args.cpus_per_job, args.mem_gb, args.poll_s,
                          args.queue_poll_s)
            print(json.dumps(summary))
            if summary["failed"] or summary["blocked"]:
                return 1
    except cli.USER_ERRORS as e:
        cli.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
