"""Report pictures: montages of any source, confusion matrix, per-class F1, plate heatmaps, accuracy bars."""
import cv2
import numpy as np
import pandas as pd
import pytest

from cellpipe.core.errors import DataError
from cellpipe.reports import montage, plots
from cellpipe.sources.base import Source

SIZE = 24  # generated image side
TILE = 48  # montage tile side: an exact 2x nearest-neighbour enlargement
MIN_PNG_BYTES = 2000  # a drawn figure, not an empty canvas


# ---------------------------------------------------------------- a fake source


class FakeSource(Source):
    """``n`` samples of ``n_channels`` single-channel PNGs, ``{id}_s{site}_w{channel}.png``.

    Sample k, channel c (1-based) is uniformly ``intensities[c-1]`` plus k in its top-left
    quarter (so samples differ); a channel with intensity None is all zero. Site 2 is all 255.
    """

    name = "fake"
    per_channel_files = True

    def __init__(self, root, n_channels, n=4, intensities=None):
        super().__init__(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.n, self.nch = n, n_channels
        self.intensities = intensities or [40 * (c + 1) for c in range(n_channels)]
        self.sites_seen = []
        for k in range(n):
            for site in self.sites:
                for c in range(1, n_channels + 1):
                    img = np.zeros((SIZE, SIZE), dtype=np.uint8)
                    if site == 2:
                        img[:] = 255
                    elif self.intensities[c - 1] is not None:
                        img[:] = self.intensities[c - 1]
                        img[:SIZE // 2, :SIZE // 2] += k
                    cv2.imwrite(str(self.root / f"s{k}_s{site}_w{c}.png"), img)

    @property
    def channel_names(self):
        return [f"stain{c}" for c in range(1, self.nch + 1)]

    @property
    def sites(self):
        return [1, 2]

    def build_catalog(self):
        return pd.DataFrame({"id": [f"s{k}" for k in range(self.n)], "split": "train",
                             "label": [str(k % 2) for k in range(self.n)]})

    def image_files(self, row, site, channels):
        self.sites_seen.append(site)
        return [self.root / f"{row['id']}_s{site}_w{c}.png" for c in channels]


def find_tile(sheet_rgb, tile):
    """Top-left (x, y) where ``tile`` appears exactly in ``sheet_rgb``, or None."""
    scores = cv2.matchTemplate(sheet_rgb.astype(np.float32), tile.astype(np.float32), cv2.TM_SQDIFF)
    lo, _, loc, _ = cv2.minMaxLoc(scores)
    return loc if lo < 0.5 else None


# ---------------------------------------------------------------- montage_tile colour arithmetic


def test_montage_tile_window_colour_and_saturation():
    colours = [((19, 0, 249), 51), ((255, 0, 25), 64)]
    img = np.zeros((2, 2, 2), dtype=np.float32)
    img[0, 0] = (40, 0)  # 19 * 40 / 51 = 14.9: each contribution is truncated, not rounded
    img[1, 1] = (255, 255)  # both channels saturated: blue sum clipped to 255
    img[1, 0] = (-10, 64)  # below zero clips to 0; channel 2 exactly at its window
    rgb = montage.montage_tile(img, colours)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    np.testing.assert_array_equal(rgb[0, 0], [14, 0, 195])
    np.testing.assert_array_equal(rgb[1, 1], [255, 0, 255])
    np.testing.assert_array_equal(rgb[1, 0], [255, 0, 25])
    np.testing.assert_array_equal(rgb[0, 1], [0, 0, 0])


def test_zero_channel_contributes_nothing():
    rng = np.random.default_rng(0)
    colours = [((0, 0, 255), 100.0), ((0, 255, 0), 80.0), ((255, 0, 255), 200.0)]
    img = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    img[..., 1] = 0
    without = montage.montage_tile(img[..., [0, 2]], [colours[0], colours[2]])
    np.testing.assert_array_equal(montage.montage_tile(img, colours), without)
    assert without.any()  # the other channels did contribute


def test_montage_tile_rejects_channel_count_mismatch():
    with pytest.raises(DataError, match="2 channel colour"):
        montage.montage_tile(np.zeros((4, 4, 3)), [((255, 0, 0), 255), ((0, 255, 0), 255)])


def test_sample_indices_spread_deterministically():
    assert montage.sample_indices(3, 6) == [0, 1, 2]
    picked = montage.sample_indices(100, 5)
    assert picked == montage.sample_indices(100, 5)
    assert picked[0] == 0 and picked[-1] == 99 and len(set(picked)) == 5 and picked == sorted(picked)
    assert montage.sample_indices(10, 1) == [0]


# ---------------------------------------------------------------- write_montage over a fake source


@pytest.mark.parametrize("n_channels", [2, 5])
def test_write_montage_any_channel_count(tmp_path, n_channels):
    src = FakeSource(tmp_path, n_channels, n=4)
    table = src.catalog()
    out = montage.write_montage(src, table, tmp_path / "out" / "m.png", max_samples=3, tile_size=TILE)
    sheet = cv2.cvtColor(cv2.imread(str(out), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert sheet.shape[0] >= 3 * TILE and sheet.shape[1] >= (n_channels + 1) * TILE
    assert set(src.sites_seen) == {1}  # the source's first site by default
    assert not list(out.parent.glob(".*"))  # no temporary file left
    positions = []
    for pos in montage.sample_indices(len(table), 3):  # rows 0, 2, 3 (spread over the table)
        img = src.load(table.iloc[pos].to_dict(), 1, list(range(1, n_channels + 1)))
        tiles = montage.sample_tiles(img, src.colours(), TILE)
        assert len(tiles) == n_channels + 1 and all(t.shape == (TILE, TILE, 3) for t in tiles)
        found = [find_tile(sheet, t) for t in tiles]
        assert all(f is not None for f in found), pos
        assert len({y for _, y in found}) == 1  # one row per sample
        assert [x for x, _ in found] == sorted(x for x, _ in found)  # composite first, then channels
        positions.append(found[0])
    ys = [y for _, y in positions]
    assert ys == sorted(ys) and len(set(ys)) == 3
    assert (sheet[:ys[0]].max(axis=2) > 200).any()  # header and sample label drawn above the first row
    assert (sheet[ys[0] + TILE:ys[1]].max(axis=2) > 200).any()  # the second sample's label, between the rows


def test_write_montage_width_grows_one_tile_per_channel(tmp_path):
    two, five = FakeSource(tmp_path / "two", 2), FakeSource(tmp_path / "five", 5)
    a = cv2.imread(str(montage.write_montage(two, two.catalog(), tmp_path / "a.png", tile_size=TILE)))
    b = cv2.imread(str(montage.write_montage(five, five.catalog(), tmp_path / "b.png", tile_size=TILE)))
    c = cv2.imread(str(montage.write_montage(five, five.catalog(), tmp_path / "c.png", tile_size=TILE,
                                             max_samples=2)))
    assert b.shape[1] - a.shape[1] == 3 * (TILE + montage.GAP)
    assert a.shape[0] == b.shape[0] > c.shape[0]  # 4 samples vs 2
    assert (b.shape[0] - c.shape[0]) % 2 == 0 and b.shape[0] - c.shape[0] >= 2 * TILE


def test_write_montage_channel_subset_site_and_zero_channel(tmp_path):
    src = FakeSource(tmp_path, 5, n=2, intensities=[100, None, 60, 30, 200])
    img = src.load(src.catalog().iloc[0].to_dict(), 1, [3, 2])
    tiles = montage.sample_tiles(img, [src.colours()[2], src.colours()[1]], TILE)  # each channel its own colour
    assert not tiles[2].any()  # the all-zero channel's grey tile is black
    alone = montage.sample_tiles(img[..., :1], [src.colours()[2]], TILE)
    np.testing.assert_array_equal(tiles[0], alone[0])  # and adds nothing to the composite
    out = montage.write_montage(src, src.catalog(), tmp_path / "sub.png", channels=[3, 2], tile_size=TILE)
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert find_tile(sheet, tiles[0]) is not None and find_tile(sheet, tiles[1]) is not None
    montage.write_montage(src, src.catalog(), tmp_path / "site2.png", site=2, tile_size=TILE)
    assert src.sites_seen[-1] == 2


def test_write_montage_rejects_bad_channel_and_empty_table(tmp_path):
    src = FakeSource(tmp_path, 2, n=1)
    with pytest.raises(DataError, match="channel 3"):
        montage.write_montage(src, src.catalog(), tmp_path / "x.png", channels=[3])
    with pytest.raises(DataError, match="empty"):
        montage.write_montage(src, src.catalog().iloc[:0], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- confusion matrix


def test_confusion_counts_exact():
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "b", "a", "b", "c", "a"]
    counts = plots.confusion_counts(truth, pred, ["a", "b", "c"])
    np.testing.assert_array_equal(counts, [[2, 1, 0], [0, 1, 1], [1, 0, 0]])
    assert plots.confusion_counts(truth, pred, ["c", "a"]).tolist() == [[0, 1], [0, 2]]


def test_top_classes_keeps_most_frequent_in_natural_order():
    truth = ["10"] * 3 + ["2"] * 3 + ["1"] * 1 + ["9"] * 2
    assert plots.top_classes(truth, 3) == ["2", "9", "10"]


def write_predictions(path, truth, pred):
    pd.DataFrame({"id": [f"i{k}" for k in range(len(truth))], "pred": pred, "truth": truth}).to_csv(path, index=False)
    return path


def test_confusion_matrix_png_readable_and_natural_order(tmp_path, monkeypatch):
    truth = ["10", "2", "2", "1", "10", ""]  # the empty truth is ignored
    pred = ["10", "2", "10", "1", "2", "1"]
    csv = write_predictions(tmp_path / "p.csv", truth, pred)
    seen = {}
    real = plots.confusion_counts
    monkeypatch.setattr(plots, "confusion_counts", lambda t, p, c: seen.setdefault("args", (t, p, c)) and real(t, p, c))
    out = plots.confusion_matrix_png(csv, tmp_path / "out" / "cm.png")
    assert seen["args"][2] == ["1", "2", "10"]  # '2' before '10': numbers as numbers
    assert len(seen["args"][0]) == 5
    assert out.stat().st_size > MIN_PNG_BYTES
    img = cv2.imread(str(out))
    assert img is not None and min(img.shape[:2]) >= 300
    assert not list(out.parent.glob(".*"))


def test_confusion_matrix_png_without_labels_writes_nothing(tmp_path):
    csv = write_predictions(tmp_path / "p.csv", ["", ""], ["a", "b"])
    assert plots.confusion_matrix_png(csv, tmp_path / "cm.png") is None
    assert not (tmp_path / "cm.png").exists()


def test_confusion_matrix_png_cuts_to_max_classes(tmp_path, monkeypatch):
    truth = [str(c) for c in range(8) for _ in range(c + 1)]  # class 7 most frequent
    pred = ["0"] * len(truth)
    csv = write_predictions(tmp_path / "p.csv", truth, pred)
    titles = []
    monkeypatch.setattr(plots, "_draw_confusion",
                        lambda counts, shown, rows, cols, title, *a: titles.append((counts, shown, rows, cols, title)))
    plots.confusion_matrix_png(csv, tmp_path / "cm.png", max_classes=3)
    counts, shown, rows, cols, title = titles[0]
    assert rows == ["5", "6", "7"] and cols == ["5", "6", "7", plots.OTHER_CLASSES]
    np.testing.assert_array_equal(counts, [[0, 0, 0, 6], [0, 0, 0, 7], [0, 0, 0, 8]])
    np.testing.assert_allclose(shown[:, -1], 1.0)  # rows normalised by their full support
    assert "3 most frequent of 8" in title and f"n={len(truth)}" in title


# ---------------------------------------------------------------- per-class F1 and accuracy bars


def test_per_class_f1_png(tmp_path):
    df = pd.DataFrame({"class": ["01", "2", "10", "macro avg", "weighted avg"], "precision": [1, .5, .2, .6, .6],
                       "recall": [1, .5, .2, .6, .6], "f1": [1, .5, .2, .57, .6], "support": [3, 2, 1, 6, 6]})
    df.to_csv(tmp_path / "per_class.csv", index=False)
    out = plots.per_class_f1_png(tmp_path / "per_class.csv", tmp_path / "f1.png")
    assert out.stat().st_size > MIN_PNG_BYTES and cv2.imread(str(out)) is not None
    df.drop(columns="f1").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="f1"):
        plots.per_class_f1_png(tmp_path / "bad.csv", tmp_path / "bad.png")


def test_accuracy_bars_png_excludes_all_row(tmp_path, monkeypatch):
    acc = pd.DataFrame({"experiment": ["HEPG2-01", "U2OS-01", "ALL"], "acc_argmax": [.5, .6, .55],
                        "acc_assigned": [.7, .8, .75]})
    out = plots.accuracy_bars_png(acc, tmp_path / "acc.png", "demo")
    assert out.stat().st_size > MIN_PNG_BYTES and cv2.imread(str(out)) is not None
    bars = []
    real_bar = plots.plt.Axes.bar
    monkeypatch.setattr(plots.plt.Axes, "bar", lambda self, x, h, *a, **k: bars.append(list(h)) or real_bar(
        self, x, h, *a, **k))
    plots.accuracy_bars_png(acc, tmp_path / "acc2.png", "demo")
    assert bars == [[.5, .6], [.7, .8]]


# ---------------------------------------------------------------- plate heatmaps


def test_parse_well_and_bad_name():
    assert plots.parse_well("B03") == (1, 2)
    assert plots.parse_well("a1") == (0, 0)
    assert plots.parse_well("P24") == (15, 23)
    assert plots.parse_well("AB10") == (27, 9)
    assert plots.parse_well("BA1") == (52, 0)  # AA..AZ are rows 26..51
    assert [plots.parse_well(plots.row_name(r) + "1")[0] for r in range(60)] == list(range(60))
    for bad in ("3B", "B", "B00", "ZZZ1", "B3x"):
        with pytest.raises(DataError, match=bad):
            plots.parse_well(bad)


def test_plate_grid_places_values():
    grid = plots.plate_grid(["B03", "A01", "H12", "B03"], [0.25, 1.0, 0.5, 0.75])
    assert grid.shape == (8, 12)
    assert grid[1, 2] == 0.5  # B03 twice: the mean
    assert grid[0, 0] == 1.0 and grid[7, 11] == 0.5
    assert np.isnan(grid).sum() == 8 * 12 - 3
    with pytest.raises(DataError, match="Q1"):
        plots.plate_grid(["Q1"], [1.0], shape=(8, 12))  # row Q is outside a 96-well plate


def test_plate_shape_snaps_to_96_and_384():
    assert plots.plate_shape(["A01", "H12"]) == (8, 12)
    assert plots.plate_shape(["B02"]) == (8, 12)
    assert plots.plate_shape(["A01", "H13"]) == (16, 24)  # column 13 does not fit 96 wells
    assert plots.plate_shape(["I01"]) == (16, 24)
    assert plots.plate_shape(["P24"]) == (16, 24)
    assert plots.plate_shape(["Q01"]) == (32, 48)
    assert plots.plate_shape(["A60"]) == (1, 60)  # no standard format fits: the extent


def test_plate_heatmap_png(tmp_path, monkeypatch):
    wells = ["B03", "C04", "H12"]
    table = pd.DataFrame({"experiment": np.repeat([f"E{k}" for k in range(30)], 3), "plate": 1,
                          "well": wells * 30, "acc": np.linspace(0, 1, 90)})
    drawn = []
    real = plots._draw_plates
    monkeypatch.setattr(plots, "_draw_plates", lambda *a: drawn.append(a) or real(*a))
    out = plots.plate_heatmap_png(table, "acc", tmp_path / "plates.png", title="accuracy")
    grids, names, shape, title = drawn[0][:4]
    assert len(grids) == plots.MAX_PLATES and names[:3] == ["E0 / 1", "E1 / 1", "E2 / 1"]  # natural order
    assert names[-1] == "E23 / 1" and shape == (8, 12)
    assert "first 24 of 30 plates" in title
    assert grids[1][1, 2] == pytest.approx(table["acc"][3])
    assert out.stat().st_size > MIN_PNG_BYTES and cv2.imread(str(out)) is not None
    bad = table.assign(well=["B03", "X", "C1"] * 30)
    with pytest.raises(DataError, match="'X'"):
        plots.plate_heatmap_png(bad, "acc", tmp_path / "bad.png")
    with pytest.raises(DataError, match="acc2"):
        plots.plate_heatmap_png(table, "acc2", tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
