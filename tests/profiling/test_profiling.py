"""Profiles: export from a run (untrained: the files, not the model, are under test), corrections
fitted on controls, and the mAP / accuracy evaluation on profiles whose structure is known."""
import json

import numpy as np
import pandas as pd
import pytest

from cellpipe.core.errors import DataError
from cellpipe.profiling import embed, pipeline
from cellpipe.profiling.correct import Correction
from cellpipe.profiling.embed import BATCH, CONTROL, LABEL, PLATE, WELL
from cellpipe.profiling.evaluate import accuracy, consistency, evaluate


@pytest.fixture(scope="module")
def exported(untrained_runs, tmp_path_factory):
    run = untrained_runs["model_root"] / untrained_runs["channels"] / "fold_0" / untrained_runs["model_name"]
    out = tmp_path_factory.mktemp("profiles") / "p"
    summary = pipeline.run(str(run), out, data_root=str(untrained_runs["data_root"]), null_size=100)
    return out, summary, untrained_runs["data_root"]


def test_export_writes_sites_per_plate_wells_and_treatments(exported):
    out, summary, root = exported
    wells = pd.read_parquet(out / embed.WELLS)
    treat = pd.read_csv(root / "train.csv"), pd.read_csv(root / "test.csv")
    ctrl = pd.concat([pd.read_csv(root / f"{d}_controls.csv") for d in ("train", "test")])
    assert len(wells) == len(treat[0]) + len(treat[1]) + len(ctrl) == summary["wells"]
    assert wells[CONTROL].sum() == (ctrl["well_type"] == "negative_control").sum() == summary["controls"]
    plates = sorted(wells[PLATE].unique())
    assert len(plates) == 8 * 4 and plates[0] == "HEPG2-01_1"  # experiment_plate, as the plate key spells it
    files = sorted((out / embed.SITES_DIR).glob("*/*.parquet"))
    assert [f.stem for f in files] == plates and [f.parent.name for f in files] == plates
    sites = pd.read_parquet(files[0])
    assert sorted(sites[embed.SITE].unique()) == [1, 2]
    features = embed.feature_columns(sites)
    assert len(features) == summary["features"] > 8
    # a well is the mean of its sites, for every feature
    mine = wells[wells[PLATE] == plates[0]].set_index(WELL)[features].sort_index()
    theirs = sites.groupby(WELL)[features].mean().sort_index()
    assert np.allclose(mine.to_numpy(), theirs.to_numpy(), atol=1e-5)
    # treatments: one row per label, counts kept
    t = pd.read_parquet(out / embed.TREATMENTS)
    labelled = wells[wells[LABEL].notna()]
    assert len(t) == labelled[LABEL].nunique() and t["Metadata_wells"].sum() == len(labelled)
    meta = json.loads((out / "profile.json").read_text())
    # one plate's embeddings and table at a time, not the screen's
    assert 0 < meta["largest_plate_bytes"] < meta["all_plates_bytes"] / 10 and meta["peak_rss_mb"] > 0


