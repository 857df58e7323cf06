"""Single-cell crops of a source's images, for training with ``data_params/source: cells``.

    python src/prep_crops.py --root data/demo --out_dir data/demo_cells --crop_size 24 --nucleus_channel 1
    python src/prep_crops.py --root /screen --source loaddata --rescale "{mode: bits, bits: 16}" \\
        --nuclei /screen/Nuclei.csv --out_dir /screen/cells --crop_size 96

Then train on cells (a sample is a cell, its group the well) with ``--data_params/source=cells
--data_params/root=OUT_DIR`` and profile them with src/profile.py (cells are averaged per well).
See cellpipe.prep.crops for the files and the detector.
"""
from cellpipe.core import cli
from cellpipe.prep import crops
from cellpipe.sources import make_source


def main(root: str, out_dir: str, source: str = "rxrx1", source_params=None, rescale=None, illumination=None,
         crop_size: int = 32, nuclei: str = None, nucleus_channel: int = 1, sigma: float = 2.0, min_area: int = 20,
         max_cells: int = 50, sites=None, overwrite: bool = False) -> str:
    """Write OUT_DIR/cells.parquet, crops.npy and cells.json.

    Args:
        root: data folder of the source.
        out_dir: output folder (empty or absent unless --overwrite; written whole or not at all).
        source: input adapter (rxrx1, loaddata, imagexpress, ome, phenix, ...).
        source_params: the adapter's settings (YAML flow mapping), as data_params/source_params.
        rescale: the rule that brings deeper images to 8 bit (as data_params/rescale).
        illumination: a data_params/illumination folder, applied before cutting.
        crop_size: crop side in pixels of the images (default 32).
        nuclei: a nucleus CSV (CellProfiler: Metadata_Plate, Metadata_Well, Metadata_Site,
            Location_Center_X, Location_Center_Y; or id, site, x, y); default: the built-in detector.
        nucleus_channel: the DNA channel (1-based) the detector reads (default 1).
        sigma: the detector's Gaussian smoothing (px; default 2).
        min_area: the detector's smallest nucleus (px; default 20).
        max_cells: at most this many cells per site, largest first (default 50).
        sites: sites used (default all).
        overwrite: replace an existing OUT_DIR.
    """
    src = make_source({"source": source, "root": root, "source_params": cli.mapping(source_params, "source_params") or {},
                       "rescale": cli.mapping(rescale, "rescale"),
                       "illumination": illumination})
    meta = crops.make_crops(src, out_dir, crop_size=crop_size, nuclei=nuclei, nucleus_channel=nucleus_channel,
                            sigma=sigma, min_area=min_area, max_cells=max_cells, sites=sites, overwrite=overwrite)
    print(f"wrote {meta['cells']} cell crops ({crop_size} px) of {meta['samples']} samples to {out_dir}")
    return str(out_dir)


if __name__ == "__main__":
    cli.run(main)
