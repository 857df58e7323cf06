"""Well tables, site loading, normalisation, augmentation and bad-input errors."""
import os
import shutil
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import pytest
import torch

from cellpipe.core.config import load_config
from cellpipe.core.errors import DataError
from cellpipe.data.build import load_normalizer, make_dataset
from cellpipe.data.dataset import verify_files
from cellpipe.data.normalize import Normalizer
from cellpipe.data.transforms import build_transforms, worker_init_fn
from cellpipe.sources import rxrx1 as rxrx
from cellpipe.sources.base import TABLE_COLUMNS
from cellpipe.sources.rxrx1 import TABLES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
N_SIRNAS, CONTROL_OFFSET, N_CONTROLS = 16, 16, 4  # conftest.DEMO_KWARGS
NATIVE = 32  # demo image size


def with_source(dp: dict, **params) -> dict:
    """``dp`` with these rxrx1 adapter settings (data_params/source_params)."""
    return {**dp, "source_params": {**(dp.get("source_params") or {}), **params}}


@pytest.fixture
def dp(demo_root, demo_csv):
    """The demo config's data_params on the demo set: channels [1,3,5], 24 px, no augmentation."""
    cfg = load_config(CONFIGS / "config.yml", [CONFIGS / "demo.yml"], [
        f"--data_params/root={demo_root}", f"--data_params/train_csv={demo_csv}/train_0.csv",
        f"--data_params/valid_csv={demo_csv}/valid_0.csv", "--data_params/channels=[1,3,5]",
        "--data_params/image_size=24", "--data_params/normalization=image",
        "--data_params/augmentations={train: [], valid: []}"])
    return cfg["data_params"]


@pytest.fixture(scope="module")
def stats(demo_root):
    return pd.read_csv(demo_root / "pixel_stats.csv")


@pytest.fixture
def root_copy(demo_root, tmp_path):
    """A hard-linked copy of the demo set that a test may break (unlink before rewriting a file)."""
    dst = tmp_path / "data"
    shutil.copytree(demo_root, dst, copy_function=os.link)
    return dst


LEVEL_KEYS = {"image": ["id", "site"], "plate": ["experiment", "plate"], "experiment": ["experiment"]}


def _norm(mode, stats, **kwargs):
    """A Normalizer fitted on a pixel_stats table (Kaggle format)."""
    return Normalizer(mode, LEVEL_KEYS[mode], **kwargs).add(stats.assign(id=stats["id_code"]), len(rxrx.CHANNELS))


def _raw(root, row, site, channels):
    return rxrx.load_site(root, row["dataset"], row["experiment"], row["plate"], row["well"], site, channels)


# ------------------------------------------------------------------ tables


