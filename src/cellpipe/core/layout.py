"""The output trees, named in one place.

Runs:         {log_dir}/{part}/{channels}/fold_{k}/{model_name}/   (Part I: no fold level)
                  config.yml, train.log, DONE.json, checkpoints/best.pth, checkpoints/labels.json,
                  valid_predictions.csv, per_class.csv, history.csv, training_logs/,
                  checkpoints/thresholds.json (multi-label), <stage>/ (Catalyst logs and checkpoints)
Predictions:  {pred_dir}/{channels}/fold_{k}/{model_name}/
                  pred_test.npy, test_ids.csv, pred_test.csv, pred_valid.npy, valid_ids.csv,
                  labels.json, meta.json (multi-label: submission.csv, submission_optimal_threshold.csv)
Ensembles:    {out_dir}/ submission.csv, test_assigned.csv, test_probs.npy, oof_accuracy.csv, predictions.csv,
                  oof_predictions.csv, oof_scores.json (multi-label: thresholds.json, submission_optimal_threshold.csv)
"""
from pathlib import Path
from typing import List, Optional

from cellpipe.core.errors import DataError

DONE_FILE = "DONE.json"  # a finished run: its summary
CONFIG_FILE = "config.yml"  # the resolved config of a run
FINAL_CHECKPOINT = "checkpoints/best.pth"  # the run's model, with channels, model params and labels
LABELS_FILE = "labels.json"  # class names in index order (beside checkpoints and predictions)
LABELS_CHECKPOINT = f"checkpoints/{LABELS_FILE}"  # a run's task (tasks.load)
VALID_PREDICTIONS = "valid_predictions.csv"  # per validation sample: id, pred, prob, truth, loss, prob_*
PER_CLASS = "per_class.csv"  # precision, recall, f1, support per class
CONFUSION_PNG = "confusion_matrix.png"
HISTORY = "history.csv"  # one row per epoch of every stage: losses, metrics, lr
SAMPLE_LOGS = "training_logs/{stage}_{split}.csv"  # per sample at a stage's end: id, pred, truth, loss
THRESHOLDS = "checkpoints/thresholds.json"  # multi-label: per-class thresholds fitted on validation
ONNX_MODEL = "checkpoints/model.onnx"  # a model package member's weights for onnxruntime (export --onnx)
OPTIMAL_SUBMISSION = "submission_optimal_threshold.csv"  # multi-label: at the fitted thresholds
EPOCH_CHECKPOINT = "checkpoints/model.{epoch:04d}.pth"  # per stage, with keep_epoch_checkpoints
PRED_TEST = "pred_test.npy"
TEST_IDS = "test_ids.csv"
PRED_TEST_CSV = "pred_test.csv"  # per test sample: class names and probabilities
PRED_VALID = "pred_valid.npy"
VALID_IDS = "valid_ids.csv"
PRED_META = "meta.json"
SUBMISSION = "submission.csv"
TEST_ASSIGNED = "test_assigned.csv"
TEST_PROBS = "test_probs.npy"
OOF_ACCURACY = "oof_accuracy.csv"
ENSEMBLE_PREDICTIONS = "predictions.csv"
OOF_PREDICTIONS = "oof_predictions.csv"  # any source's ensemble: per out-of-fold sample
OOF_SCORES = "oof_scores.json"
ENSEMBLE_THRESHOLDS = "thresholds.json"  # multi-label ensemble: per-class thresholds fitted out-of-fold
PER_CLASS_F1_PNG = "per_class_f1.png"
FOLD_PREFIX = "fold_"
TRAIN_LOG = "train.log"
# fold files (src/make_folds.py, src/make_pseudo.py) and what they record
TRAIN_FOLD = "train_{k}.csv"
VALID_FOLD = "valid_{k}.csv"
FOLDS_JSON = "folds.json"
CONTROL_TRAIN = "control_train.csv"  # RxRx1 Part I
CONTROL_VALID = "control_valid.csv"
PSEUDO_EXPERIMENTS = "pseudo_experiments.csv"  # RxRx1 pseudo labels: per experiment / plate, chosen or not
PSEUDO_JSON = "pseudo.json"
GRID_SUMMARY = "grid_summary.json"  # src/grid.py, beside the grid file
CV_SUMMARY = "cv_summary.csv"  # src/report.py: one row per run


def fold_dir(fold: int) -> str:
    return f"{FOLD_PREFIX}{int(fold)}"


def parse_fold(name: str) -> Optional[int]:
    """``fold_3`` -> 3; anything else -> None."""
    if not name.startswith(FOLD_PREFIX):
        return None
    try:
        return int(name[len(FOLD_PREFIX):])
    except ValueError:
        return None


ALL_CHANNELS = "[all]"  # the folder of runs on every channel of their source (data_params/channels: auto)


def channels_tag(channels) -> str:
    """Folder name of a channel combination, as in the seed: ``[1,2,3,4,5]``; None -> ``[all]``."""
    if channels is None:
        return ALL_CHANNELS
    return "[" + ",".join(str(c) for c in channels) + "]"


def parse_channels_tag(tag: str) -> Optional[List[int]]:
    """``[1,2,3,4,5]`` -> [1, 2, 3, 4, 5] (distinct positive integers); ``[all]`` -> None."""
    text = tag.strip()
    if text == ALL_CHANNELS:
        return None
    bad = DataError(f"'{tag}' is not a channel folder name like [1,2,3,4,5]")
    if not (text.startswith("[") and text.endswith("]")):
        raise bad
    try:
        channels = [int(x) for x in text[1:-1].split(",")]
    except ValueError:
        raise bad from None
    if not channels or min(channels) < 1 or len(set(channels)) != len(channels):
        raise bad
    return channels


def finished_runs(model_root, model_name: str) -> List[Path]:
    """Run folders with a DONE.json under ``model_root/<channels>/fold_<k>/<model_name>``."""
    return sorted(p.parent for p in Path(model_root).glob(f"*/{FOLD_PREFIX}*/{model_name}/{DONE_FILE}"))


def prediction_files(pred_dir, pattern: str = PRED_TEST) -> List[Path]:
    """Every ``pattern`` file of a prediction tree."""
    return sorted(Path(pred_dir).glob(f"*/{FOLD_PREFIX}*/*/{pattern}"))
