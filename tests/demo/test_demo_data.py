"""The synthetic demo set: Kaggle layout, plate structure, determinism, learnable class signal."""
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import make_demo_data
from cellpipe.sources import rxrx1 as rxrx
from conftest import DEMO_KWARGS

N_SIRNAS, N_CONTROLS = DEMO_KWARGS["n_sirnas"], DEMO_KWARGS["n_controls"]
CONTROL_IDS = set(range(N_SIRNAS, N_SIRNAS + N_CONTROLS))
WELL_RE = re.compile(r"^[B-O](0[2-9]|1\d|2[0-3])$")
TINY = dict(image_size=32, n_sirnas=8, n_controls=2, cell_types=1, train_experiments_per_type=1,
            test_experiments_per_type=1, pixel_stats=False)


def tables(root):
    return {name: pd.read_csv(root / f"{name}.csv") for name in
            ("train", "test", "train_controls", "test_controls", "sample_submission", "test_labels",
             "pixel_stats")}


def test_csv_columns_and_experiment_names(demo_root):
    t = tables(demo_root)
    assert list(t["train"].columns) == ["id_code", "experiment", "plate", "well", "sirna"]
    assert list(t["test"].columns) == ["id_code", "experiment", "plate", "well"]
    for name in ("train_controls", "test_controls"):
        assert list(t[name].columns) == ["id_code", "experiment", "plate", "well", "sirna", "well_type"]
    assert list(t["sample_submission"].columns) == ["id_code", "sirna"]
    assert list(t["pixel_stats"].columns) == ["id_code", "experiment", "plate", "well", "site", "channel",
                                              "mean", "std", "median", "min", "max"]
    assert sorted(t["train"].experiment.unique()) == [f"{c}-0{i}" for c in ("HEPG2", "HUVEC") for i in (1, 2, 3)]
    assert sorted(t["test"].experiment.unique()) == ["HEPG2-04", "HUVEC-04"]
    assert t["sample_submission"].id_code.tolist() == t["test"].id_code.tolist()
    assert (t["sample_submission"].sirna == 0).all()
    for df in (t["train"], t["test"], t["train_controls"], t["test_controls"]):
        assert (df.id_code == df.experiment + "_" + df.plate.astype(str) + "_" + df.well).all()
        assert df.well.map(lambda w: bool(WELL_RE.match(w))).all()


def test_every_listed_site_has_six_pngs(demo_root):
    t = tables(demo_root)
    listed = [(ds, df) for ds, df in (("train", t["train"]), ("test", t["test"]),
                                      ("train", t["train_controls"]), ("test", t["test_controls"]))]
    n_files = 0
    for ds, df in listed:
        for r in df.itertuples():
            for site in rxrx.SITES:
                for ch in rxrx.CHANNELS:
                    assert rxrx.image_path(demo_root, ds, r.experiment, r.plate, r.well, site, ch).is_file()
                    n_files += 1
    assert n_files == len(list(demo_root.rglob("*.png")))
    img = cv2.imread(str(rxrx.image_path(demo_root, "train", "HEPG2-01", 1, t["train"].well[0], 1, 1)),
                     cv2.IMREAD_UNCHANGED)
    assert img.shape == (32, 32) and img.dtype == np.uint8
    assert len(t["pixel_stats"]) == n_files


