"""Plate groups, plate->group matching and per-plate assignment on synthetic plates."""
import numpy as np
import pandas as pd
import pytest

from cellpipe.core.errors import DataError
from cellpipe.rxrx import plates
from conftest import make_wells


def make_groups(rng, n_classes, n_groups):
    """Random partition of siRNAs into equal groups, numbered by their smallest siRNA."""
    groups = np.empty(n_classes, dtype=np.int64)
    groups[rng.permutation(n_classes)] = np.arange(n_classes) % n_groups
    _, first = np.unique(groups, return_index=True)
    rank = np.empty(n_groups, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(n_groups)
    return rank[groups]


def noisy_probs(rng, truth, n_classes, signal, noise=1.0):
    logits = rng.normal(0, noise, (len(truth), n_classes))
    logits[np.arange(len(truth)), truth] += signal
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def test_permuted_plate_recovered_exactly():
    rng = np.random.default_rng(0)
    groups = make_groups(rng, 32, 4)
    df = make_wells(rng, groups, 1).query("plate == 1").reset_index(drop=True)
    truth = df["sirna"].to_numpy()
    probs = noisy_probs(rng, truth, 32, signal=2.5)
    assert (probs.argmax(1) != truth).any()  # the noise fools argmax somewhere
    keys = plates.plate_keys(df)
    labels = plates.assign(probs, keys, df["group"].to_numpy(), groups)
    np.testing.assert_array_equal(labels, truth)


def test_plate_with_one_well_missing_of_277():
    rng = np.random.default_rng(1)
    groups = make_groups(rng, 1108, 4)
    df = make_wells(rng, groups, 1).query("plate == 2").iloc[:-1].reset_index(drop=True)
    assert len(df) == 276
    truth = df["sirna"].to_numpy()
    probs = noisy_probs(rng, truth, 1108, signal=6.0)
    labels = plates.assign(probs, plates.plate_keys(df), df["group"].to_numpy(), groups)
    assert len(np.unique(labels)) == 276
    assert (groups[labels] == df["group"].to_numpy()).all()
    assert (labels == truth).mean() > 0.99


def test_surplus_wells_fall_back_to_argmax_within_group():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(2), 3)  # 2 groups of 3 siRNAs
    probs = noisy_probs(rng, np.array([0, 1, 2, 0, 1]), 6, signal=8.0)
    keys = np.array([["E", "1"]] * 5)
    labels = plates.assign(probs, keys, np.zeros(5, dtype=int), groups)
    assert set(labels) == {0, 1, 2}
    assert (groups[labels] == 0).all()


def test_plate_group_identified_from_noisy_probabilities():
    rng = np.random.default_rng(3)
    groups = make_groups(rng, 1108, 4)
    df = make_wells(rng, groups, 1)
    truth = df["sirna"].to_numpy()
    probs = noisy_probs(rng, truth, 1108, signal=2.0)  # argmax mostly wrong at this noise
    assert (probs.argmax(1) == truth).mean() < 0.5
    for plate, sub in df.groupby("plate"):  # each plate alone: its own experiment
        keys = np.stack([np.full(len(sub), f"E{plate}"), sub["plate"].astype(str)], axis=1)
        found = plates.match_plate_groups(probs[sub.index], keys, groups)
        assert (found == sub["group"].to_numpy()).all()


def test_experiment_matching_gives_distinct_groups():
    groups = np.repeat(np.arange(4), 2)  # 4 groups of 2 siRNAs
    # plate 1 is clearly group 0; plate 2 leans to group 0 too but group 1 is its
    # next best: one-to-one matching must give it group 1.
    mass = np.array([[0.97, 0.01, 0.01, 0.01],
                     [0.60, 0.30, 0.05, 0.05],
                     [0.05, 0.05, 0.85, 0.05]])
    plate_of_well = np.repeat([0, 1, 2], 2)
    probs = np.repeat(mass[plate_of_well], 2, axis=1) / 2
    keys = np.stack([np.full(6, "E1"), (plate_of_well + 1).astype(str)], axis=1)
    found = plates.match_plate_groups(probs, keys, groups)
    np.testing.assert_array_equal(found, np.repeat([0, 1, 2], 2))
    # without the experiment constraint plate 2 would have taken group 0
    assert plates.group_scores(probs, keys, groups).argmax(1)[1] == 0


def test_full_experiments_get_permutations_of_groups():
    rng = np.random.default_rng(4)
    groups = make_groups(rng, 64, 4)
    df = make_wells(rng, groups, 3, drop=5)
    probs = noisy_probs(rng, df["sirna"].to_numpy(), 64, signal=1.5)
    found = plates.match_plate_groups(probs, plates.plate_keys(df), groups)
    per_plate = pd.DataFrame({"e": df["experiment"], "p": df["plate"], "g": found}).drop_duplicates()
    assert (per_plate.groupby("e")["g"].nunique() == 4).all()
    assert (found == df["group"].to_numpy()).all()


def test_plate_groups_from_train_table():
    rng = np.random.default_rng(5)
    groups = make_groups(rng, 40, 4)
    train = make_wells(rng, groups, 3, drop=4)
    np.testing.assert_array_equal(plates.plate_groups(train), groups)
    with pytest.raises(DataError, match="form 4 plate group"):
        plates.plate_groups(train, n_groups=3)
    with pytest.raises(DataError, match="never occur"):
        plates.plate_groups(train, n_classes=41)
    with pytest.raises(DataError, match="outside"):
        plates.plate_groups(train, n_classes=39)


def test_assignment_improves_accuracy():
    rng = np.random.default_rng(6)
    groups = make_groups(rng, 200, 4)
    df = make_wells(rng, groups, 4, drop=6)
    truth = df["sirna"].to_numpy()
    probs = noisy_probs(rng, truth, 200, signal=3.0)
    keys = plates.plate_keys(df)
    labels = plates.assign(probs, keys, plates.match_plate_groups(probs, keys, groups), groups)
    acc_argmax, acc_assigned = (probs.argmax(1) == truth).mean(), (labels == truth).mean()
    assert acc_assigned > acc_argmax + 0.1
    per_plate = pd.DataFrame({"k": plates.plate_index(keys)[0], "l": labels})
    assert not per_plate.duplicated().any()  # each siRNA at most once per plate


def test_plate_index_codes():
    keys = np.array([["B", "2"], ["A", "1"], ["B", "2"], ["A", "2"]])
    codes, n = plates.plate_index(keys)
    assert n == 3
    np.testing.assert_array_equal(codes, [2, 0, 2, 1])
    with pytest.raises(DataError, match="shape"):
        plates.plate_index(np.array(["A", "B"]))
