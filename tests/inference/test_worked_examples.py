"""docs/serving.md's worked examples that need no trained model: seed 003's new 16-bit TIFF slide under
the run's rescale rule, and an RxRx1 site's six PNGs through a plate-normalised run tree. (Seed 000's
folder of figures and seed 004's four stain PNGs: test_classify.py; seed 001's unknown species ->
Other needs a trained model: tests/scripts/test_targets_e2e.py.)"""
import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

import inference
from cellpipe.core.errors import DataError
from cellpipe.demo.generic import write_folder
from conftest import untrained_run

WINDOW = "{mode: window, min: 0, max: 4080}"  # 16 * 255: a 16-bit value 16 v is the 8-bit v exactly


def _folder_run(tmp_path, name, root, *extra):
    return untrained_run(["--config", "configs/classify.yml", "--overlay", "configs/data/folder.yml", "--overlay",
                          "configs/tiny.yml", "--logdir", str(tmp_path / name), f"--data_params/root={root}", *extra])


def test_a_new_16_bit_tiff_slide_goes_through_the_runs_rescale_rule(tmp_path):
    root = write_folder(tmp_path / "slides", per_class=4)
    run = _folder_run(tmp_path, "run", root, f"--data_params/rescale={WINDOW}")
    pngs = sorted(root.rglob("*.png"))[::5][:3]
    new = tmp_path / "new_slides"
    new.mkdir()
    for k, p in enumerate(pngs):  # the same slides as a scanner's 16-bit RGB TIFFs
        tifffile.imwrite(new / f"slide{k}.tif", cv2.imread(str(p))[..., ::-1].astype(np.uint16) * 16)
    tiffs = pd.read_csv(inference.classify(str(new), model=str(run), out=str(tmp_path / "t.csv")),
                        keep_default_na=False)
    eight = pd.read_csv(inference.classify(*map(str, pngs), model=str(run), out=str(tmp_path / "p.csv")))
    assert (tiffs["error"] == "").all() and len(tiffs) == 3
    prob = [c for c in eight.columns if c.startswith("prob_")]
    order = [f"slide{k}" for k in range(len(pngs))]
    tiffs = tiffs.set_index(tiffs["path"].map(lambda s: s.rsplit("/", 1)[1][:-4])).loc[order]
    assert np.allclose(tiffs[prob].to_numpy(float), eight[prob].to_numpy(float), atol=1e-5)
    # a run trained without a rule cannot guess one: the file is listed with the reason
    plain = _folder_run(tmp_path, "plain", root)
    table = pd.read_csv(inference.classify(str(new), model=str(plain), out=str(tmp_path / "x.csv")),
                        keep_default_na=False)
    assert table["error"].str.contains("is uint16; the model has no rescale rule").all()


def test_an_rxrx1_site_as_six_pngs_through_a_plate_normalised_run_tree(untrained_runs, tmp_path):
    plate = sorted((untrained_runs["data_root"] / "test").glob("*/Plate1"))[0]
    site = sorted(plate.glob("*_s1_w*.png"))[:6]
    assert [p.name.rsplit("_w", 1)[1] for p in site] == [f"{c}.png" for c in range(1, 7)]
    tree = str(untrained_runs["model_root"])
    with pytest.raises(DataError, match="normalises per plate.*--group_stats inputs"):
        inference.classify(*map(str, site), model=tree, pattern="{sample}_w{channel}.png", out=str(tmp_path / "x.csv"))
    one = pd.read_csv(inference.classify(*map(str, site), model=tree, pattern="{sample}_w{channel}.png",
                                         group_stats="inputs", out=str(tmp_path / "site.csv")), keep_default_na=False)
    assert len(one) == 1 and one["error"].iloc[0] == "" and one["path"].iloc[0].endswith(site[0].name[:-7])
    assert one["files"].iloc[0].count(";") == 4  # the runs read channels 1-5 of the six
    assert len(one["model"].iloc[0].split(";")) == len(untrained_runs["folds"])  # both folds, averaged
    whole = pd.read_csv(inference.classify(str(plate), model=tree, pattern="{sample}_w{channel}.png",
                                           group_stats="inputs", out=str(tmp_path / "plate.csv")),
                        keep_default_na=False)
    assert len(whole) == len(list(plate.glob("*_w1.png"))) and (whole["error"] == "").all()
    assert whole["pred"].astype(str).isin([str(c) for c in range(16)]).all()
