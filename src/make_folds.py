"""Fold CSVs grouped by experiment, and the held-out split of the control wells.

Validation must score unseen experiments (the test set is unseen experiments),
so a fold never splits an experiment; cell types are stratified so that each
fold validates on a mix of them. The control split (Part I) holds out whole
experiments per cell type for the same reason. The seed and the rule are
written to folds.json beside the CSVs, so the folds are reproducible data.
"""
from cellpipe.core import cli
from cellpipe.data.fold_files import write_folds
from cellpipe.rxrx.folds import load_controls, make_folds, split_controls, write_rxrx1_folds  # noqa: F401


def main(data_root, out_dir="csv", n_folds=5, seed=42, control_valid_per_type=1, source="rxrx1",
         source_params=None, grouped=True, splits=("train", "valid"), target="single", label_sep=" ",
         duplicates=None, duplicate_mode="group"):
    """Write fold CSVs, the control split and folds.json.

    Args:
        data_root: folder with train.csv, train_controls.csv and test_controls.csv.
        out_dir: output folder (default csv) for train_{k}.csv / valid_{k}.csv,
            control_train.csv / control_valid.csv and folds.json.
        n_folds: number of folds grouped by experiment (default 5).
        seed: shuffling seed of the folds and the control hold-out (default 42).
        control_valid_per_type: whole experiments per cell type held out from the
            control wells as validation (default 1).
        source: input adapter (default rxrx1: the Kaggle layout above); any other source writes
            train_{k}.csv / valid_{k}.csv listing sample ids of its labelled rows.
        source_params: the adapter's settings, e.g. {manifest: m.csv} (other sources only).
        grouped: keep each sample group in one fold (other sources only; default True).
        splits: which of the source's splits are folded (other sources only; default train and valid).
        target: single | multilabel (iterative stratification over the label's classes) | hierarchy.
        label_sep: multilabel: separator of the classes in one label cell (default a space).
        duplicates: a dedup.py CSV (id, dup_group) of near-duplicate images (other sources only).
        duplicate_mode: group (a duplicate group stays in one fold) | drop (keep one image per group).
    """
    if source != "rxrx1":
        return write_folds(data_root, out_dir, n_folds, seed, source, source_params, grouped, splits, target,
                             label_sep, duplicates, duplicate_mode)
    return write_rxrx1_folds(data_root, out_dir, n_folds, seed, control_valid_per_type)


if __name__ == "__main__":
    cli.run(main)
