"""Seed 001's prep: merge species folders of several sources into one image folder of symbolic links.

    python src/merge_folders.py data/moths data/source_a data/source_b --min_samples 20
"""
from cellpipe.core import cli
from cellpipe.prep import merge


def main(out_root, *sources, out_name=merge.OUT_NAME, min_samples=0, workers=None):
    """Link every readable image of SOURCE/<Species>/ into OUT_ROOT/OUT_NAME/<Species>/; hide corrupt ones.

    Writes OUT_ROOT/hidden.csv (path, reason of each image left out) and OUT_ROOT/<OUT_NAME>_counts.csv
    (species, n_images). A re-run replaces the link tree whole.

    Args:
        out_root: folder that gets the link tree and the two CSVs.
        sources: source folders, each SOURCE/<Species>/<image>; the same species in several sources
            merges into one folder, and a file name several sources share is prefixed with the source
            folder's name (source_a__1.png).
        out_name: name of the link tree under OUT_ROOT (default image_folder).
        min_samples: only reported (default 0: off): the species with fewer images are listed; training
            bundles them into Other (data_params/min_samples).
        workers: worker processes that decode the images (default: the number of CPUs); 1 runs in this
            process.
    """
    summary = merge.merge_folders(out_root, sources, out_name=out_name, min_samples=min_samples, workers=workers)
    print(merge.summary_text(summary, min_samples))


if __name__ == "__main__":
    cli.run(main)
