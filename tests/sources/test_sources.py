"""Input adapters: sample tables, image loading, bad input; the shared 6-channel Phenix site."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellpipe.core.errors import ConfigError, DataError, UnknownName
from cellpipe.core.images import read_image, to_8bit_units
from cellpipe.demo.generic import write_folder, write_manifest, write_phenix, write_rxrx1_2020
from cellpipe.sources import make_source, source_names

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "cellpainting-6ch"


def dp(root, source, **kw):
    return {"root": str(root), "source": source, "source_params": kw.pop("source_params", {}), **kw}


def test_registry_lists_every_adapter():
    assert source_names() == ["cells", "folder", "hpa", "imagexpress", "loaddata", "manifest", "ome", "phenix", "rxrx1",
                              "rxrx1_2020"]
    with pytest.raises(UnknownName, match="known: cells, folder, hpa, imagexpress, loaddata, manifest, ome, phenix, rxrx1"):
        make_source(dp("/x", "parquet"))


def test_unknown_source_param_is_named(tmp_path):
    with pytest.raises(ConfigError, match="colour.*accepted"):
        make_source(dp(tmp_path, "folder", source_params={"colour": 1}))


# ------------------------------------------------------------------ manifest


@pytest.fixture(scope="module")
def manifest_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    write_manifest(root, per_class=6)
    return root


def test_manifest_table(manifest_root):
    src = make_source(dp(manifest_root, "manifest"))
    raw = pd.read_parquet(manifest_root / "manifest.parquet")
    table = src.catalog()
    assert len(table) == len(raw) and list(table.columns[:4]) == ["id", "split", "label", "group"]
    assert set(table["split"]) == {"train", "valid", "test"}
    assert (table["split"] == raw["split_set"].map({"TRAIN": "train", "VAL": "valid", "TEST": "test"})).all()
    assert (table["label"] == raw["label"]).all() and (table["group"] == raw["group"]).all()
    img = src.load(table.iloc[0], 1, [1, 2, 3])
    ref = read_image(manifest_root / raw["img_path"].iloc[0]).astype(np.float32)
    np.testing.assert_array_equal(img, ref)
    assert src.n_channels == 3


def test_manifest_pseudo_rows_only_when_asked(manifest_root, tmp_path):
    raw = pd.read_parquet(manifest_root / "manifest.parquet")
    raw.loc[raw.index[:3], "is_gt"] = False
    raw.loc[raw.index[:3], "split_set"] = "TRAIN"
    shutil.copytree(manifest_root / "images", tmp_path / "images")
    raw.to_csv(tmp_path / "m.csv", index=False)
    strict = make_source(dp(tmp_path, "manifest", source_params={"manifest": "m.csv"}))
    loose = make_source(dp(tmp_path, "manifest", source_params={"manifest": "m.csv", "use_pseudo": True}))
    assert len(loose.catalog()) == len(raw) and len(strict.catalog()) == len(raw) - 3


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.drop(columns=["label"]), r"lacks required column\(s\) \['label'\]"),
    (lambda d: d.assign(split_set=["TRAIN"] * (len(d) - 1) + ["HOLDOUT"]), "unknown split value 'HOLDOUT'"),
    (lambda d: pd.concat([d, d.head(1)]), "appears 2 times"),
    (lambda d: d.assign(is_gt=["maybe"] * len(d)), "'maybe' is not True/False"),
])
def test_manifest_bad_input_names_the_file(manifest_root, tmp_path, edit, match):
    raw = pd.read_parquet(manifest_root / "manifest.parquet")
    edit(raw).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=match) as e:
        make_source(dp(manifest_root, "manifest", source_params={"manifest": str(tmp_path / "bad.csv")})).catalog()
    assert "bad.csv" in str(e.value)


def test_manifest_channel_count_differs(manifest_root, tmp_path):
    shutil.copytree(manifest_root, tmp_path / "m")
    raw = pd.read_parquet(tmp_path / "m" / "manifest.parquet")
    path = tmp_path / "m" / raw["img_path"].iloc[5]
    import cv2
    cv2.imwrite(str(path), np.zeros((32, 32), np.uint8))  # a grey image among RGB ones
    src = make_source(dp(tmp_path / "m", "manifest"))
    with pytest.raises(DataError, match="has 1 channel.*declares 3") as e:
        src.load(src.catalog().iloc[5], 1, [1, 2, 3])
    assert str(path) in str(e.value)


# ------------------------------------------------------------------ folder


def test_folder_split_folders(tmp_path):
    write_folder(tmp_path, per_class=5, split_folders=True)
    table = make_source(dp(tmp_path, "folder")).catalog()
    assert set(table["split"]) == {"train", "valid", "test"}
    assert sorted(table["label"].unique()) == ["c0", "c1", "c2", "c3"]
    first = table.iloc[0]
    assert first["id"].split("/")[1] == first["label"]


def test_folder_without_splits_is_all_train(tmp_path):
    write_folder(tmp_path, per_class=3, split_folders=False)
    table = make_source(dp(tmp_path, "folder")).catalog()
    assert (table["split"] == "train").all() and len(table) == 12


def test_folder_with_stray_folder_is_an_error(tmp_path):
    write_folder(tmp_path, per_class=3, split_folders=True)
    (tmp_path / "extra" / "c0").mkdir(parents=True)
    with pytest.raises(DataError, match="extra"):
        make_source(dp(tmp_path, "folder")).catalog()


def test_folder_corrupt_image_named(tmp_path):
    write_folder(tmp_path, per_class=3, split_folders=False)
    bad = tmp_path / "c1" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    src = make_source(dp(tmp_path, "folder"))
    row = src.catalog().set_index("id").loc["c1/broken.png"].to_dict() | {"id": "c1/broken.png"}
    with pytest.raises(DataError, match="cannot decode") as e:
        src.load(row, 1, [1, 2, 3])
    assert str(bad) in str(e.value)


# ------------------------------------------------------------------ 16-bit and phenix


def test_16bit_needs_a_rule_and_rules_scale(tmp_path):
    img = np.array([[0, 1000], [4095, 65535]], np.uint16)[..., None]
    with pytest.raises(DataError, match="needs a rescale rule"):
        to_8bit_units(img, None, "x.tiff")
    np.testing.assert_allclose(to_8bit_units(img, {"mode": "full"})[..., 0], img[..., 0].astype(np.float64) * 255 / 65535, rtol=1e-6)
    with pytest.raises(DataError, match="exceeds 12-bit"):
        to_8bit_units(img, {"mode": "bits", "bits": 12})
    win = to_8bit_units(img, {"mode": "window", "min": 1000, "max": 4095})[..., 0]
    np.testing.assert_allclose(win, [[0, 0], [255, 255]])
    pct = to_8bit_units(img, {"mode": "percentile", "low": 0, "high": 100})
    assert pct.min() == 0 and pct.max() == 255


def test_multipage_tiff_is_channels_last(tmp_path):
    stack = np.stack([np.full((5, 7), i * 10, np.uint8) for i in range(4)])
    tifffile.imwrite(tmp_path / "s.tif", stack)
    img = read_image(tmp_path / "s.tif")
    assert img.shape == (5, 7, 4) and list(img[0, 0]) == [0, 10, 20, 30]


def test_phenix_generated(tmp_path):
    write_phenix(tmp_path, per_class=2)
    src = make_source(dp(tmp_path, "phenix", source_params={"plate_map": "platemap.csv"},
                         rescale={"mode": "bits", "bits": 16}))
    table = src.catalog()
    pm = pd.read_csv(tmp_path / "platemap.csv")
    assert list(table["well"]) == sorted(pm["well"]) and src.sites == [1, 2] and src.n_channels == 3
    assert dict(zip(table["well"], table["label"])) == dict(zip(pm["well"], pm["label"]))
    img = src.load(table.iloc[0], 2, [3, 1])
    assert img.shape == (32, 32, 2) and img.dtype == np.float32


def test_phenix_shared_site_loads():
    src = make_source(dp(SHARED, "phenix", rescale={"mode": "percentile", "low": 0.5, "high": 99.5}))
    table = src.catalog()
    assert list(table["well"]) == ["C03"] and src.sites == [3] and src.n_channels == 6
    assert (table["split"] == "test").all() and table["label"].isna().all()
    img = src.load(table.iloc[0], 3, [1, 2, 3, 4, 5, 6])
    assert img.shape == (1080, 1080, 6)
    assert img.min() == 0 and img.max() == 255  # the window maps the 0.5-99.5 percentiles to 0..255
    with pytest.raises(DataError, match="needs a rescale rule"):
        make_source(dp(SHARED, "phenix")).load(table.iloc[0], 3, [1])


# ------------------------------------------------------------------ rxrx1 2020


def test_rxrx1_2020_table(tmp_path):
    write_rxrx1_2020(tmp_path, per_class=4)
    meta = pd.read_csv(tmp_path / "metadata.csv")
    src = make_source(dp(tmp_path, "rxrx1_2020"))
    table = src.catalog()
    assert len(table) == meta["well_id"].nunique() and src.sites == [1, 2] and src.n_channels == 6
    assert set(table["split"]) == {"train", "test"} and (table["group"] == table["experiment"]).all()
    assert (table["label"] == table["sirna_id"].astype(str)).all()
    assert src.load(table.iloc[0], 2, [6]).shape == (32, 32, 1)
    meta.drop(columns=["sirna_id"]).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DataError, match=r"metadata.csv lacks required column\(s\) \['sirna_id'\]"):
        make_source(dp(tmp_path, "rxrx1_2020")).catalog()


def test_every_module_of_the_package_registers_one_adapter():
    import pkgutil

    import cellpipe.sources as sources
    from cellpipe.sources import source_class, source_names

    modules = {m.name for m in pkgutil.iter_modules(sources.__path__)} - {"base"}
    assert set(source_names()) == modules
    assert all(source_class(name).__module__ == f"cellpipe.sources.{name}" for name in modules)
