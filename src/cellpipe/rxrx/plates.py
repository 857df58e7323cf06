"""Plate structure ("plate leak"): siRNA groups, plate->group matching, per-plate assignment.

RxRx1's treatment siRNAs form disjoint groups (4 of 277 in the real data); every plate
holds one group, each siRNA at most once, and the plates of one experiment hold distinct
groups. This module recovers the groups from the training table, decides which group a
test plate holds from the model's probabilities, and then gives each siRNA at most one
well per plate by a linear assignment. Pure numpy/scipy on in-memory tables.
"""
import logging
from typing import Tuple

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cellpipe.core.errors import DataError

log = logging.getLogger(__name__)

N_GROUPS = 4  # RxRx1 has 4 disjoint siRNA groups, one per plate of an experiment
# Floor for probabilities before log: softmax can underflow to 0 and log(0) would let one
# well veto a whole plate or assignment.
_TINY = np.finfo(np.float64).tiny


def plate_keys(df: pd.DataFrame) -> np.ndarray:
    """(n_wells, 2) array of (experiment, plate) per row: the key the functions below take."""
    missing = [c for c in ("experiment", "plate") if c not in df.columns]
    if missing:
        raise DataError(f"table lacks column(s) {missing} needed for plate keys")
    return np.stack([df["experiment"].astype(str).to_numpy(), df["plate"].astype(str).to_numpy()], axis=1)


def _keys(plate_keys_or_df) -> np.ndarray:
    if isinstance(plate_keys_or_df, pd.DataFrame):
        return plate_keys(plate_keys_or_df)
    keys = np.asarray(plate_keys_or_df)
    if keys.ndim != 2 or keys.shape[1] != 2:
        raise DataError(f"plate keys must have shape (n_wells, 2) = (experiment, plate), got {keys.shape}")
    return keys.astype(str)


def plate_index(plate_keys_or_df) -> Tuple[np.ndarray, int]:
    """Integer code 0..n_plates-1 per well (plates sorted by experiment, plate) and n_plates."""
    keys = _keys(plate_keys_or_df)
    # \x1f (unit separator) cannot occur in experiment names, so joined keys stay distinct
    joined = np.char.add(np.char.add(keys[:, 0], "\x1f"), keys[:, 1])
    uniq, codes = np.unique(joined, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), len(uniq)


def _plate_experiments(keys: np.ndarray, codes: np.ndarray, n_plates: int) -> Tuple[np.ndarray, np.ndarray]:
    """Experiment code of every plate and the experiment names."""
    exp_names, exp_codes = np.unique(keys[:, 0], return_inverse=True)
    plate_exp = np.empty(n_plates, dtype=np.int64)
    plate_exp[codes] = exp_codes.reshape(-1)  # a plate's wells share one experiment
    return plate_exp, exp_names


def _plate_wells(codes: np.ndarray, n_plates: int):
    """Row indices of every plate's wells (one argsort, no loop over wells)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n_plates))[:-1]
    return np.split(order, bounds)


def _check_probs(probs: np.ndarray, n_wells: int, groups: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] != n_wells:
        raise DataError(f"probabilities have shape {probs.shape}, expected ({n_wells}, n_classes)")
    if probs.shape[1] != len(groups):
        raise DataError(f"probabilities have {probs.shape[1]} classes but the group table has {len(groups)}")
    return probs


def plate_groups(train_df: pd.DataFrame, n_groups: int = N_GROUPS, n_classes: int = None) -> np.ndarray:
    """Group index 0..n_groups-1 of every siRNA 0..n_classes-1, from which siRNAs share plates.

    siRNAs and plates are nodes of a bipartite graph (an edge per training well); each
    connected component is one group. Groups are numbered by their smallest siRNA.
    ``n_classes`` defaults to max(sirna)+1.
    """
    missing = [c for c in ("experiment", "plate", "sirna") if c not in train_df.columns]
    if missing:
        raise DataError(f"training table lacks column(s) {missing}")
    sirna = train_df["sirna"].to_numpy()
    if not np.issubdtype(sirna.dtype, np.integer):
        raise DataError(f"training table column 'sirna' must be integers, got dtype {sirna.dtype}")
    if n_classes is None:
        n_classes = int(sirna.max()) + 1
    bad = (sirna < 0) | (sirna >= n_classes)
    if bad.any():
        raise DataError(
            f"training table has sirna {sorted(set(sirna[bad].tolist()))[:5]} outside 0..{n_classes - 1}"
        )
    absent = np.flatnonzero(np.bincount(sirna, minlength=n_classes) == 0)
    if len(absent):
        raise DataError(
            f"{len(absent)} siRNA(s) never occur in the training table, e.g. {absent[:5].tolist()}; "
            f"their plate group is unknown"
        )
    codes, n_plates = plate_index(train_df)
    n_nodes = n_classes + n_plates
    graph = coo_matrix((np.ones(len(sirna), dtype=np.int8), (sirna, n_classes + codes)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=False)
    comp = labels[:n_classes]
    uniq, first = np.unique(comp, return_index=True)
    if len(uniq) != n_groups:
        sizes = sorted(np.bincount(np.searchsorted(uniq, comp)).tolist(), reverse=True)
        raise DataError(
            f"siRNAs of the training table form {len(uniq)} plate group(s) (sizes {sizes[:8]}), expected {n_groups}"
        )
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))
    return rank[np.searchsorted(uniq, comp)]


def group_scores(probs: np.ndarray, plate_keys, groups: np.ndarray) -> np.ndarray:
    """(n_plates, n_groups) log-evidence: sum over a plate's wells of log P(well in group)."""
    keys = _keys(plate_keys)
    groups = np.asarray(groups)
    probs = _check_probs(probs, len(keys), groups)
    codes, n_plates = plate_index(keys)
    n_groups = int(groups.max()) + 1
    onehot = np.zeros((len(groups), n_groups), dtype=probs.dtype)
    onehot[np.arange(len(groups)), groups] = 1
    mass = (probs @ onehot).astype(np.float64)
    scores = np.zeros((n_plates, n_groups))
    np.add.at(scores, codes, np.log(np.maximum(mass, _TINY)))
    return scores


