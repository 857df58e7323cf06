"""Plate-wise training batches."""

import numpy as np


def test_group_batches_come_from_one_plate_each():
    from cellpipe.data.sampling import GroupBatchSampler

    groups = np.repeat([0, 1, 2], [5, 3, 1])
    sampler = GroupBatchSampler(groups, batch_size=2, seed=0, drop_last=True)
    batches = list(sampler)
    assert all(len(set(groups[b])) == 1 for b in batches)  # one plate per batch
    # batches of one (BatchNorm cannot use them) are dropped: plate 0 gives 2 + 2, plate 1 gives 2
    assert sorted(len(b) for b in batches) == [2, 2, 2] and len(sampler) == 3
    assert len(list(GroupBatchSampler(groups, batch_size=2, seed=0))) == 6  # kept without drop_last
