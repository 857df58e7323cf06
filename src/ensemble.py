"""Ensemble the prediction tree into a Kaggle submission, with per-plate siRNA assignment (RxRx1).

    python src/ensemble.py --data_root=data --pred_dirs=logs/non_pseudo,logs/pseudo --out_dir=sub

Writes submission.csv (validated first), test_assigned.csv, test_probs.npy and
oof_accuracy.csv; see cellpipe/rxrx/ensemble.py for the steps.
"""
from cellpipe.core import cli
from cellpipe.rxrx.ensemble import main

if __name__ == "__main__":
    cli.run(main)
