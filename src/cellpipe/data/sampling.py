"""Batches drawn from one group (plate or experiment) at a time.

The 5th place of RxRx1 trained on batches of a single plate, so that BatchNorm's batch
statistics are a plate's statistics, as they are at prediction with AdaBN (inference.adabn).
``data_params/batch_by: plate`` (any normalisation level of the source) turns it on.
"""
from typing import Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
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
    needs two), all batches shuffled. Each epoch's order comes from ``seed`` and torch's global
    generator (as RandomSampler's does), which catalyst reseeds every epoch: a resumed run sees
    the same order."""

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int = 0, drop_last: bool = False):
        self.groups = np.asarray(groups)
        self.batch_size, self.drop_last = int(batch_size), drop_last
        self.seed = int(seed)

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
        draw = int(torch.randint(0, 2**31 - 1, ()).item())
        return iter(self._batches(np.random.default_rng([self.seed, draw])))

    def __len__(self) -> int:
        return len(self._batches(np.random.default_rng(0)))


class SeededBatches(Sampler[List[Tuple[int, int]]]):
    """Batches of (index, seed): every draw carries the seed of its own randomness (site, augmentation).

    The seeds come from torch's global generator in the main process, which catalyst reseeds
    every epoch, so an epoch's draws are the same whatever the number of (persistent) workers and
    after a resume from that epoch. With ``world`` > 1 processes (distributed training) every
    process draws the same batches and seeds and keeps batches ``rank``, ``rank + world``, ...;
    all keep the same number, as DistributedDataParallel steps in lockstep.
    """

    def __init__(self, batches: Iterable[List[int]], rank: int = 0, world: int = 1):
        self.batches = batches
        self.rank, self.world = int(rank), int(world)
        self.batch_size = getattr(batches, "batch_size", None)  # catalyst reads it

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        n = len(self)
        for i, batch in enumerate(self.batches):
            seeds = torch.randint(0, 2**31 - 1, (len(batch),)).tolist()
            if i // self.world >= n:
                break
            if i % self.world == self.rank:
                yield list(zip(batch, seeds))

    def __len__(self) -> int:
        return len(self.batches) // self.world
