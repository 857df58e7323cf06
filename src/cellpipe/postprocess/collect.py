"""Find the runs of prediction trees: {pred_dir}/{channels}/fold_{k}/{model}/pred_test.npy."""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from cellpipe.core import layout
from cellpipe.core.errors import DataError

log = logging.getLogger(__name__)

TEST_FILE, VALID_FILE, VALID_IDS_FILE = layout.PRED_TEST, layout.PRED_VALID, layout.VALID_IDS


@dataclass(frozen=True)
class Run:
    """One trained model's prediction folder: pred_dir/channels/fold_k/model."""

    pred_dir: Path
    channels: str  # channels_tag, e.g. "[1,2,3,4,5]"
    fold: int
    model: str

    @property
    def dir(self) -> Path:
        return self.pred_dir / self.channels / layout.fold_dir(self.fold) / self.model

    @property
    def pred_test_path(self) -> Path:
        return self.dir / TEST_FILE

    @property
    def valid_path(self) -> Path:
        return self.dir / VALID_FILE

    @property
    def valid_ids_path(self) -> Path:
        return self.dir / VALID_IDS_FILE

    @property
    def has_valid(self) -> bool:
        return self.valid_path.is_file() and self.valid_ids_path.is_file()


def _as_list(value) -> Optional[list]:
    if value is None:
        return None
    if isinstance(value, (str, int, Path)):
        return [value]
    return list(value)


def _channel_tags(channels) -> Optional[set]:
    """Accept "[1,2,3,4,5]", [1,2,3,4,5] (one combination) or a list of either."""
    if channels is None:
        return None
    if isinstance(channels, str):
        return {layout.channels_tag(layout.parse_channels_tag(channels))}
    channels = list(channels)
    if channels and all(isinstance(c, (int, np.integer)) for c in channels):
        return {layout.channels_tag(check_tag_channels(channels))}
    return {
        layout.channels_tag(layout.parse_channels_tag(c) if isinstance(c, str) else check_tag_channels(c))
        for c in channels
    }


def collect(pred_dirs, model_names=None, channels=None, folds=None) -> List[Run]:
    """Every run under ``pred_dirs`` (a folder, a list, or "a,b") with a pred_test.npy.

    ``model_names``: a name or list; ``channels``: a channels tag, a channel list, or a
    list of either; ``folds``: an int or list. Sorted by (channels, fold, model, dir).
    """
    if isinstance(pred_dirs, str):  # "a,b" from the command line = two folders
        pred_dirs = [d for d in pred_dirs.split(",") if d]
    dirs = list(dict.fromkeys(Path(d) for d in _as_list(pred_dirs) or []))  # a folder once
    if not dirs:
        raise DataError("no prediction directory given (pred_dirs is empty)")
    for d in dirs:
        if not d.is_dir():
            raise DataError(f"prediction directory not found: {d}")
    names = set(_as_list(model_names)) if model_names is not None else None
    tags = _channel_tags(channels)
    fold_set = {int(f) for f in _as_list(folds)} if folds is not None else None
    runs = []
    for d in dirs:
        for path in layout.prediction_files(d, TEST_FILE):
            model_dir = path.parent
            fold = layout.parse_fold(model_dir.parent.name)
            tag_name = model_dir.parent.parent.name
            try:
                tag = layout.channels_tag(layout.parse_channels_tag(tag_name))
            except DataError:
                log.warning("skipping %s: '%s' is not a channels folder like [1,2,3,4,5]", path, tag_name)
                continue
            if fold is None:
                log.warning("skipping %s: '%s' is not a fold folder like fold_0", path, model_dir.parent.name)
                continue
            # the folder's own spelling is kept for paths; filters compare the canonical tag
            run = Run(d, tag_name, fold, model_dir.name)
            if names is not None and run.model not in names:
                continue
            if tags is not None and tag not in tags:
                continue
            if fold_set is not None and run.fold not in fold_set:
                continue
            runs.append(run)
    if not runs:
        raise DataError(
            f"no {TEST_FILE} found as {{channels}}/fold_{{k}}/{{model}}/{TEST_FILE} under "
            f"{[str(d) for d in dirs]} (filters: model_names={model_names}, channels={channels}, folds={folds})"
        )
    return sorted(runs, key=lambda r: (r.channels, r.fold, r.model, str(r.pred_dir)))


def check_tag_channels(channels) -> List[int]:
    """A channel list as it appears in folder tags: distinct positive integers."""
    return layout.parse_channels_tag(layout.channels_tag(channels))
