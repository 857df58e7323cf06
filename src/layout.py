"""The seed's output trees, named in one place.

Runs:         {log_dir}/{part}/{channels}/fold_{k}/{model_name}/   (Part I: no fold level)
                  config.yml, train.log, DONE.json, checkpoints/best.pth
Predictions:  {pred_dir}/{channels}/fold_{k}/{model_name}/
                  pred_test.npy, pred_valid.npy, valid_ids.csv, meta.json
"""
from pathlib import Path
from typing import List, Optional

DONE_FILE = "DONE.json"  # a finished run: its summary
CONFIG_FILE = "config.yml"  # the resolved config of a run
FINAL_CHECKPOINT = "checkpoints/best.pth"  # the run's model, with channels and model params
PRED_TEST = "pred_test.npy"
PRED_VALID = "pred_valid.npy"
VALID_IDS = "valid_ids.csv"
PRED_META = "meta.json"
FOLD_PREFIX = "fold_"


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


def finished_runs(model_root, model_name: str) -> List[Path]:
    """Run folders with a DONE.json under ``model_root/<channels>/fold_<k>/<model_name>``."""
    return sorted(p.parent for p in Path(model_root).glob(f"*/{FOLD_PREFIX}*/{model_name}/{DONE_FILE}"))


def prediction_files(pred_dir, pattern: str = PRED_TEST) -> List[Path]:
    """Every ``pattern`` file of a prediction tree."""
    return sorted(Path(pred_dir).glob(f"*/{FOLD_PREFIX}*/*/{pattern}"))
