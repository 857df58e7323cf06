"""The screening layouts (LoadData CSV, ImageXpress, OME-TIFF / OME-Zarr through bioio) and
illumination correction at load: real files written here or the shared real Phenix site."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

import prep_illumination
from cellpipe.core.errors import DataError
from cellpipe.sources import make_source
from conftest import REAL, REAL_NAMES, write_load_data

BITS16 = {"mode": "bits", "bits": 16}


def loaddata(root, **params):
    return make_source({"source": "loaddata", "root": str(root), "rescale": BITS16, "source_params": params})


def test_load_data_csv_reads_the_real_site_with_its_channel_names(tmp_path):
    write_load_data(tmp_path / "load_data.csv")
    src = loaddata(tmp_path, channels=["DNA", "ER"])
    table = src.catalog()
    assert src.channel_names == ["DNA", "ER"] and src.sites == [3]
    assert table[["id", "plate", "well", "split", "group"]].iloc[0].tolist() == [
        "BR00117010_C03", "BR00117010", "C03", "test", "BR00117010"]
    assert table["Metadata_Source"].iloc[0] == "phenix"  # other Metadata_* columns are kept
    dna = tifffile.imread(REAL / "r03c03f03p01-ch5sk1fk1fl1.tiff")
    img = src.load(table.iloc[0], 3, [1])
    assert img.shape == (1080, 1080, 1)
    assert np.allclose(img[..., 0], dna.astype(np.float32) * (255 / 65535), atol=1e-3)
    with pytest.raises(DataError, match=r"channel\(s\) \['Golgi'\] of source_params/channels"):
        loaddata(tmp_path, channels=["DNA", "Golgi"]).catalog()


def test_load_data_illumination_columns_are_divided_out_at_load(tmp_path):
    """prep_illumination on the LoadData CSV, then a CSV whose FileName_Illum columns point at the
    functions: the loaded plane is the raw one divided by its function."""
    write_load_data(tmp_path / "load_data.csv")
    prep_illumination.main(root=str(tmp_path), out_dir=str(tmp_path / "illum"), source="loaddata")
    manifest = pd.read_csv(tmp_path / "illum" / "illumination.csv")
    assert sorted(manifest["channel"]) == sorted(REAL_NAMES) and (manifest["plate"] == "BR00117010").all()
    assert (tmp_path / "illum" / "illumination.png").stat().st_size > 10_000
    write_load_data(tmp_path / "corrected" / "load_data.csv", illum_dir=tmp_path / "illum" / "BR00117010")
    raw, corrected = loaddata(tmp_path), loaddata(tmp_path / "corrected")
    # FileName_Illum columns for some channels only (brightfield has none): the others are corrected
    partial = pd.read_csv(tmp_path / "corrected" / "load_data.csv").drop(
        columns=["FileName_IllumBrightfield", "PathName_IllumBrightfield"])
    (tmp_path / "partial").mkdir()
    partial.to_csv(tmp_path / "partial" / "load_data.csv", index=False)
    some = loaddata(tmp_path / "partial")
    row = raw.catalog().iloc[0]
    dna = REAL_NAMES.index("DNA") + 1
    function = np.load(tmp_path / "illum" / "BR00117010" / "DNA.npy")
    assert function.shape == (1080, 1080) and function.mean() == pytest.approx(1.0, abs=1e-4)
    assert function.max() / function.min() > 1.5  # the real field is uneven (cells and optics)
    expected = np.clip(np.rint(tifffile.imread(REAL / "r03c03f03p01-ch5sk1fk1fl1.tiff") / function), 0, 65535)
    got = corrected.load(row, 3, [dna])[..., 0]
    assert np.allclose(got, expected * (255 / 65535), atol=1e-3)
    assert not np.allclose(got, raw.load(row, 3, [dna])[..., 0], atol=0.5)
    both = some.load(row, 3, [1, dna])
    assert np.array_equal(both[..., 0], raw.load(row, 3, [1])[..., 0]) and np.allclose(both[..., 1], got)
    with pytest.raises(DataError, match="is a URL; download the images"):
        pd.read_csv(tmp_path / "load_data.csv").assign(PathName_OrigDNA="s3://cellpainting-gallery/x").to_csv(
            tmp_path / "partial" / "s3.csv", index=False)
        loaddata(tmp_path / "partial", csv="s3.csv").catalog()
    # the same correction through data_params/illumination (the prep's folder) on the plain CSV
    via_folder = make_source({"source": "loaddata", "root": str(tmp_path), "rescale": BITS16,
                              "illumination": str(tmp_path / "illum")})
    assert np.array_equal(via_folder.load(row, 3, [dna]), corrected.load(row, 3, [dna]))


def test_load_data_labels_from_a_column_or_a_plate_map(tmp_path):
    frames = []
    for plate in ("P1", "P2"):
        for well, site in (("A01", 1), ("A01", 2), ("B02", 1)):
            row = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site,
                   "Metadata_Treatment": "DMSO" if well == "A01" else "drug", "FileName_OrigDNA": f"{plate}{well}.tif",
                   "PathName_OrigDNA": "images"}
            frames.append(row)
    pd.DataFrame(frames).to_csv(tmp_path / "load_data.csv", index=False)
    by_column = loaddata(tmp_path, label_column="Metadata_Treatment").catalog()
    assert sorted(by_column["id"]) == ["P1_A01", "P1_B02", "P2_A01", "P2_B02"]
    assert set(by_column["label"]) == {"DMSO", "drug"} and set(by_column["split"]) == {"train"}
    assert loaddata(tmp_path).sites == [1, 2]
    # a plate map without a plate column: one layout for every plate; a well it lacks is test
    pd.DataFrame({"well_position": ["A01"], "pert": ["DMSO"]}).to_csv(tmp_path / "layout.csv", index=False)
    mapped = loaddata(tmp_path, platemap="layout.csv", platemap_label="pert").catalog().set_index("id")
    assert mapped.loc["P2_A01", "label"] == "DMSO" and mapped.loc["P2_A01", "split"] == "train"
    assert mapped.loc["P1_B02", "label"] is None and mapped.loc["P1_B02", "split"] == "test"
    # with a plate column: joined on plate and well
    pd.DataFrame({"Metadata_Plate": ["P1", "P2"], "Metadata_Well": ["B02", "B02"], "label": ["x", "y"],
                  "split": ["train", "VAL"]}).to_csv(tmp_path / "map.csv", index=False)
    mapped = loaddata(tmp_path, platemap="map.csv").catalog().set_index("id")
    assert mapped.loc[["P1_B02", "P2_B02"], "label"].tolist() == ["x", "y"]
    assert mapped.loc[["P1_B02", "P2_B02", "P1_A01"], "split"].tolist() == ["train", "valid", "test"]
    # plate names that look like numbers stay as written ("001" is not plate 1)
    frame = pd.DataFrame(frames).assign(Metadata_Plate=lambda d: d["Metadata_Plate"].map({"P1": "001", "P2": "002"}))
    (tmp_path / "numbered").mkdir()
    frame.to_csv(tmp_path / "numbered" / "load_data.csv", index=False)
    pd.DataFrame({"Metadata_Plate": ["001"], "Metadata_Well": ["B02"], "label": ["z"]}).to_csv(
        tmp_path / "numbered" / "map.csv", index=False)
    numbered = loaddata(tmp_path / "numbered", platemap="map.csv").catalog().set_index("id")
    assert numbered.loc["001_B02", "label"] == "z" and numbered.loc["002_B02", "label"] is None
    with pytest.raises(DataError, match="no label column 'pert'"):
        loaddata(tmp_path, platemap="map.csv", platemap_label="pert").catalog()
    pd.DataFrame(frames).drop(columns=["Metadata_Site"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv lacks required column\(s\) \['Metadata_Site'\]"):
        loaddata(tmp_path, csv="bad.csv").catalog()


def test_imagexpress_export_with_thumbnails_and_time_points(tmp_path):
    rng = np.random.default_rng(0)
    guid = "C4E5F6A0-1B2C-4D3E-8F90-0123456789AB"
    written = {}
    for t in (1, 2):
        folder = tmp_path / "Plate1" / f"TimePoint_{t}"
        folder.mkdir(parents=True)
        for well in ("B03", "C04"):
            for site in (1, 2):
                for w in (1, 2, 3):
                    img = rng.integers(0, 4096, (24, 20), dtype=np.uint16)
                    tifffile.imwrite(folder / f"Plate1_{well}_s{site}_w{w}{guid}.tif", img)
                    tifffile.imwrite(folder / f"Plate1_{well}_s{site}_w{w}_thumb{guid}.tif", img[:4, :4])
                    written[(t, well, site, w)] = img
    pd.DataFrame({"well": ["B03"], "label": ["ctrl"]}).to_csv(tmp_path / "platemap.csv", index=False)
    src = make_source({"source": "imagexpress", "root": str(tmp_path), "rescale": {"mode": "bits", "bits": 12},
                       "source_params": {"platemap": "platemap.csv", "timepoint": 2,
                                         "channel_names": ["DNA", "Actin", "Tubulin"]}})
    table = src.catalog().set_index("id")
    assert sorted(table.index) == ["Plate1_B03", "Plate1_C04"] and src.sites == [1, 2]
    assert src.channel_names == ["DNA", "Actin", "Tubulin"]
    assert table.loc["Plate1_B03", "label"] == "ctrl" and table.loc["Plate1_C04", "split"] == "test"
    img = src.load(table.reset_index().iloc[1], 2, [3, 1])  # C04 site 2, time point 2
    assert np.allclose(img[..., 0], written[(2, "C04", 2, 3)] * (255 / 4095), atol=1e-3)
    assert np.allclose(img[..., 1], written[(2, "C04", 2, 1)] * (255 / 4095), atol=1e-3)
    with pytest.raises(DataError, match="lists 2 name"):
        make_source({"source": "imagexpress", "root": str(tmp_path),
                     "source_params": {"channel_names": ["a", "b"]}}).check_channels("auto")
    with pytest.raises(DataError, match="no ImageXpress images of time point 3"):
        make_source({"source": "imagexpress", "root": str(tmp_path), "source_params": {"timepoint": 3}}).catalog()


def test_ome_tiff_and_ome_zarr_through_bioio(tmp_path):
    from bioio_ome_tiff.writers import OmeTiffWriter
    from bioio_ome_zarr.writers import Channel, OMEZarrWriter

    rng = np.random.default_rng(1)
    names = ["DNA", "ER", "RNA"]
    arrays = {k: rng.integers(0, 60000, (3, 30, 40), dtype=np.uint16) for k in ("a1", "a2", "b1")}
    (tmp_path / "P1").mkdir()
    OmeTiffWriter.save(arrays["a1"], tmp_path / "P1" / "a1.ome.tiff", dim_order="CYX", channel_names=names)
    OmeTiffWriter.save(arrays["a2"], tmp_path / "P1" / "a2.ome.tiff", dim_order="CYX", channel_names=names)
    zarr = OMEZarrWriter(str(tmp_path / "P1" / "b1.ome.zarr"), level_shapes=[(3, 30, 40)], dtype="uint16",
                         axes_names=["c", "y", "x"], axes_types=["channel", "space", "space"],
                         channels=[Channel(label=n, color="FFFFFF") for n in names])
    zarr.write_full_volume(arrays["b1"])
    # a table: a1 and a2 are two sites of well A01, b1 (the Zarr) well B01
    pd.DataFrame({"file": ["P1/a1.ome.tiff", "P1/a2.ome.tiff", "P1/b1.ome.zarr"], "plate": "P1",
                  "well": ["A01", "A01", "B01"], "site": [1, 2, 1], "label": ["x", "x", "y"]}).to_csv(
        tmp_path / "images.csv", index=False)
    src = make_source({"source": "ome", "root": str(tmp_path), "rescale": {"mode": "full"},
                       "source_params": {"table": "images.csv"}})
    table = src.catalog().set_index("id")
    assert src.channel_names == names and src.sites == [1, 2]
    assert table.loc[["P1_A01", "P1_B01"], "label"].tolist() == ["x", "y"]
    rows = src.catalog()
    for (rid, site), key in {("P1_A01", 2): "a2", ("P1_B01", 1): "b1"}.items():
        img = src.load(rows[rows["id"] == rid].iloc[0], site, [3, 1])
        assert np.allclose(img[..., 0], arrays[key][2] * (255 / 65535), atol=1e-3)
        assert np.allclose(img[..., 1], arrays[key][0] * (255 / 65535), atol=1e-3)
    # no table: every file a sample of the plate its folder names
    scanned = make_source({"source": "ome", "root": str(tmp_path), "rescale": {"mode": "full"}}).catalog()
    assert sorted(scanned["id"]) == ["P1/a1", "P1/a2", "P1/b1"] and set(scanned["plate"]) == {"P1"}
    OmeTiffWriter.save(arrays["a1"], tmp_path / "P1" / "c1.ome.tiff", dim_order="CYX", channel_names=["x", "y", "z"])
    odd = make_source({"source": "ome", "root": str(tmp_path), "rescale": {"mode": "full"}})
    with pytest.raises(DataError, match=r"c1.ome.tiff has channels \['x', 'y', 'z'\]"):
        odd.load(odd.catalog().set_index("id").loc[["P1/c1"]].reset_index().iloc[0], 1, [1])


def test_illumination_flattens_the_demo_vignette_and_keys_the_cache(tmp_path):
    import make_demo_data
    from cellpipe.data.cache import cache_dir
    from cellpipe.prep.illumination import flatness

    root = tmp_path / "demo"
    make_demo_data.main(out_dir=str(root), image_size=48, n_sirnas=8, n_controls=2, cell_types=1,
                        train_experiments_per_type=1, test_experiments_per_type=1, vignette=0.6, negative_wells=8)
    prep_illumination.main(root=str(root), out_dir=str(tmp_path / "illum"))
    with pytest.raises(DataError, match="is not empty; pass --overwrite"):
        prep_illumination.main(root=str(root), out_dir=str(tmp_path / "illum"))
    plain = make_source({"source": "rxrx1", "root": str(root)})
    flat = make_source({"source": "rxrx1", "root": str(root), "illumination": str(tmp_path / "illum")})
    rows = plain.catalog()
    rows = rows[(rows["experiment"] == rows["experiment"].iloc[0]) & (rows["plate"] == rows["plate"].iloc[0])]

    def mean_image(src):
        return np.mean([src.load(r, s, [2])[..., 0].astype(float) for r in rows.to_dict("records") for s in (1, 2)],
                       axis=0)

    before, after = flatness(mean_image(plain)), flatness(mean_image(flat))
    assert before < 0.8 and after > before + 0.15
    assert cache_dir("/c", plain, 48) != cache_dir("/c", flat, 48)
    # the packed cache holds the corrected pixels (48 px: no resize between the load and the cache)
    from cellpipe.data.cache import IMAGES, INDEX, pack, site_key

    folder = pack(flat, tmp_path / "cache", 48)
    first = rows.iloc[0].to_dict()
    index = pd.read_csv(folder / INDEX)["key"].tolist().index(site_key(flat, first, 1))
    packed = np.load(folder / IMAGES)[index]
    assert np.array_equal(packed, np.rint(flat.load(first, 1, list(range(1, 7)))).astype(np.uint8).transpose(2, 0, 1))
    assert not np.array_equal(packed, plain.load(first, 1, list(range(1, 7))).transpose(2, 0, 1))
    np.save(tmp_path / "illum" / Path(pd.read_csv(tmp_path / "illum" / "illumination.csv")["file"][0]),
            np.ones((5, 5), np.float32))
    broken = make_source({"source": "rxrx1", "root": str(root), "illumination": str(tmp_path / "illum")})
    first = broken.catalog().iloc[0]
    with pytest.raises(DataError, match="its illumination function is 5x5"):
        broken.load(first, 1, [1])


def test_illumination_function_stays_positive_and_has_mean_one():
    from cellpipe.core.illumination import correct
    from cellpipe.prep.illumination import smooth

    yy, xx = np.mgrid[:40, :40] / 39.0
    steep = 100 * (1 - 1.6 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2)  # a fitted quadric dips below 0
    for method in ("polynomial", "median"):
        f = smooth(steep, method=method, window=5, sigma=1.0)
        assert f.min() > 0 and f.mean() == pytest.approx(1.0, abs=1e-5), method
    plane = np.full((40, 40), 60000, np.uint16)
    out = correct(plane, np.full((40, 40), 0.5, np.float32), "x")
    assert out.dtype == np.uint16 and out.max() == 65535  # clipped to the dtype, not wrapped
    with pytest.raises(Exception, match="illumination smoothing 'spline'"):
        smooth(steep, method="spline")


def test_an_ome_zarr_hcs_plate_is_walked_well_by_well(tmp_path):
    """An NGFF HCS plate (plate / well metadata, zarr v3) written with zarr and bioio's writer: a sample
    per well, its fields the sites, read through bioio's OME-Zarr reader."""
    import zarr
    from bioio_ome_zarr.writers import Channel, OMEZarrWriter

    root = tmp_path / "screen" / "plate1.ome.zarr"
    group = zarr.open_group(str(root), mode="w")
    fields = {("A", "1"): 2, ("B", "12"): 1}
    for (r, c), n in fields.items():
        well = group.require_group(f"{r}/{c}")
        for f in range(n):
            OMEZarrWriter(str(root / r / c / str(f)), level_shapes=[(2, 16, 20)], dtype="uint16",
                          axes_names=["c", "y", "x"], axes_types=["channel", "space", "space"],
                          channels=[Channel(label=x, color="FFFFFF") for x in ("DNA", "ER")]).write_full_volume(
                np.full((2, 16, 20), 1000 * (f + 1) + (7 if r == "A" else 9), np.uint16))
        well.attrs["ome"] = {"version": "0.5", "well": {"images": [{"path": str(f)} for f in range(n)]}}
    group.attrs["ome"] = {"version": "0.5", "plate": {
        "name": "BR01", "rows": [{"name": "A"}, {"name": "B"}], "columns": [{"name": "1"}, {"name": "12"}],
        "wells": [{"path": f"{r}/{c}", "rowIndex": i, "columnIndex": i} for i, (r, c) in enumerate(fields)]}}
    src = make_source({"source": "ome", "root": str(tmp_path / "screen"), "rescale": {"mode": "full"}})
    table = src.catalog().set_index("id")
    assert sorted(table.index) == ["BR01_A01", "BR01_B12"] and set(table["plate"]) == {"BR01"}
    assert src.sites == [1, 2] and src.channel_names == ["DNA", "ER"]
    a01 = table.loc["BR01_A01"].to_dict() | {"id": "BR01_A01"}
    b12 = table.loc["BR01_B12"].to_dict() | {"id": "BR01_B12"}
    assert src.load(a01, 2, [2])[0, 0, 0] == pytest.approx(2007 * 255 / 65535, abs=1e-3)
    assert src.present_sites(b12, src.sites) == [1]  # a well with one field
