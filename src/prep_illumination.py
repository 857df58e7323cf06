"""Illumination functions per plate and channel, for ``data_params/illumination``.

    python src/prep_illumination.py --root data/demo --out_dir data/demo/illum [--source rxrx1]
    python src/prep_illumination.py --root /screen --source loaddata --source_params "{csv: load_data.csv}" \\
        --out_dir /screen/illum --method median --work_size 256 --window 25

Then train, predict and profile with ``--data_params/illumination=data/demo/illum``. See
cellpipe.prep.illumination for the method; illumination.png shows the most uneven plate before
and after.
"""
from cellpipe.core import cli
from cellpipe.prep import illumination
from cellpipe.sources import make_source


def main(root: str, out_dir: str, source: str = "rxrx1", source_params=None, sites=None, method: str = "polynomial",
         degree: int = 2, work_size: int = 128, window: int = 15, sigma: float = 4.0, floor_percentile: float = 2.0,
         overwrite: bool = False) -> str:
    """Write OUT_DIR/illumination.csv, one .npy per plate and channel, and illumination.png.

    Args:
        root: data folder of the source.
        out_dir: output folder (must be empty or absent unless --overwrite; written whole or not at all).
        source: input adapter with plates (rxrx1, rxrx1_2020, phenix, loaddata, imagexpress, ...).
        source_params: the adapter's settings (YAML flow mapping), as data_params/source_params.
        sites: sites averaged (default: all).
        method: polynomial (default: a 2-D polynomial fit, right for a vignette and for plates of few
            sites) | median (median filter + Gaussian: uneven fields beyond a polynomial; needs many sites).
        degree: the polynomial's degree (default 2).
        work_size: the mean image is smoothed at this size (long side, px; default 128).
        window: median: filter size at the work size (px; default 15).
        sigma: median: Gaussian smoothing after the median (px at the work size; default 4).
        floor_percentile: values below this percentile of the function are raised to it (default 2).
        overwrite: replace an existing OUT_DIR.
    """
    src = make_source({"source": source, "root": root,
                       "source_params": cli.mapping(source_params, "source_params") or {}})
    manifest = illumination.compute(src, out_dir, sites=sites, method=method, degree=degree,
                                    work_size=work_size, window=window, sigma=sigma,
                                    floor_percentile=floor_percentile, overwrite=overwrite)
    print(f"wrote {len(manifest)} illumination function(s) of {manifest['plate'].nunique()} plate(s) to {out_dir} "
          f"(range {manifest['min'].min():.2f}..{manifest['max'].max():.2f}; see {out_dir}/{illumination.PNG})")
    return str(out_dir)


if __name__ == "__main__":
    cli.run(main)
