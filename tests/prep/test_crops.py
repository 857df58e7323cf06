"""Single-cell crops: the built-in detector, a CellProfiler nucleus CSV, the cells source, and the
real Phenix site through LoadData CSV -> illumination -> crops -> profile export."""
import json

import numpy as np
import pandas as pd
import pytest

import prep_crops
import prep_illumination
from cellpipe.core.errors import DataError
from cellpipe.prep.crops import cut, detect_nuclei
from cellpipe.sources import make_source
from conftest import REAL_NAMES, write_load_data


def blobs(shape, centres, sigma=3.0, amp=200.0):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.zeros(shape, np.float32)
    for x, y in centres:
        img += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return img


def test_detector_finds_each_nucleus_once_at_its_centre():
    centres = [(12, 15), (40, 30), (25, 50), (52, 55)]
    img = blobs((64, 64), centres) + np.random.default_rng(0).normal(0, 3, (64, 64))
    found = detect_nuclei(img, sigma=1.5, min_area=10)
    assert len(found) == 4
    for x, y in centres:
        assert np.min(np.hypot(found[:, 0] - x, found[:, 1] - y)) < 1.0
    assert len(detect_nuclei(img, sigma=1.5, min_area=10, max_cells=2)) == 2
    assert len(detect_nuclei(np.zeros((16, 16)))) == 0  # a black site has no nuclei, and no error


def test_cut_pads_at_the_border():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10, 1)
    inside = cut(img, 5, 5, 4)
    assert inside[..., 0].tolist() == img[3:7, 3:7, 0].tolist()
    corner = cut(img, 0, 0, 4)[..., 0]
    assert (corner[:2] == 0).all() and (corner[:, :2] == 0).all() and corner[2, 2] == img[0, 0, 0]


def test_demo_crops_from_the_detector_and_from_a_cellprofiler_csv(demo_root, tmp_path):
    out = tmp_path / "cells"
    prep_crops.main(root=str(demo_root), out_dir=str(out), crop_size=12, nucleus_channel=1, sigma=1.0,
                    min_area=4, max_cells=6)
    cells = pd.read_parquet(out / "cells.parquet")
    crops = np.load(out / "crops.npy", mmap_mode="r")
    meta = json.loads((out / "cells.json").read_text())
    assert crops.shape == (len(cells), 6, 12, 12) and meta["cells"] == len(cells)
    per_site = cells.groupby(["well_id", "site"]).size()
    assert per_site.max() <= 6 and per_site.median() >= 2  # the demo draws 3-10 cells per site
    assert cells["id"].is_unique and (cells["group"] == cells["well_id"]).all()
    assert cells.loc[cells["control"], "well_type"].eq("negative_control").all() and cells["control"].any()
    # crops are cut from the loaded site: the centre pixel is bright on the nucleus channel
    from cellpipe.data.cache import cache_rows

    src = make_source({"source": "rxrx1", "root": str(demo_root)})
    first = cells.iloc[0]
    row = cache_rows(src).drop_duplicates("id").set_index("id").loc[first["well_id"]].to_dict() | {
        "id": first["well_id"]}
    site = np.rint(src.load(row, int(first["site"]), list(range(1, 7)))).astype(np.uint8)
    assert np.array_equal(crops[0], cut(site, first["x"], first["y"], 12).transpose(2, 0, 1))
    assert crops[0, 0, 6, 6] > np.median(site[..., 0])  # a nucleus at the centre
    # the cells source reads them back: a sample is a cell, its group the well
    cs = make_source({"source": "cells", "root": str(out)})
    assert cs.channel_names == src.channel_names and cs.plate_columns == ("experiment", "plate")
    img = cs.load(cs.catalog().iloc[3], 1, [2, 1])
    assert np.array_equal(img[..., 0], crops[3, 1]) and np.array_equal(img[..., 1], crops[3, 0])
    # the cells share one file, so the image caches must key them by cell, not by file
    from cellpipe.data.cache import MemoryImages, site_key

    assert len({site_key(cs, r, 1) for r in cs.catalog().to_dict("records")}) == len(cells)
    memory, rows = MemoryImages(12, 1.0), cs.catalog().to_dict("records")
    for _ in range(2):  # the second pass reads from memory
        for i in (0, 1):
            assert np.array_equal(np.stack(memory.read(cs, rows[i], 1, [1, 2])), crops[i, :2])
    import pickle

    assert cs._array is not None and pickle.loads(pickle.dumps(cs))._array is None  # loader workers map the
    assert len(pickle.dumps(cs)) < crops.nbytes / 2  # crops file themselves: no copy of it in their pickle
    # a CellProfiler Nuclei.csv instead of the detector
    nuclei = pd.DataFrame({"Metadata_Plate": ["HEPG2-01_1"] * 2, "Metadata_Well": [cells["well"].iloc[0]] * 2,
                           "Metadata_Site": [1, 2], "Location_Center_X": [5.0, 20.0],
                           "Location_Center_Y": [6.0, 9.5]})
    # (the plate key of RxRx1 is experiment_plate, as profiles and illumination files spell it)
    nuclei["Metadata_Plate"] = cells["experiment"].iloc[0] + "_" + cells["plate"].astype(str).iloc[0]
    nuclei.to_csv(tmp_path / "Nuclei.csv", index=False)
    prep_crops.main(root=str(demo_root), out_dir=str(tmp_path / "cp"), crop_size=8, nuclei=str(tmp_path / "Nuclei.csv"))
    got = pd.read_parquet(tmp_path / "cp" / "cells.parquet")
    assert got[["site", "x", "y"]].values.tolist() == [[1, 5.0, 6.0], [2, 20.0, 9.5]]
    nuclei.assign(Metadata_Well="Z99").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="well 'Z99' is not a sample of"):
        prep_crops.main(root=str(demo_root), out_dir=str(tmp_path / "bad"), nuclei=str(tmp_path / "bad.csv"))
    assert not (tmp_path / "bad").exists()  # nothing half-written