def test_plate_structure(demo_root):
    t = tables(demo_root)
    treat = pd.concat([t["train"], t["test_labels"]])
    plates = {k: set(g.sirna) for k, g in treat.groupby(["experiment", "plate"])}
    assert len(plates) == 8 * 4
    group_size = N_SIRNAS // 4
    full = {frozenset(s) for s in plates.values() if len(s) == group_size}
    # the complete plates show exactly 4 disjoint groups covering all treatments
    assert len(full) == 4 and set().union(*full) == set(range(N_SIRNAS))
    assert sum(len(g) for g in full) == N_SIRNAS
    short = [k for k, s in plates.items() if len(s) < group_size]
    # drop_wells=1: the first test plate and one train plate miss one well
    assert len(short) == 2 and ("HEPG2-04", 1) in short
    assert sum(k[0] in set(t["train"].experiment) for k in short) == 1
    for k, s in plates.items():
        assert len(s) >= group_size - 1 and sum(s <= g for g in full) == 1, k
        assert len(treat[(treat.experiment == k[0]) & (treat.plate == k[1])]) == len(s)  # once per plate
    for exp in treat["experiment"].unique():
        sets = [plates[(exp, p)] for p in (1, 2, 3, 4)]
        assert sum(len(s) for s in sets) == len(set().union(*sets))  # 4 plates, disjoint groups


def test_controls_on_every_plate(demo_root):
    t = tables(demo_root)
    ctrl = pd.concat([t["train_controls"], t["test_controls"]])
    for k, g in ctrl.groupby(["experiment", "plate"]):
        negative = g[g.well_type == "negative_control"]
        assert sorted(g.sirna.unique()) == sorted(CONTROL_IDS), k
        assert len(negative) == 4 and negative.sirna.nunique() == 1  # negative_wells' replicates
        assert len(g) == len(CONTROL_IDS) - 1 + 4
    assert set(ctrl.well_type) == {"negative_control", "positive_control"}
    assert ctrl.groupby(["experiment", "plate"]).ngroups == 8 * 4
    everything = pd.concat([t["train"], t["test"], ctrl])
    assert not everything.duplicated(["experiment", "plate", "well"]).any()


def test_deterministic_for_a_seed(tmp_path):
    def snapshot(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_demo_data.main(out_dir=str(tmp_path / name), seed=seed, **TINY)
        runs[name] = snapshot(tmp_path / name)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]
    # (2 experiments x 4 plates x (2 treatments + 1 control + 4 negative) wells - 2 dropped) x 2 sites
    # x 6 channels + 6 CSVs
    assert len(runs["a"]) == (2 * 4 * (2 + 1 + 4) - 2) * 12 + 6


def test_vignette_darkens_the_corners_of_every_plate(tmp_path):
    def corner_over_centre(root):
        mean = np.mean([cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(float)
                        for p in sorted(root.rglob("*_w2.png"))], axis=0)
        q = mean.shape[0] // 6
        return np.mean([mean[:q, :q], mean[:q, -q:], mean[-q:, :q], mean[-q:, -q:]]) / mean[
            2 * q:-2 * q, 2 * q:-2 * q].mean()

    flat, dark = (make_demo_data.main(out_dir=str(tmp_path / n), **{**TINY, "vignette": v}) and
                  corner_over_centre(tmp_path / n) for n, v in (("flat", 0.0), ("dark", 0.6)))
    assert dark < 0.85 * flat  # (flat corners are a bit dark too: cells are cut by the edges)


@pytest.mark.parametrize("bad", [dict(n_sirnas=10), dict(drop_wells=2), dict(cell_types=0)])
def test_bad_arguments_raise(tmp_path, bad):
    with pytest.raises(rxrx.DataError):
        make_demo_data.main(out_dir=str(tmp_path), **{**TINY, **bad})