def match_plate_groups(probs: np.ndarray, plate_keys, groups: np.ndarray) -> np.ndarray:
    """Group of every well: within each experiment, plates get distinct groups.

    Per experiment, the plate->group mapping maximising the summed ``group_scores`` is
    found by linear_sum_assignment. Experiments with fewer plates than groups leave some
    groups unused; surplus plates (more than groups, which RxRx1 never has) fall back to
    their best-scoring group with a warning.
    """
    keys = _keys(plate_keys)
    groups = np.asarray(groups)
    scores = group_scores(probs, keys, groups)
    codes, n_plates = plate_index(keys)
    plate_exp, exp_names = _plate_experiments(keys, codes, n_plates)
    plate_group = scores.argmax(axis=1)
    for e, name in enumerate(exp_names):
        plates = np.flatnonzero(plate_exp == e)
        rows, cols = linear_sum_assignment(scores[plates], maximize=True)
        plate_group[plates[rows]] = cols
        if len(rows) < len(plates):
            log.warning(
                "experiment %s has %d plates but only %d groups; %d plate(s) take their best group",
                name, len(plates), scores.shape[1], len(plates) - len(rows),
            )
    return plate_group[codes]


def assign(probs: np.ndarray, plate_keys, well_groups: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """siRNA label per well: each siRNA of the plate's group at most once per plate.

    Per plate: keep the group's columns, normalise each column to sum 1 over the plate's
    wells (as the original did: every siRNA is somewhere on the plate once), and solve
    linear_sum_assignment maximising the summed log-probability. A plate with fewer wells
    than its group leaves siRNAs unused; surplus wells (more wells than siRNAs) fall back
    to their argmax within the group.
    """
    keys = _keys(plate_keys)
    groups = np.asarray(groups)
    probs = _check_probs(probs, len(keys), groups)
    well_groups = np.asarray(well_groups)
    if well_groups.shape != (len(keys),):
        raise DataError(f"well groups have shape {well_groups.shape}, expected ({len(keys)},)")
    codes, n_plates = plate_index(keys)
    group_cols = [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]
    labels = np.empty(len(keys), dtype=np.int64)
    for wells in _plate_wells(codes, n_plates):
        plate_group = np.unique(well_groups[wells])
        if len(plate_group) != 1:
            raise DataError(f"plate {tuple(keys[wells[0]])} has wells in several groups {plate_group.tolist()}")
        cols = group_cols[int(plate_group[0])]
        sub = probs[np.ix_(wells, cols)].astype(np.float64)
        labels[wells] = cols[sub.argmax(axis=1)]  # kept only by surplus wells
        norm = sub / np.maximum(sub.sum(axis=0, keepdims=True), _TINY)
        rows, picked = linear_sum_assignment(np.log(np.maximum(norm, _TINY)), maximize=True)
        labels[wells[rows]] = cols[picked]
        if len(rows) < len(wells):
            log.warning(
                "plate %s has %d wells for %d siRNAs; %d surplus well(s) take their argmax",
                tuple(keys[wells[0]]), len(wells), len(cols), len(wells) - len(rows),
            )
    return labels
