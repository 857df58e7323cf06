"""Montages from real sources: the RxRx1 demo (rxrx1-utils colours) and the shared 6-channel Phenix site."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from cellpipe.reports.montage import montage_tile, write_montage
from cellpipe.sources import make_source, rxrx1

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "cellpainting-6ch"


def test_rxrx1_colours_follow_rxrx1_utils():
    img = np.zeros((1, 1, 6), np.float32)
    img[0, 0, 1] = 107  # ConA at its window maximum: pure green-ish colour
    rgb = montage_tile(img, [rxrx1.CHANNEL_COLOURS[c] for c in range(1, 7)])
    assert tuple(rgb[0, 0]) == rxrx1.CHANNEL_COLOURS[2][0]


def test_rxrx1_demo_montage(demo_root, tmp_path):
    source = rxrx1.Rxrx1Source(demo_root)
    wells = rxrx1.unlabelled_table(demo_root / "test.csv")
    out = write_montage(source, wells, tmp_path / "m.png", max_samples=3, tile_size=48)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] >= 3 * 48 and img.shape[1] >= 7 * 48 and img.std() > 5


def test_phenix_site_renders_and_cli_report(tmp_path):
    """The real 16-bit Cell Painting site: load with a percentile window and render all six channels."""
    dp = {"root": str(SHARED), "source": "phenix", "source_params": {},
          "rescale": {"mode": "percentile", "low": 0.5, "high": 99.5}}
    source = make_source(dp)
    out = write_montage(source, source.catalog(), tmp_path / "phenix.png", tile_size=128)
    img = cv2.imread(str(out))
    assert img.shape[1] >= 7 * 128 and img.std() > 10
    # every channel tile carries structure (a blank or saturated tile has almost no spread)
    tiles = [img[-128:, -128 * (i + 1):img.shape[1] - 128 * i] for i in range(6)]
    assert all(t.std() > 5 for t in tiles)
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'src');"
                        "from cellpipe.sources import make_source; print(make_source({'root': sys.argv[1], "
                        "'source': 'phenix'}).catalog().shape[0])", str(SHARED)],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr


def test_phenix_site_converts_to_rxrx1_layout(tmp_path):
    r = subprocess.run([sys.executable, "src/convert_to_rxrx1.py", "--root", str(SHARED), "--out_dir", str(tmp_path),
                        "--rescale", "{mode: percentile, low: 0.5, high: 99.5}", "--tiles", "2"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pngs = sorted((tmp_path / "train" / "EXP-01" / "Plate1").glob("C03_s*_w*.png"))
    assert len(pngs) == 4 * 6  # one field cut into 2 x 2 sites, six channels each
    img = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (540, 540) and img.dtype == np.uint8 and img.std() > 5
    bad = subprocess.run([sys.executable, "src/convert_to_rxrx1.py", "--root", str(SHARED), "--out_dir",
                          str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "rescale" in bad.stderr
