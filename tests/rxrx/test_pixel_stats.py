"""pixel_stats.csv: exact per-image statistics, computed once, clear errors."""
import re

import cv2
import numpy as np
import pandas as pd
import pytest

import make_pixel_stats
from cellpipe.sources import rxrx1 as rxrx

WELLS = {"train": ("RPE-01", 2, "C05"), "test": ("RPE-02", 3, "D07")}


@pytest.fixture
def tiny_root(tmp_path):
    """Hand-made root: one train and one test well of random 32 px images, no control CSVs."""
    rng = np.random.default_rng(0)
    for dataset, (exp, plate, well) in WELLS.items():
        row = {"id_code": rxrx.id_code(exp, plate, well), "experiment": exp, "plate": plate, "well": well}
        if dataset == "train":
            row["sirna"] = 5
        pd.DataFrame([row]).to_csv(tmp_path / f"{dataset}.csv", index=False)
        for site in rxrx.SITES:
            for ch in rxrx.CHANNELS:
                path = rxrx.image_path(tmp_path, dataset, exp, plate, well, site, ch)
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), rng.integers(0, 256, (32, 32), dtype=np.uint8))
    return tmp_path


def test_stats_equal_numpy_on_the_pngs(tiny_root):
    stats = make_pixel_stats.compute_pixel_stats(tiny_root, workers=2)
    assert list(stats.columns) == ["id_code", "experiment", "plate", "well", "site", "channel",
                                   "mean", "std", "median", "min", "max"]
    assert len(stats) == len(WELLS) * 2 * 6
    for dataset, (exp, plate, well) in WELLS.items():
        for site in rxrx.SITES:
            for ch in rxrx.CHANNELS:
                img = cv2.imread(str(rxrx.image_path(tiny_root, dataset, exp, plate, well, site, ch)),
                                 cv2.IMREAD_UNCHANGED).astype(float)
                row = stats[(stats.experiment == exp) & (stats.site == site) & (stats.channel == ch)]
                assert len(row) == 1
                row = row.iloc[0]
                assert row.id_code == rxrx.id_code(exp, plate, well) and row.plate == plate
                np.testing.assert_allclose(row[["mean", "std", "median", "min", "max"]].astype(float),
                                           [img.mean(), img.std(), np.median(img), img.min(), img.max()])


def test_demo_stats_cover_controls(demo_root):
    stats = pd.read_csv(demo_root / "pixel_stats.csv")
    for name in ("train", "test", "train_controls", "test_controls"):
        ids = set(pd.read_csv(demo_root / f"{name}.csv").id_code)
        assert ids <= set(stats.id_code), name
    assert not stats.duplicated(["id_code", "site", "channel"]).any()


def test_write_pixel_stats_default_path(tiny_root):
    path = make_pixel_stats.write_pixel_stats(tiny_root)
    assert path == tiny_root / "pixel_stats.csv" and len(pd.read_csv(path)) == 24


def test_missing_image_names_the_path(tiny_root):
    missing = rxrx.image_path(tiny_root, "test", *WELLS["test"], 2, 4)
    missing.unlink()
    with pytest.raises(rxrx.DataError, match=re.escape(str(missing))):
        make_pixel_stats.compute_pixel_stats(tiny_root)
    with pytest.raises(rxrx.DataError):
        make_pixel_stats.write_pixel_stats(tiny_root)
    assert not (tiny_root / "pixel_stats.csv").exists()  # nothing half-written


def test_missing_required_csv_names_the_file(tiny_root):
    (tiny_root / "test.csv").unlink()
    with pytest.raises(rxrx.DataError, match="test.csv"):
        make_pixel_stats.compute_pixel_stats(tiny_root)


def test_main_writes_atomically(tiny_root, tmp_path):
    out = tmp_path / "stats" / "ps.csv"
    make_pixel_stats.main(str(tiny_root), out=str(out), workers=1)
    assert len(pd.read_csv(out)) == 24
    assert not list(out.parent.glob(".*"))
