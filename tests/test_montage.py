"""Colour montages follow the rxrx1-utils channel colours."""
import cv2
import numpy as np
import pandas as pd
import pytest

import montage
import rxrx

SIZE = 32
WELLS = [("U2OS-01", 1, "B02"), ("U2OS-01", 1, "B03")]


@pytest.fixture
def fake_site_root(tmp_path):
    """Two wells, dark everywhere; in the first, channel c is bright only in its own 4-pixel band of rows."""
    for exp, plate, well in WELLS:
        for site in rxrx.SITES:
            for ch in rxrx.CHANNELS:
                img = np.zeros((SIZE, SIZE), dtype=np.uint8)
                if well == "B02":
                    img[4 * ch:4 * ch + 4] = 255
                path = rxrx.image_path(tmp_path, "train", exp, plate, well, site, ch)
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), img)
    return tmp_path


def test_each_channel_shows_its_colour(fake_site_root):
    rgb = montage.site_montage(fake_site_root, "train", *WELLS[0], site=1)
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    for ch, (colour, _) in rxrx.CHANNEL_COLOURS.items():
        assert (rgb[4 * ch:4 * ch + 4] == colour).all(), ch
    assert (rgb[:4] == 0).all() and (rgb[28:] == 0).all()


def test_window_scaling_and_saturation():
    site = np.zeros((2, 2, 2), dtype=np.uint8)
    site[0, 0] = (51 // 2, 0)  # half of channel 1's window
    site[1, 1] = (255, 255)  # channels 1 and 3 full: sum clipped to 255
    rgb = montage.colourise(site, [1, 3])
    np.testing.assert_array_equal(rgb[0, 0], [int(19 * 25 / 51), 0, int(249 * 25 / 51)])
    np.testing.assert_array_equal(rgb[1, 1], [255, 0, 255])
    np.testing.assert_array_equal(rgb[0, 1], [0, 0, 0])


def test_write_montage_tiles_wells_with_labels(fake_site_root, tmp_path):
    rows = pd.DataFrame([{"id_code": rxrx.id_code(*w), "experiment": w[0], "plate": w[1], "well": w[2]}
                         for w in WELLS])
    out = montage.write_montage(fake_site_root, rows, tmp_path / "out" / "m.png", site=2, max_wells=8)
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)  # BGR
    assert sheet.shape[0] > SIZE and sheet.shape[1] >= 2 * SIZE
    # the first tile's channel-3 band (red in RGB) sits at the bottom-left: BGR order on disk
    band = sheet[-SIZE + 12:-SIZE + 16, :SIZE]
    assert (band == [25, 0, 255]).all()
    assert (sheet[:-SIZE].max(axis=2) > 128).any()  # label text drawn above the tiles
    assert not list(out.parent.glob(".*"))
    one = montage.write_montage(fake_site_root, rows, tmp_path / "one.png", max_wells=1)
    assert cv2.imread(str(one)).shape[1] < sheet.shape[1]


def test_bad_rows_raise(fake_site_root, tmp_path):
    with pytest.raises(rxrx.DataError, match="well"):
        montage.write_montage(fake_site_root, pd.DataFrame({"experiment": ["U2OS-01"], "plate": [1]}),
                              tmp_path / "x.png")
    with pytest.raises(rxrx.DataError, match="B09"):
        montage.site_montage(fake_site_root, "train", "U2OS-01", 1, "B09", 1)
