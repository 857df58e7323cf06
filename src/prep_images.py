"""Seed 003's prep: class folders of large images -> resized PNGs in training/validation/test folders.

    python src/prep_images.py data/tissue data/tissue_256 --size 256 --filter area
    python src/prep_images.py data/tiff16 data/cv_320x240 --size 320,240 --split none --rescale "{mode: full}"
    python src/prep_images.py data/tiff16 data/tiff16_256 --rescale "{mode: percentile, low: 0.5, high: 99.5}"
"""
from cellpipe.core import cli
from cellpipe.prep import resize


def main(in_dir, out_dir, size=resize.DEFAULT_SIZE, filter="bicubic", split="random",
         fractions=resize.DEFAULT_FRACTIONS, seed=0, workers=None, rescale=None,
         overwrite=False):
    """Resize every image of IN_DIR/<class>/ into OUT_DIR as PNG; writes split.csv, skipped.csv and prep.json there.

    Args:
        in_dir: input folder of class sub-folders, IN_DIR/<class>/<image> (PNG, JPEG, TIFF; 8 or 16 bit;
            grey or RGB).
        out_dir: output folder; gets training/, validation/ and test/ with one folder per class (or the
            class folders alone with --split none). Must be empty or absent unless --overwrite.
        size: output size (default 256): an int for a square, or W,H (e.g. 320,240).
        filter: resize interpolation (default bicubic): nearest, bilinear, bicubic, area or lanczos.
        split: random (default) splits each class into training/validation/test by --fractions, seeded;
            none puts every image in OUT_DIR/<class>/ (for cross-validation).
        fractions: training,validation,test fractions summing to 1 (default 0.8,0.1,0.1); each class
            gets an image in every split with a positive fraction once it has enough images.
        seed: seed of the split shuffle (default 0).
        workers: worker processes (default: the number of CPUs); 1 runs in this process.
        rescale: rule that brings 16-bit (or float) images to 8 bit (default None, which makes such an
            image an error); a mapping as data_params/rescale with mode full, bits, percentile or window,
            written in YAML flow style (examples at the top of this file).
        overwrite: replace an OUT_DIR that an earlier run of this tool wrote (default False).
    """
    summary = resize.prepare_images(in_dir, out_dir, size=size, interpolation=filter, split=split,
                                    fractions=fractions, seed=seed, workers=workers, rescale=rescale,
                                    overwrite=overwrite)
    per_split = {}
    for counts in summary["counts"].values():
        for name, n in counts.items():
            per_split[name] = per_split.get(name, 0) + n
    splits = f" ({', '.join(f'{k} {v}' for k, v in per_split.items())})" if summary["split"] != resize.NO_SPLIT else ""
    print(f"wrote {summary['written']} PNG(s) of {len(summary['counts'])} class(es) to {out_dir}{splits}; "
          f"skipped {summary['skipped']} unreadable" + (f" (see {resize.SKIPPED_CSV})" if summary["skipped"] else ""))


if __name__ == "__main__":
    cli.run(main)
