"""Reports a person can read: run tables, accuracy plots and channel montages.

    python src/report.py runs --log_dir /logs                  # each run's valid scores vs chance
    python src/report.py ensemble --ensemble_dir E --data_root D --out_dir R
    python src/report.py run --run_dir R [--out_dir O]            # pictures of one single-label run
    python src/report.py cv --log_dir /logs/folder                # per-fold and mean +- std scores
"""
from cellpipe.core import cli
from cellpipe.reports.summary import cv, cv_table, ensemble, run, run_table, runs  # noqa: F401

if __name__ == "__main__":
    cli.run({"runs": runs, "ensemble": ensemble, "run": run, "cv": cv})
