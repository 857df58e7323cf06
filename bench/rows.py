"""What the accuracy benchmarks share: running the project's commands and picking a config's rows."""
import os
import subprocess
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def sh(args, env=None, log=None, timings=None):
    """Run a command in the repository (output appended to ``log``); a failure stops the benchmark
    naming the command; its seconds go to ``timings[name of the script]``."""
    started = time.perf_counter()
    with open(log, "a") if log else open(os.devnull, "w") as out:
        r = subprocess.run([str(a) for a in args], cwd=REPO, env={**os.environ, **(env or {})}, stdout=out,
                           stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, args))}; see {log}")
    if timings is not None:
        timings[Path(str(args[1])).stem] = round(time.perf_counter() - started, 1)


def load_rows(config, rows=None):
    """(the benchmark's YAML, the chosen row names): all rows, or a comma-separated subset."""
    cfg = yaml.safe_load((REPO / config).read_text())
    names = list(cfg["rows"]) if rows is None else [r.strip() for r in (rows.split(",") if isinstance(rows, str)
                                                                         else rows)]
    unknown = [n for n in names if n not in cfg["rows"]]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; {config} has {list(cfg['rows'])}")
    return cfg, names
