"""Time the ensemble on a full-size synthetic RxRx1 test set.

19,897 test wells x 1,108 classes in 18 experiments x 4 plates (276-277 wells each,
4 groups of 277 siRNAs), ``n_models`` noisy logit arrays that favour the true siRNA.
Timed: logit averaging + softmax + plate->group matching + per-plate assignment (data
generation excluded), against a target in seconds.

    python bench/bench_ensemble.py --n_models=6
"""
import logging
import resource
import sys
import time
from pathlib import Path

import fire
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from cellpipe.postprocess.blend import average_logits  # noqa: E402
from cellpipe.rxrx import plates  # noqa: E402
from cellpipe.rxrx.ensemble import plate_labels  # noqa: E402
from cellpipe.tasks.base import softmax  # noqa: E402

log = logging.getLogger(__name__)


def make_problem(rng, n_wells, n_classes, n_groups, n_experiments):
    """(wells table with true sirna, groups): experiment plates hold the groups in random order."""
    groups = rng.permutation(n_classes) % n_groups
    per_group = np.bincount(groups)
    n_plates = n_experiments * n_groups
    plate_group = np.concatenate([rng.permutation(n_groups) for _ in range(n_experiments)])
    sirna_by_group = [rng.permutation(np.flatnonzero(groups == g)) for g in range(n_groups)]
    plate_of_slot = np.repeat(np.arange(n_plates), per_group[plate_group])
    n_drop = len(plate_of_slot) - n_wells
    if not 0 <= n_drop <= n_plates:
        raise ValueError(f"{n_wells} wells do not fit {n_plates} plates missing at most one well each")
    # one random well missing on n_drop distinct plates, as on real plates of 276-277 wells
    size = per_group[plate_group]
    dropped_plates = rng.choice(n_plates, n_drop, replace=False)
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    keep = np.ones(len(plate_of_slot), dtype=bool)
    keep[starts[dropped_plates] + rng.integers(0, size[dropped_plates])] = False
    plate_of_slot = plate_of_slot[keep]
    sirna = np.concatenate([sirna_by_group[g] for g in plate_group])[keep]
    wells = pd.DataFrame({
        "experiment": np.char.add("EXP-", (plate_of_slot // n_groups + 1).astype(str)),
        "plate": plate_of_slot % n_groups + 1,
        "sirna": sirna,
    })
    return wells, groups


def main(
    n_models: int = 6,
    n_wells: int = 19897,
    n_classes: int = 1108,
    n_groups: int = 4,
    n_experiments: int = 18,
    signal: float = 1.5,
    noise: float = 1.0,
    temperature: float = 1.0,
    target_s: float = 5.0,
    seed: int = 0,
):
    """Args:
        n_models: logit arrays averaged (default 6, e.g. 6 channel combinations).
        n_wells, n_classes, n_groups, n_experiments: problem size (defaults: RxRx1 test).
        signal: logit bonus of the true siRNA per model (default 1.5).
        noise: std of the per-model Gaussian logit noise (default 1.0).
        temperature: softmax temperature (default 1.0).
        target_s: time target in seconds for the timed part (default 5.0).
        seed: random seed (default 0).
    """
    rng = np.random.default_rng(seed)
    wells, groups = make_problem(rng, n_wells, n_classes, n_groups, n_experiments)
    truth = wells["sirna"].to_numpy()
    arrays = []
    for _ in range(n_models):
        logits = rng.standard_normal((n_wells, n_classes), dtype=np.float32)
        logits *= noise
        logits[np.arange(n_wells), truth] += signal
        arrays.append(logits)
    sizes = wells.groupby(["experiment", "plate"]).size()
    log.info("%d wells x %d classes, %d plates of %d-%d wells, %d models",
             n_wells, n_classes, len(sizes), sizes.min(), sizes.max(), n_models)

    start = time.perf_counter()
    probs = softmax(average_logits(arrays), temperature)
    labels, well_groups = plate_labels(probs, wells, groups)
    elapsed = time.perf_counter() - start

    keys = plates.plate_keys(wells)
    group_ok = (well_groups == groups[truth]).mean()
    acc_argmax = (probs.argmax(axis=1) == truth).mean()
    acc_assigned = (labels == truth).mean()
    print(f"ensemble+assignment: {elapsed:.6f} s  target {target_s:.1f} s  ratio {elapsed / target_s:.6f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"peak memory {peak:.2f} GiB (the whole process: logits of every model + the ensemble)")
    print(f"accuracy argmax {acc_argmax:.4f} -> assigned {acc_assigned:.4f}; "
          f"plate groups correct {group_ok:.4f}; plates {plates.plate_index(keys)[1]}")
    return None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fire.Fire(main)
