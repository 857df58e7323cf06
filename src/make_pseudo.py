"""Pseudo-label CSVs for Part III from an ensemble's per-plate assignment.

    python src/make_pseudo.py --data_root /data --ensemble_dir /predictions/ensemble \
        --csv_dir csv --out_dir csv/pseudo [--experiments HEPG2-08,U2OS-04] [--min_confidence 0.5]

See cellpipe/rxrx/pseudo.py for what goes into each fold.
"""
from cellpipe.core import cli
from cellpipe.rxrx.pseudo import COLUMNS, choose_experiments, experiment_confidence, fold_ids, main  # noqa: F401

if __name__ == "__main__":
    cli.run(main)