def test_linear_classifier_learns_siRNA_on_unseen_experiments(demo_root):
    """Per-channel mean intensity, normalised per plate, identifies the siRNA on held-out experiments."""
    t = tables(demo_root)
    labels = pd.concat([t["train"], t["train_controls"]])[["id_code", "sirna"]]
    means = t["pixel_stats"].groupby(["id_code", "experiment", "plate", "channel"])["mean"].mean()
    log_means = np.log(means.unstack("channel"))
    plate_norm = log_means - log_means.groupby(["experiment", "plate"]).transform("mean")

    def accuracy(features, channels):
        df = features.reset_index().merge(labels, on="id_code")
        held = df.experiment.str.endswith("-03")
        scaler = StandardScaler().fit(df.loc[~held, channels])
        clf = LogisticRegression(max_iter=3000).fit(scaler.transform(df.loc[~held, channels]), df.sirna[~held])
        return clf.score(scaler.transform(df.loc[held, channels]), df.sirna[held])

    chance = 1 / (N_SIRNAS + N_CONTROLS)
    normed, raw = accuracy(plate_norm, list(rxrx.CHANNELS)), accuracy(log_means, list(rxrx.CHANNELS))
    assert normed > 0.6 > 10 * chance
    assert normed > raw + 0.15  # batch effects: per-plate normalisation pays
    for drop in rxrx.CHANNELS:  # the class survives any one missing channel
        assert accuracy(plate_norm, [c for c in rxrx.CHANNELS if c != drop]) > 0.5, drop


def test_signal_pulls_classes_together_and_preset_keeps_explicit_flags(tmp_path):
    from cellpipe.demo.rxrx1 import PRESETS, class_params

    full = class_params(np.random.default_rng(0), 16, 1.0)
    weak = class_params(np.random.default_rng(0), 16, 1.0, signal=0.3)
    assert weak["amp"].std(axis=0) == pytest.approx(0.3 * full["amp"].std(axis=0))
    assert np.allclose(weak["amp"].mean(axis=0), full["amp"].mean(axis=0))
    # the hard preset fills the flags left at their defaults; an explicit n_sirnas stays
    out = make_demo_data.main(out_dir=str(tmp_path / "hard"), **{**TINY, "preset": "hard"})
    train = pd.read_csv(tmp_path / "hard" / "train.csv")
    assert train.sirna.max() < TINY["n_sirnas"] < PRESETS["hard"]["n_sirnas"] and out["images"] > 0
    with pytest.raises(rxrx.DataError, match="--well_noise must be a number >= 0"):
        make_demo_data.main(out_dir=str(tmp_path / "x"), **{**TINY, "well_noise": -1})
    with pytest.raises(rxrx.DataError, match="unknown preset 'medium'"):
        make_demo_data.main(out_dir=str(tmp_path / "x"), **{**TINY, "preset": "medium"})


def test_hard_presets_of_the_other_kinds(tmp_path):
    """--preset hard writes the per-kind benchmark's sets: 10 HPA classes with distractors, moths with
    three species per genus in split folders; an unknown preset names the kind's known ones."""
    import pandas as pd

    from cellpipe.demo import generic, hpa, moths

    small = {"n_train": 30, "n_test": 10, "size": 32}
    hpa.write_hpa(tmp_path / "hpa", **{**hpa.PRESETS["hard"], **small})
    ids = {c for t in pd.read_csv(tmp_path / "hpa" / "train.csv")["Target"] for c in str(t).split()}
    assert ids <= {str(k) for k in range(10)} and len(ids) > 5
    moths.write_moths(tmp_path / "moths", **{**moths.PRESETS["hard"], "per_species": 5, "rare": 2, "size": 24})
    for split in ("training", "validation", "test"):
        assert len(list((tmp_path / "moths" / split).iterdir())) >= 12
    assert len(list((tmp_path / "moths" / "training").glob("* alpha"))) == 4
    assert set(generic.presets("manifest")) == {"hard"} and generic.presets("phenix") == {}
    with pytest.raises(rxrx.DataError, match="unknown preset 'hard' for --kind phenix; known: none"):
        make_demo_data.main(out_dir=str(tmp_path / "x"), kind="phenix", preset="hard")


def test_tiny_model_is_the_one_tiny_yml_names():
    """The end-to-end tests find the demos' run folders by conftest.TINY_MODEL."""
    import yaml

    from conftest import REPO, TINY_MODEL

    assert yaml.safe_load((REPO / "configs" / "tiny.yml").read_text())["model_params"]["model_name"] == TINY_MODEL
