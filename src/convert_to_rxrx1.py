"""Convert a plate-based source (e.g. an Opera Phenix export) into the RxRx1 image layout.

    python src/convert_to_rxrx1.py --root ../shared/data/cellpainting-6ch --out_dir data/phenix_rxrx \
        --source phenix --rescale "{mode: percentile, low: 0.5, high: 99.5}" --tiles 2
"""
from cellpipe.core import cli, fsutil
from cellpipe.core.images import check_rescale
from cellpipe.prep.convert import convert
from cellpipe.sources import make_source


def main(root, out_dir, source="phenix", source_params=None, rescale=None, experiment="EXP-01", dataset="train",
         tiles: int = 1):
    """Write {out_dir}/{dataset}/{experiment}/Plate{p}/{well}_s{site}_w{ch}.png and sites.csv.

    Args:
        root: the source's data folder.
        out_dir: output folder of the RxRx1 layout.
        source: input adapter (default phenix); it must have wells (plate-based).
        source_params: the adapter's settings, e.g. {plate_map: platemap.csv}.
        rescale: rule for deeper-than-8-bit images, e.g. {mode: percentile, low: 0.5, high: 99.5}.
        experiment: experiment name of the written tree (default EXP-01).
        dataset: train or test folder (default train).
        tiles: cut each field into tiles x tiles sites (default 1: whole fields).
    """
    check_rescale(rescale)
    src = make_source({"root": root, "source": source, "source_params": source_params or {}, "rescale": rescale})
    sites = convert(src, out_dir, experiment, dataset, int(tiles))
    fsutil.write_csv(sites, f"{out_dir}/sites.csv")
    print(f"wrote {len(sites)} site(s) x {src.n_channels} channel(s) to {out_dir}")


if __name__ == "__main__":
    cli.run(main)
