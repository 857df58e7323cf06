"""Per-image pixel statistics in Kaggle's ``pixel_stats.csv`` format: an explicit prep step.

One row per (well, site, channel) of every well listed in train.csv, test.csv and,
when present, the two control CSVs: mean, std, median, min and max of the 8-bit
pixel values. Training never writes this file (the data folder may be read-only);
without it, statistics are computed in memory from the images at start-up.

    python src/make_pixel_stats.py --data_root /data [--out /cache/pixel_stats.csv]
"""
from cellpipe.core import cli
from cellpipe.rxrx.pixel_stats import (  # noqa: F401
    STATS_COLUMNS,
    compute_pixel_stats,
    list_wells,
    main,
    stats_path,
    write_pixel_stats,
)

if __name__ == "__main__":
    cli.run(main)