def test_the_real_site_through_load_data_illumination_crops_and_profiles(untrained_runs, tmp_path):
    """../shared/data/cellpainting-6ch as a Cell Painting Gallery plate: LoadData CSV, its
    illumination functions, nuclei found on the DNA channel, crops, then cell profiles from a run
    (untrained: the plumbing is under test) averaged into the well's profile."""
    from cellpipe.profiling import embed, pipeline

    write_load_data(tmp_path / "screen" / "load_data.csv")
    bits = "{mode: bits, bits: 16}"
    prep_illumination.main(root=str(tmp_path / "screen"), out_dir=str(tmp_path / "illum"), source="loaddata")
    dna = REAL_NAMES.index("DNA") + 1
    prep_crops.main(root=str(tmp_path / "screen"), out_dir=str(tmp_path / "cells"), source="loaddata",
                    rescale=bits, illumination=str(tmp_path / "illum"), crop_size=64, nucleus_channel=dna,
                    sigma=4.0, min_area=200, max_cells=40)
    cells = pd.read_parquet(tmp_path / "cells" / "cells.parquet")
    assert 5 <= len(cells) <= 40 and (cells["well_id"] == "BR00117010_C03").all()
    crops = np.load(tmp_path / "cells" / "crops.npy", mmap_mode="r")
    # a nucleus sits at the centre of its crop: the DNA channel is brighter there than at the corners
    centre, corner = crops[:, dna - 1, 24:40, 24:40].mean(), crops[:, dna - 1, :8, :8].mean()
    assert centre > 1.5 * corner
    run = untrained_runs["model_root"] / untrained_runs["channels"] / "fold_0" / untrained_runs["model_name"]
    summary = pipeline.run(str(run), tmp_path / "profiles", data_root=str(tmp_path / "cells"), source="cells",
                           corrections="none", control_query="well_id == ''", evaluate_profiles=False)
    sites = pd.read_parquet(embed.site_file(tmp_path / "profiles", "BR00117010"))
    wells = pd.read_parquet(tmp_path / "profiles" / embed.WELLS)
    assert len(sites) == len(cells) and len(wells) == 1 == summary["wells"]
    features = embed.feature_columns(wells)
    assert np.allclose(wells[features].to_numpy()[0], sites[features].mean().to_numpy(), atol=1e-5)
    assert "Metadata_x" not in wells.columns  # per-cell columns stay in the cell table