def test_non_pseudo_table(demo_csv):
    csv = demo_csv / "train_0.csv"
    src = pd.read_csv(csv)
    table = TABLES.build("non_pseudo", csv=csv)
    assert list(table.columns[:len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    assert len(table) == len(src)
    assert (table["dataset"] == "train").all()
    assert (table["label"] == src["sirna"].astype(str)).all()  # labels are class names (text)
    assert set(table["label"]) <= {str(i) for i in range(N_SIRNAS)}
    assert (table["id"] == table["id_code"]).all() and (table["group"] == table["experiment"]).all()
    assert list(table["id_code"]) == [f"{e}_{p}_{w}" for e, p, w in zip(src.experiment, src.plate, src.well)]


def test_pseudo_table_mixes_train_and_test(demo_root, demo_csv, tmp_path, dp):
    train = pd.read_csv(demo_csv / "train_0.csv").assign(dataset="train")
    test = pd.read_csv(demo_root / "test_labels.csv").assign(dataset="test")
    csv = tmp_path / "pseudo.csv"
    pd.concat([train.head(5), test.head(5)]).to_csv(csv, index=False)
    table = TABLES.build("pseudo", csv=csv)
    assert list(table["dataset"]) == ["train"] * 5 + ["test"] * 5
    assert list(table["label"]) == [str(s) for s in list(train.sirna.head(5)) + list(test.sirna.head(5))]
    # test rows are read from test/, train rows from train/
    ds = make_dataset({**with_source(dp, dataset="pseudo"), "image_size": NATIVE}, "valid", num_classes=N_SIRNAS, csv=csv)
    for i in (0, 9):
        row = table.iloc[i]
        got = ds[i]["features"][0].numpy()  # site 1, C x H x W
        raw = _raw(demo_root, row, 1, dp["channels"]).transpose(2, 0, 1).astype(np.float32)
        for c in range(len(dp["channels"])):  # normalisation is affine per channel
            assert np.corrcoef(got[c].ravel(), raw[c].ravel())[0, 1] > 0.999
    assert not (demo_root / "train" / test.experiment.iloc[0]).exists()  # only test/ holds it


def test_pseudo_table_rejects_bad_dataset_value(demo_csv, tmp_path):
    csv = tmp_path / "pseudo.csv"
    pd.read_csv(demo_csv / "train_0.csv").assign(dataset="valid").to_csv(csv, index=False)
    with pytest.raises(DataError, match="dataset") as e:
        TABLES.build("pseudo", csv=csv)
    assert str(csv) in str(e.value) and "valid" in str(e.value)


def test_control_table_maps_labels(demo_csv):
    csv = demo_csv / "control_train.csv"
    src = pd.read_csv(csv)
    table = TABLES.build("control", csv=csv, control_offset=CONTROL_OFFSET)
    assert (table["label"] == (src["sirna"] - CONTROL_OFFSET).astype(str)).all()
    assert set(table["label"]) == {str(i) for i in range(N_CONTROLS)}
    assert set(table["dataset"]) == {"train", "test"}  # controls of both image folders


def test_test_table(demo_root):
    table = TABLES.build("test", csv=demo_root / "test.csv")
    assert len(table) == len(pd.read_csv(demo_root / "test.csv"))
    assert table["label"].isna().all() and (table["dataset"] == "test").all()


def test_unknown_table_kind_lists_known(demo_csv):
    with pytest.raises(KeyError, match="non_pseudo"):
        TABLES.build("psuedo", csv=demo_csv / "train_0.csv")


def test_test_kind_skips_label_check(dp, demo_root):
    ds = make_dataset(dp, "valid", num_classes=N_SIRNAS, csv=demo_root / "test.csv", table="test")
    item = ds[0]
    assert item["targets"] == -1
    assert item["features"].shape == (2, 3, 24, 24)


@pytest.mark.parametrize("kind,csv_name,num_classes,offset", [
    ("non_pseudo", "train_0.csv", N_SIRNAS - 1, CONTROL_OFFSET),   # label 15 does not fit 15 classes
    ("control", "control_train.csv", N_CONTROLS, 1108),           # forgot control_offset: negative labels
    ("control", "control_train.csv", N_CONTROLS - 1, CONTROL_OFFSET),
])
def test_labels_outside_num_classes(dp, demo_csv, kind, csv_name, num_classes, offset):
    csv = demo_csv / csv_name
    with pytest.raises(DataError) as e:
        make_dataset(with_source(dp, dataset=kind, control_offset=offset), "train", num_classes=num_classes, csv=csv)
    assert str(csv) in str(e.value)
    assert f"({num_classes} classes" in str(e.value) and "is not a class" in str(e.value)


def test_control_dataset_fits_four_classes(dp, demo_csv):
    ds = make_dataset(with_source(dp, dataset="control", control_offset=CONTROL_OFFSET), "train",
                      num_classes=N_CONTROLS, csv=demo_csv / "control_train.csv")
    assert {ds[i]["targets"] for i in range(len(ds))} == set(range(N_CONTROLS))


# ------------------------------------------------------------------ items


def test_train_item_shape(dp):
    ds = make_dataset(dp, "train", num_classes=N_SIRNAS)
    assert ds.train
    for i in (0, len(ds) - 1):
        item = ds[i]
        x = item["features"]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
        assert x.shape == (3, 24, 24)
        assert torch.isfinite(x).all()
        assert item["targets"] == int(ds.table["label"][i]) and item["index"] == i


def test_eval_item_has_every_site_and_is_deterministic(dp):
    ds = make_dataset(dp, "valid", num_classes=N_SIRNAS)
    assert not ds.train
    a, b = ds[3]["features"], ds[3]["features"]
    assert a.shape == (2, 3, 24, 24)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # two different sites


def test_train_draws_sites_from_train_sites(dp):
    both = make_dataset({**dp, "image_size": NATIVE}, "valid", num_classes=N_SIRNAS)[0]["features"]
    seen = set()
    ds = make_dataset({**dp, "image_size": NATIVE, "train_sites": [1, 2]}, "train", num_classes=N_SIRNAS,
                      csv=dp["valid_csv"])
    for _ in range(30):
        x = ds[0]["features"]
        seen |= {s for s in (0, 1) if torch.equal(x, both[s])}
    assert seen == {0, 1}
    only2 = make_dataset({**dp, "image_size": NATIVE, "train_sites": [2]}, "train", num_classes=N_SIRNAS,
                         csv=dp["valid_csv"])
    assert all(torch.equal(only2[0]["features"], both[1]) for _ in range(5))


def test_resize_keeps_channel_order_and_mean(dp, demo_root):
    big = make_dataset({**dp, "image_size": NATIVE, "normalization": "none"}, "valid")[0]["features"]
    small = make_dataset({**dp, "normalization": "none"}, "valid")[0]["features"]
    assert big.shape[-1] == NATIVE and small.shape[-1] == 24
    # area interpolation preserves each channel's mean
    assert torch.allclose(big.mean(dim=(-1, -2)), small.mean(dim=(-1, -2)), atol=2e-3)


def test_channel_subset_selects_the_right_planes(dp, demo_root):
    row = TABLES.build("non_pseudo", csv=dp["valid_csv"]).iloc[0]
    ds = make_dataset({**dp, "image_size": NATIVE, "normalization": "none", "channels": [5, 1]}, "valid")
    x = ds[0]["features"][0].numpy()
    for i, c in enumerate([5, 1]):
        plane = rxrx.load_site(demo_root, "train", row.experiment, row.plate, row.well, 1, [c])[..., 0]
        np.testing.assert_allclose(x[i], plane / 255.0, rtol=1e-6)


# ------------------------------------------------------------------ normalisation


def test_image_normalization_matches_pixel_stats_row(dp, demo_root, stats):
    channels = [1, 3, 5]
    ds = make_dataset({**dp, "image_size": NATIVE}, "valid")
    row = ds.table.iloc[2]
    x = ds[2]["features"].numpy()
    raw = _raw(demo_root, row, 1, channels).astype(np.float64)
    for i, c in enumerate(channels):
        s = stats[(stats.id_code == row["id_code"]) & (stats.site == 1) & (stats.channel == c)].iloc[0]
        np.testing.assert_allclose(x[0, i], (raw[..., i] - s["mean"]) / s["std"], rtol=1e-4, atol=1e-4)
    # each site's own stats: zero mean and unit std per channel
    np.testing.assert_allclose(x.mean(axis=(-1, -2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(-1, -2)), 1.0, atol=1e-3)


@pytest.mark.parametrize("mode,keys", [("plate", ["experiment", "plate"]), ("experiment", ["experiment"])])
def test_group_normalization_uses_pooled_pixels(demo_root, stats, mode, keys):
    """Brute force: the stats of every pixel of every site in the plate / experiment."""
    norm = _norm(mode, stats)
    first = stats.iloc[0]
    group = stats[np.logical_and.reduce([stats[k] == first[k] for k in keys])]
    wells = group.drop_duplicates(["id_code", "site"])
    datasets = {}
    for name in rxrx.DATASETS:
        ids = pd.read_csv(demo_root / f"{name}.csv").id_code
        ids = pd.concat([ids, pd.read_csv(demo_root / f"{name}_controls.csv").id_code])
        datasets.update({i: name for i in ids})
    pixels = np.concatenate([
        _raw(demo_root, {**w, "dataset": datasets[w["id_code"]]}, w["site"], rxrx.CHANNELS).reshape(-1, 6)
        for w in wells.to_dict("records")]).astype(np.float64)
    mean, std = pixels.mean(0), pixels.std(0)
    row = {"id_code": first["id_code"], "experiment": first["experiment"], "plate": first["plate"]}
    img = np.full((2, 2, 6), 100, np.uint8)
    got = norm(img, row, 1, list(rxrx.CHANNELS))
    np.testing.assert_allclose(got[0, 0], (100 - mean) / std, rtol=1e-4)
    # a different plate or experiment gets different stats
    other = stats[np.logical_or.reduce([stats[k] != first[k] for k in keys])].iloc[0]
    assert not np.allclose(norm(img, other, 1, list(rxrx.CHANNELS))[0, 0], got[0, 0])


def test_none_normalization_divides_by_255():
    img = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2) * 20
    out = Normalizer("none")(img, {}, 1, [1, 2])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, img / 255.0, rtol=1e-6)


def test_min_std_floors_the_divisor(stats):
    row = stats.iloc[0]
    floor = float(stats[(stats.id_code == row.id_code) & (stats.site == row.site)]["std"].max()) * 2
    norm = _norm("image", stats, min_std=floor)
    out = norm(np.full((1, 1, 6), 50, np.uint8), {"id": row.id_code}, row.site, list(rxrx.CHANNELS))
    means = stats[(stats.id_code == row.id_code) & (stats.site == row.site)].sort_values("channel")["mean"]
    np.testing.assert_allclose(out[0, 0], (50 - means.to_numpy()) / floor, rtol=1e-5)


def test_unknown_normalization(dp):
    with pytest.raises(DataError, match="foo"):
        load_normalizer({**dp, "normalization": "foo"})


def test_missing_site_stats_named(stats):
    norm = _norm("image", stats, source="stats.csv")
    with pytest.raises(DataError, match="stats.csv"):
        norm(np.zeros((2, 2, 1), np.uint8), {"id": "NOPE-01_1_B02"}, 1, [1])


def test_plate_stats_computed_in_memory_when_absent(root_copy, stats, dp):
    """Without pixel_stats.csv the plate stats come from the images; nothing is written into the data root."""
    (root_copy / "pixel_stats.csv").unlink()
    before = sorted(p.name for p in root_copy.iterdir())
    norm = load_normalizer({**dp, "root": str(root_copy), "pixel_stats": None, "normalization": "plate"})
    assert sorted(p.name for p in root_copy.iterdir()) == before
    shipped = _norm("plate", stats[stats.id_code.isin(pd.read_csv(root_copy / "train.csv").id_code)
                                   | stats.id_code.isin(pd.read_csv(root_copy / "test.csv").id_code)])
    assert norm.table.keys() == shipped.table.keys()
    for key in shipped.table:
        np.testing.assert_allclose(norm.table[key], shipped.table[key], rtol=1e-5)


def test_image_normalization_without_stats_uses_the_image_itself():
    img = np.stack([np.arange(16, dtype=np.float32).reshape(4, 4), np.full((4, 4), 7, np.float32)], axis=-1)
    out = Normalizer("image", ["id", "site"], min_std=1.0)(img, {"id": "x"}, 1, [1, 2])
    np.testing.assert_allclose(out[..., 0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(out[..., 0].std(), 1, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], 0)  # a flat channel: std floored at min_std, mean removed


# ------------------------------------------------------------------ augmentation


def test_build_transforms_from_yaml_list():
    aug = build_transforms([{"transform": "HorizontalFlip", "p": 1.0},
                            {"transform": "Affine", "shear": [-8, 8], "p": 0.3}])
    assert isinstance(aug, A.Compose)
    assert [type(t).__name__ for t in aug.transforms] == ["HorizontalFlip", "Affine"]
    assert build_transforms([]) is None and build_transforms(None) is None


def test_build_transforms_unknown_name():
    with pytest.raises(DataError, match="NoSuchFlip"):
        build_transforms([{"transform": "HorizontalFlip"}, {"transform": "NoSuchFlip", "p": 1}])
    with pytest.raises(DataError, match=r"augmentations\[0\]"):
        build_transforms([{"p": 1}])  # no transform key


def test_build_transforms_bad_value():
    with pytest.raises(DataError, match=r"augmentations\[1\] HorizontalFlip"):
        build_transforms([{"transform": "VerticalFlip"}, {"transform": "HorizontalFlip", "p": 2}])


def test_build_transforms_unknown_argument():
    with pytest.raises(DataError, match="not_an_arg"):
        build_transforms([{"transform": "HorizontalFlip", "not_an_arg": 3}])


def test_augmentations_change_train_not_eval(dp):
    augs = {"train": [{"transform": "HorizontalFlip", "p": 1.0}], "valid": []}
    params = {**dp, "augmentations": augs, "train_sites": [1]}
    plain = make_dataset({**dp, "train_sites": [1]}, "train", csv=dp["valid_csv"])[0]["features"]
    flipped = make_dataset(params, "train", csv=dp["valid_csv"])[0]["features"]
    assert not torch.equal(plain, flipped)
    assert torch.equal(flipped, torch.flip(plain, dims=[-1]))
    ev_aug = make_dataset(params, "valid")[0]["features"]
    ev_plain = make_dataset(dp, "valid")[0]["features"]
    assert torch.equal(ev_aug, ev_plain)
    assert torch.equal(ev_aug[0], plain)


def test_default_augmentations_vary_training_images(dp):
    cfg = load_config(CONFIGS / "config.yml")  # base.yml's train augmentations
    params = {**dp, "augmentations": cfg["data_params"]["augmentations"], "train_sites": [1]}
    ds = make_dataset(params, "train", csv=dp["valid_csv"])
    draws = [ds[0]["features"] for _ in range(12)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert all(d.shape == (3, 24, 24) for d in draws)


def test_seeded_augmentations_are_reproducible(dp):
    """albumentations 2 ignores global seeds: the run's seed must reach Compose."""
    cfg = load_config(CONFIGS / "config.yml")
    params = {**dp, "augmentations": cfg["data_params"]["augmentations"], "train_sites": [1]}

    def draws(seed):
        ds = make_dataset(params, "train", csv=dp["valid_csv"], seed=seed)
        return [ds[0]["features"] for _ in range(8)]

    a, b, c = draws(7), draws(7), draws(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(x, y) for x, y in zip(a, c))


def test_workers_get_distinct_augmentation_streams(dp):
    """Each DataLoader worker reseeds the pipeline, so workers do not repeat each other."""
    from torch.utils.data import DataLoader

    params = {**dp, "augmentations": {"train": [{"transform": "HorizontalFlip", "p": 0.5},
                                                {"transform": "RandomRotate90", "p": 1.0}]},
              "train_sites": [1]}
    ds = make_dataset(params, "train", csv=dp["valid_csv"], seed=3)
    ds.rows = [ds.rows[0]] * 16  # the same well everywhere: only augmentation differs

    def epoch(seed):
        torch.manual_seed(seed)
        loader = DataLoader(ds, batch_size=8, num_workers=2, worker_init_fn=worker_init_fn)
        return torch.cat([b["features"] for b in loader])

    first, again = epoch(0), epoch(0)
    assert torch.equal(first, again)  # reproducible for a fixed torch seed
    assert not torch.equal(first[:8], first[8:])  # the two workers' batches differ


# ------------------------------------------------------------------ bad inputs


def _first_image(csv, site=1, channel=1, root=None):
    row = TABLES.build("non_pseudo", csv=csv).iloc[0]
    return row, rxrx.image_path(root, row.dataset, row.experiment, row.plate, row.well, site, channel)


def test_missing_image_named_by_verify_files(root_copy, dp):
    row, path = _first_image(dp["train_csv"], site=2, channel=3, root=root_copy)
    path.unlink()
    with pytest.raises(DataError) as e:
        make_dataset({**dp, "root": str(root_copy)}, "train", num_classes=N_SIRNAS)
    assert str(path) in str(e.value)
    assert "1 missing" in str(e.value)
    source = rxrx.Rxrx1Source(root_copy, **dp["source_params"])
    with pytest.raises(DataError, match="w3.png"):
        verify_files(TABLES.build("non_pseudo", csv=dp["train_csv"]), source, [1, 3, 5], [1, 2])
    verify_files(TABLES.build("non_pseudo", csv=dp["train_csv"]), source, [1, 3, 5], [1])  # site 1 is complete


def test_missing_image_named_on_load(root_copy, dp):
    row, path = _first_image(dp["valid_csv"], site=1, channel=5, root=root_copy)
    path.unlink()
    ds = make_dataset({**dp, "root": str(root_copy), "check_files": False}, "valid")
    ds[1]  # other wells load
    with pytest.raises(DataError) as e:
        ds[0]
    assert str(path) in str(e.value) and "not found" in str(e.value)


def test_corrupt_png(root_copy, dp):
    row, path = _first_image(dp["valid_csv"], site=2, channel=1, root=root_copy)
    path.unlink()  # a hard link: unlink first so the shared demo set stays intact
    path.write_bytes(b"\x89PNG garbage, not an image" * 4)
    ds = make_dataset({**dp, "root": str(root_copy)}, "valid")  # the file exists, so verify_files passes
    with pytest.raises(DataError) as e:
        ds[0]
    assert "cannot decode" in str(e.value) and str(path) in str(e.value)


def test_channel_7_in_dataset(dp):
    source = rxrx.Rxrx1Source(dp["root"], **dp["source_params"])
    with pytest.raises(DataError, match="channel 7 is outside 1-6"):
        source.check_channels([1, 7])


def test_channel_7_in_make_dataset(dp):
    with pytest.raises(DataError, match="channel 7"):
        make_dataset({**dp, "channels": [1, 7]}, "train")


def test_csv_without_sirna_column(dp, demo_csv, tmp_path):
    csv = tmp_path / "no_sirna.csv"
    pd.read_csv(demo_csv / "train_0.csv").drop(columns="sirna").to_csv(csv, index=False)
    for kind in ("non_pseudo", "control"):
        with pytest.raises(DataError) as e:
            make_dataset({**with_source(dp, dataset=kind), "train_csv": str(csv)}, "train", num_classes=N_SIRNAS)
        assert "sirna" in str(e.value) and str(csv) in str(e.value)


def test_missing_csv_named(dp, tmp_path):
    csv = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match="nowhere.csv"):
        make_dataset({**dp, "train_csv": str(csv)}, "train")


def test_packed_cache_feeds_the_same_images_and_is_refreshed(tmp_path, demo_root, demo_csv):
    import json
    import shutil

    import numpy as np

    import pack_cache
    from cellpipe.data.build import make_dataset
    from cellpipe.data.cache import META, PackedImages

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    dp = {"source": "rxrx1", "root": str(root), "source_params": {"control_offset": 16}, "channels": [1, 2, 3, 4, 5],
          "train_sites": [1, 2], "valid_sites": [1, 2], "image_size": 24, "normalization": "none",
          "valid_csv": str(demo_csv / "valid_0.csv")}
    plain = make_dataset(dp, "valid")
    folder = pack_cache.main(str(root), str(tmp_path / "cache"), 24)
    cached = make_dataset({**dp, "cache": str(tmp_path / "cache")}, "valid")
    assert cached.cache is not None and Path(folder).is_dir()
    for i in (0, len(plain) - 1):  # the same sites, to the uint8 rounding of the resize
        assert np.abs(plain[i]["features"].numpy() - cached[i]["features"].numpy()).max() <= 0.5
    assert cached.cache.misses == 0
    n = json.loads((Path(folder) / META).read_text())["n"]
    assert n == 2 * len(pd.read_csv(root / "train.csv")) + 2 * len(pd.read_csv(root / "test.csv")) + 2 * (
        len(pd.read_csv(root / "train_controls.csv")) + len(pd.read_csv(root / "test_controls.csv")))
    # unchanged: left alone; an image rewritten: packed again
    before = (Path(folder) / META).stat().st_mtime_ns
    assert pack_cache.main(str(root), str(tmp_path / "cache"), 24) == folder
    assert (Path(folder) / META).stat().st_mtime_ns == before
    png = next((root / "train").rglob("*_s1_w1.png"))
    png.write_bytes(png.read_bytes())  # same pixels, new modification time
    pack_cache.main(str(root), str(tmp_path / "cache"), 24)
    assert (Path(folder) / META).stat().st_mtime_ns != before
    assert PackedImages(folder).n_channels == 6 and not list((tmp_path / "cache").glob(".*tmp"))


def test_resize_of_more_than_four_channels_at_any_scale():
    import numpy as np

    from cellpipe.core.images import resize

    img = np.random.default_rng(0).uniform(0, 255, (32, 32, 6)).astype(np.float32)
    out = resize(img, 24)  # OpenCV's area resize alone fails above 4 channels at non-integer scales
    assert out.shape == (24, 24, 6)
    assert np.allclose(out[..., 5], resize(img[..., 5:6], 24)[..., 0])  # each channel on its own


def test_memory_cache_reads_each_file_once_and_feeds_the_same_images(tmp_path, demo_root, demo_csv, monkeypatch):
    from cellpipe.data import build
    from cellpipe.sources.rxrx1 import Rxrx1Source

    dp = {"source": "rxrx1", "root": str(demo_root), "source_params": {"control_offset": 16}, "channels": [1, 2, 3],
          "train_sites": [1, 2], "valid_sites": [1, 2], "image_size": 24, "normalization": "none",
          "valid_csv": str(demo_csv / "valid_0.csv")}
    plain = make_dataset(dp, "valid")
    expected = {i: plain[i]["features"].numpy() for i in (0, len(plain) - 1)}
    monkeypatch.setattr(build, "_PACKED", {})  # a fresh cache, not another test's
    reads = []
    load = Rxrx1Source.load_planes
    monkeypatch.setattr(Rxrx1Source, "load_planes", lambda self, *a: reads.append(a[1:]) or load(self, *a))
    cached = make_dataset({**dp, "cache": "memory"}, "valid")
    for _ in range(2):  # the second pass decodes nothing
        for i, x in expected.items():
            assert np.array_equal(x, cached[i]["features"].numpy())
    assert len(reads) == 4  # 2 samples x 2 sites, once each
    assert all(p.dtype == np.uint8 for planes in cached.cache.planes.values() for p in planes)
    # full at one site (3 planes of 24 x 24 bytes): later sites are read from their files every time
    monkeypatch.setattr(build, "_PACKED", {})
    capped = make_dataset({**dp, "cache": "memory", "cache_max_gb": 3 * 24 * 24 / 2 ** 30}, "valid")
    reads.clear()
    for _ in range(2):
        for i, x in expected.items():
            assert np.array_equal(x, capped[i]["features"].numpy())
    assert len(capped.cache.planes) == 1 and len(reads) == 1 + 3 * 2


def test_channel_dropout_that_can_remove_the_signal_warns():
    from cellpipe.core.errors import ConfigError
    from cellpipe.data.transforms import channel_dropout_warnings

    drop = [{"transform": "HorizontalFlip", "p": 0.5},
            {"transform": "ChannelDropout", "channel_drop_range": [1, 1], "fill": 0.0, "p": 0.2}]
    assert channel_dropout_warnings(drop, [1, 2, 3, 4, 5, 6]) == []  # six redundant stains: fine
    assert channel_dropout_warnings(drop, [1, 3, 4], label_channels=[2]) == []  # the label stain is not used
    (w,) = channel_dropout_warnings(drop, [1, 2, 3, 4], label_channels=[2], names={2: "green"})
    assert "augmentations/train[1] ChannelDropout" in w and "channel 2 (green)" in w and "20%" in w
    # a range that can empty a sample would crash albumentations at its first draw: refused up front
    with pytest.raises(ConfigError, match=r"train\[0\] ChannelDropout: channel_drop_range \[1, 2\] can drop all 2"):
        channel_dropout_warnings([{"transform": "ChannelDropout", "channel_drop_range": [1, 2]}], [1, 2])
    with pytest.raises(ConfigError, match="channel_drop_range must be \\[min, max\\]"):
        channel_dropout_warnings([{"transform": "ChannelDropout", "channel_drop_range": 1}], [1, 2, 3])
    assert channel_dropout_warnings(drop[:1], [1], label_channels=[1]) == []


def test_hpa_declares_its_protein_stain_and_the_run_warns_at_start_up(tmp_path):
    from cellpipe.data.build import augmentation_warnings
    from cellpipe.demo.hpa import write_hpa
    from cellpipe.sources import make_source

    root = write_hpa(tmp_path / "hpa", n_train=4, n_test=2, size=16, duplicates=0)
    drop = {"train": [{"transform": "ChannelDropout", "channel_drop_range": [1, 1], "p": 0.2}]}
    reordered = make_source({"source": "hpa", "root": str(root),
                             "source_params": {"stains": ["blue", "yellow", "green", "red"]}})
    assert reordered.label_channels() == [3]
    (w,) = augmentation_warnings({"augmentations": drop, "channels": [1, 2, 3, 4]}, reordered)
    assert "channel 3 (green)" in w
    assert augmentation_warnings({"augmentations": drop, "channels": [1, 2, 4]}, reordered) == []
    assert make_source({"source": "manifest", "root": str(tmp_path)}).label_channels() == []
