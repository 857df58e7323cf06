"""Generate a small synthetic data set in the exact RxRx1 Kaggle layout
(or another adapter's format with --kind; see cellpipe/demo/).

    python src/make_demo_data.py --out_dir data/demo [--kind rxrx1|manifest|folder|phenix|rxrx1_2020|hpa|moths]
"""
from cellpipe.core import cli
from cellpipe.demo.rxrx1 import main  # noqa: F401

if __name__ == "__main__":
    cli.run(main)