def test_corrections_write_transforms_and_the_table(exported):
    out, summary, _ = exported
    table = pd.read_csv(out / pipeline.TABLE)
    assert table["correction"].tolist() == ["none", "center_scale", "pca_whiten", "tvn"]
    assert table[["map_activity", "map_consistency"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (out / pipeline.PLOT).stat().st_size > 20_000
    per = pd.read_csv(out / pipeline.PER_TREATMENT)
    assert set(per["correction"]) == set(table["correction"])
    none = per[per["correction"] == "none"]
    assert none["map_activity"].mean() == pytest.approx(table.set_index("correction").loc["none", "map_activity"])
    for method in ("center_scale", "pca_whiten", "tvn"):
        fixed = pd.read_parquet(out / pipeline.CORRECTED / method / embed.WELLS)
        ctrl = fixed[fixed[CONTROL]]
        means = ctrl.groupby(PLATE)[embed.feature_columns(fixed)].mean().abs().to_numpy()
        assert means.max() < 1e-6, method  # every plate's controls centred
        assert (out / pipeline.TRANSFORMS / f"{method}.json").is_file()
    with pytest.raises(DataError, match="is not empty; pass --overwrite"):
        pipeline.run(summary["run"], out)
    # corrections again on the exported wells, without embedding again
    again = pipeline.run(summary["run"], out, corrections="center_scale", export_profiles=False, null_size=100)
    assert again["wells"] == summary["wells"]
    assert pd.read_csv(out / pipeline.TABLE)["correction"].tolist() == ["none", "center_scale"]


def test_another_layout_with_missing_sites_and_labelled_controls(untrained_runs, tmp_path):
    """A LoadData screen profiled by a run trained on RxRx1 (--source): one well lacks its second
    site, the controls are its DMSO wells, a plate without enough of them is refused before embedding."""
    import cv2

    rng = np.random.default_rng(0)
    rows, names = [], ["DNA", "ER", "RNA", "AGP", "Mito", "Extra"]
    for plate in ("001", "002"):
        for w, well in enumerate(["A01", "A02", "B01", "B02"]):
            for site in (1, 2):
                if (plate, well, site) == ("002", "B02", 2):
                    continue  # a failed acquisition
                row = {"Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site,
                       "Metadata_pert": "DMSO" if w < 2 else f"drug{w}"}
                for n in names:
                    f = f"{plate}_{well}_{site}_{n}.png"
                    cv2.imwrite(str(tmp_path / f), rng.integers(0, 255, (24, 24), dtype=np.uint8))
                    row[f"FileName_Orig{n}"], row[f"PathName_Orig{n}"] = f, "."
                rows.append(row)
    pd.DataFrame(rows).to_csv(tmp_path / "load_data.csv", index=False)
    run = untrained_runs["model_root"] / untrained_runs["channels"] / "fold_0" / untrained_runs["model_name"]
    common = dict(data_root=str(tmp_path), source="loaddata", source_params={"label_column": "Metadata_pert"},
                  control_label="DMSO", evaluate_profiles=False)
    summary = pipeline.run(str(run), tmp_path / "p", corrections="center_scale", **common)
    sites = pd.read_parquet(embed.site_file(tmp_path / "p", "002"))
    assert len(sites) == 7 and sorted(sites.loc[sites[WELL] == "B02", embed.SITE]) == [1]
    wells = pd.read_parquet(tmp_path / "p" / embed.WELLS)
    assert summary["wells"] == len(wells) == 8 and wells[CONTROL].sum() == 4
    assert sorted(wells[PLATE].unique()) == ["001", "002"]  # plate names as written, not as numbers
    with pytest.raises(DataError, match="plate '001' has 1 control sample"):
        pipeline.run(str(run), tmp_path / "q", corrections="center_scale", **{**common, "control_label": "drug3"})
    assert not (tmp_path / "q").exists()


def synthetic_wells(seed=0, n_labels=12, n_plates=6, controls=6, signal=1.0, plate_effect=4.0, dim=16):
    """Wells whose features are label signal + a strong per-plate offset and scale + noise; every
    label on every plate; plates in 3 groups (experiments)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, signal, (n_labels, dim))
    rows, feats = [], []
    for p in range(n_plates):
        offset, scale = rng.normal(0, plate_effect, dim), rng.lognormal(0, 0.5, dim)
        for lab in range(n_labels):
            feats.append((centres[lab] + rng.normal(0, 0.3, dim)) * scale + offset)
            rows.append((f"P{p}", f"W{lab:02d}", f"t{lab}", False, f"E{p // 2}"))
        for c in range(controls):
            feats.append(rng.normal(0, 0.3, dim) * scale + offset)
            rows.append((f"P{p}", f"C{c:02d}", "DMSO", True, f"E{p // 2}"))
    meta = pd.DataFrame(rows, columns=[PLATE, WELL, LABEL, CONTROL, BATCH])
    return pd.concat([meta, pd.DataFrame(feats, columns=[f"emb_{i:04d}" for i in range(dim)])], axis=1)


def test_corrections_remove_a_plate_effect_that_hides_the_treatments():
    wells = synthetic_wells()
    before = evaluate(wells, "none", null_size=200)
    for method in ("center_scale", "pca_whiten", "tvn"):
        after = evaluate(Correction(method).fit(wells).apply(wells), method, null_size=200)
        assert after["map_consistency"] > before["map_consistency"] + 0.3, method
        assert after["acc_nearest_centroid"] > before["acc_nearest_centroid"] + 0.3, method
    assert before["acc_majority"] == pytest.approx(1 / 12)


def test_random_features_score_near_chance_and_replicates_score_high():
    wells = synthetic_wells(plate_effect=0.0)
    noise = wells.copy()
    noise[embed.feature_columns(wells)] = np.random.default_rng(1).normal(size=(len(wells), 16))
    good, bad = evaluate(wells, "signal", null_size=200), evaluate(noise, "noise", null_size=200)
    assert good["map_consistency"] > 0.9 and good["acc_logistic"] > 0.9 and good["active_share"] == 1.0
    assert bad["map_consistency"] < 0.35 and bad["acc_logistic"] < 0.25 and bad["active_share"] < 0.5


def test_saved_transforms_correct_new_plates_as_the_screen_was(tmp_path):
    screen, new = synthetic_wells(seed=0), synthetic_wells(seed=0)
    new = new[new[PLATE].isin(["P4", "P5"])].reset_index(drop=True)
    for method in ("center_scale", "pca_whiten", "tvn"):
        fitted = Correction(method).fit(screen)
        fitted.save(tmp_path)
        loaded = Correction.load(tmp_path, method)
        expected = fitted.apply(screen)
        got = loaded.apply(new)
        features = embed.feature_columns(got)
        ref = expected[expected[PLATE].isin(["P4", "P5"])].reset_index(drop=True)
        assert np.allclose(got[features].to_numpy(), ref[features].to_numpy(), atol=1e-8), method
    with pytest.raises(DataError, match="no saved correction 'tvn' in"):
        Correction.load(tmp_path / "nowhere", "tvn")


def test_bad_profile_input_is_named():
    wells = synthetic_wells(controls=1)
    with pytest.raises(DataError, match="plate 'P0' has 1 control well"):
        Correction("center_scale").fit(wells)
    one_group = synthetic_wells()
    one_group[BATCH] = "E0"
    assert np.isnan(accuracy(one_group)["logistic"])  # no group to hold out: no score, not a fake one
    assert consistency(one_group.assign(**{PLATE: "P0"})) is None  # replicates all on one plate: no pairs
