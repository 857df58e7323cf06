"""Ensemble a prediction tree into a submission.

    python src/ensemble.py --data_root=data --pred_dirs=logs/non_pseudo,logs/pseudo --out_dir=sub
    python src/ensemble.py --pred_dirs=predictions/hpa --out_dir=sub     # any other source

RxRx1 runs get the per-plate siRNA assignment (submission.csv, test_assigned.csv,
test_probs.npy, oof_accuracy.csv; see cellpipe/rxrx/ensemble.py). Runs of any other
source are averaged by their target kind (cellpipe/postprocess/average.py):
predictions.csv, oof_predictions.csv, oof_scores.json and, for multi-label runs,
submission.csv and submission_optimal_threshold.csv with thresholds fitted out-of-fold.
"""
from cellpipe.core import cli
from cellpipe.core.errors import DataError
from cellpipe.postprocess.average import average, run_meta
from cellpipe.postprocess.collect import collect
from cellpipe.rxrx import ensemble as rxrx_ensemble

RXRX_SOURCES = ("rxrx1",)


def main(pred_dirs, out_dir, data_root=None, weights=None, model_names=None, channels=None, folds=None,
         temperature: float = 1.0, assignment: bool = True, n_groups: int = 4, truth=None,
         treatment_classes=None):
    """Ensemble every run under pred_dirs.

    Args:
        pred_dirs: prediction tree(s) {channels}/fold_{k}/{model}/ (predict-all's output); a list or "a,b".
        out_dir: output folder; every file is written atomically.
        data_root: RxRx1 only: folder with train.csv and test.csv.
        weights: None (equal), {model_name: weight}, or one weight per run in collect() order.
        model_names: only these model folder names (default all).
        channels: only these channel combinations, e.g. '[1,2,3,4,5]' (default all).
        folds: only these folds (default all).
        temperature: RxRx1 only: softmax temperature of the mean logits.
        assignment: RxRx1 only: per-plate siRNA assignment (False submits the argmax).
        n_groups: RxRx1 only: siRNA plate groups in train.csv.
        treatment_classes: RxRx1 only: logit columns that are treatments (default from train.csv);
            further columns (controls trained as extra classes) are dropped.
        truth: other sources: a CSV (id, label) of held-out test labels to report test scores
            (generated data; nothing is tuned on them).
    """
    runs = collect(pred_dirs, model_names, channels, folds)
    source = run_meta(runs[0]).get("source", "rxrx1")
    if source in RXRX_SOURCES:
        if data_root is None:
            raise DataError("--data_root (train.csv, test.csv) is required to ensemble rxrx1 runs")
        return rxrx_ensemble.main(data_root, pred_dirs, out_dir, temperature, weights, model_names, channels, folds,
                                  assignment, n_groups, treatment_classes)
    return average(pred_dirs, out_dir, weights, model_names, channels, folds, truth=truth)


if __name__ == "__main__":
    cli.run(main)
