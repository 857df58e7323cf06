"""Batches drawn from one group (plate or experiment) at a time.

The 5th place of RxRx1 trained on batches of a single plate, so that BatchNorm's batch
statistics are a plate's statistics, as they are at prediction with AdaBN (inference.adabn).
``data_params/batch_by: plate`` (any normalisation level of the source) turns it on.
"""
from typing import Iterator, List, Sequence

import numpy as np
import pandas as pd
from torch.utils.data import Sampler

from cellpipe.core.errors import ConfigError


def group_codes(table: pd.DataFrame, source, level: str) -> np.ndarray:
    """Integer group per row for ``level`` (a key of ``source.levels``)."""
    if level not in source.levels:
        raise ConfigError(f"config key 'data_params/batch_by': unknown level '{level}' for source "
                          f"'{source.name}'; known: {', '.join(sorted(source.levels))}")
    columns = source.levels[level]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"data_params/batch_by={level} needs columns {missing} in the sample table")
    return table.groupby(columns, sort=True).ngroup().to_numpy()


class GroupBatchSampler(Sampler[List[int]]):
    """Each epoch: every group's rows shuffled and cut into batches of ``batch_size`` (a group's
    last batch may be smaller; ``drop_last`` drops it when it has one sample only, as BatchNorm
    needs two), all batches shuffled."""

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int = 0, drop_last: bool = False):
        self.groups = np.asarray(groups)
        self.batch_size, self.drop_last = int(batch_size), drop_last
        self.rng = np.random.default_rng(seed)

    def _batches(self, rng) -> List[List[int]]:
        out = []
        for g in np.unique(self.groups):
            idx = rng.permutation(np.flatnonzero(self.groups == g))
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size].tolist()
                if len(chunk) > 1 or not self.drop_last:
                    out.append(chunk)
        order = rng.permutation(len(out))
        return [out[i] for i in order]

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self._batches(self.rng))

    def __len__(self) -> int:
        return len(self._batches(np.random.default_rng(0)))
