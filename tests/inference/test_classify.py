"""inference.py classify: new, unlabelled images through finished runs of every target kind."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import inference
import make_folds
from cellpipe.core.errors import DataError
from cellpipe.demo.generic import write_manifest
from cellpipe.demo.hpa import write_hpa
from cellpipe.demo.moths import write_moths
from conftest import TINY_MODEL, untrained_run


def _run(tmp_path, name, overlay, root, *extra):
    return untrained_run(["--config", "configs/classify.yml", "--overlay", overlay, "--overlay", "configs/tiny.yml",
                          "--logdir", str(tmp_path / name), f"--data_params/root={root}", *extra])


def _fold(csv):
    return [f"--data_params/train_csv={csv / 'train_0.csv'}", f"--data_params/valid_csv={csv / 'valid_0.csv'}"]


@pytest.fixture(scope="module")
def manifest_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classify")
    root = write_manifest(tmp / "data", per_class=6).parent
    return _run(tmp, "run", "configs/data/manifest.yml", root), root


def test_files_folders_globs_and_tables_with_unreadable_ones_listed(manifest_run, tmp_path):
    run, root = manifest_run
    new = tmp_path / "new"
    shutil.copytree(root / "images", new / "nested" / "images")
    (new / "broken.png").write_text("not an image")
    cv2.imwrite(str(new / "grey.png"), np.zeros((20, 20), np.uint8))  # 1 channel for an RGB model
    cv2.imwrite(str(new / "rgba.png"), np.full((20, 20, 4), 99, np.uint8))  # RGBA: its RGB is classified
    pngs = sorted((root / "images").glob("*.png"))
    pd.DataFrame({"path": [p.name for p in pngs[:3]]}).to_csv(root / "images" / "list.csv", index=False)
    out = inference.classify(str(new), str(root / "images" / "c0_*.png"), str(root / "images" / "list.csv"),
                             str(tmp_path / "missing.png"), model=str(run), out=str(tmp_path / "o" / "pred.csv"),
                             parquet=True)
    table = pd.read_csv(out, keep_default_na=False)
    n_new = len(list((new / "nested").rglob("*.png")))
    labels = json.loads((run / "checkpoints" / "labels.json").read_text())["classes"]
    good = table[table["error"] == ""]
    assert len(good) == n_new + 1 + len(set(pngs[:3]) | set((root / "images").glob("c0_*.png")))
    assert str(new / "rgba.png") in set(good["path"])
    probs = good[[f"prob_{c}" for c in labels]].to_numpy(float)
    assert np.allclose(probs.sum(1), 1, atol=1e-4) and set(good["pred"]) <= set(labels)
    assert (good["top1"] == good["pred"]).all() and {"top2", "top3"} <= set(table.columns)
    errors = table.set_index("path")["error"]
    assert "cannot decode image" in errors[str(new / "broken.png")]
    assert "1 channel(s); the model reads channels [1, 2, 3]" in errors[str(new / "grey.png")]
    assert "image file not found" in errors[str(tmp_path / "missing.png")]
    assert table["model"].str.fullmatch(rf"{TINY_MODEL}@[0-9a-f]{{12}}").all()
    assert len(pd.read_parquet(tmp_path / "o" / "pred.parquet")) == len(table)
    # two runs of one label map are averaged: the same run twice gives the same probabilities
    twice = pd.read_csv(inference.classify(str(root / "images" / "c0_*.png"), model=f"{run},{run}",
                                           out=str(tmp_path / "twice.csv")))
    once = table.set_index("path").loc[twice["path"]]
    assert np.allclose(twice[[f"prob_{c}" for c in labels]].to_numpy(float),
                       once[[f"prob_{c}" for c in labels]].to_numpy(float), atol=1e-5)
    with pytest.raises(DataError, match="no images found"):
        inference.classify(str(tmp_path / "empty*"), model=str(run), out=str(tmp_path / "x.csv"))


def test_multilabel_and_hierarchy_runs_decode_as_they_were_trained(tmp_path):
    hpa = write_hpa(tmp_path / "hpa", n_train=24, n_test=4, size=16, duplicates=0)
    make_folds.main(str(hpa), out_dir=str(tmp_path / "hpa_csv"), n_folds=2, source="hpa", target="multilabel",
                    grouped=False)
    run = _run(tmp_path, "hpa_run", "configs/data/hpa.yml", hpa, "--data_params/source_params={classes: 8}",
               *_fold(tmp_path / "hpa_csv"))
    stacked = tmp_path / "stacks"  # one 4-channel TIFF per sample, stains in the run's order
    import tifffile

    for sid in ("te00000", "te00001"):
        planes = [cv2.imread(str(hpa / "test" / f"{sid}_{s}.png"), cv2.IMREAD_UNCHANGED)
                  for s in ("red", "green", "blue", "yellow")]
        stacked.mkdir(exist_ok=True)
        tifffile.imwrite(stacked / f"{sid}.tif", np.stack(planes))
    table = pd.read_csv(inference.classify(str(stacked), model=str(run), out=str(tmp_path / "hpa.csv")),
                        keep_default_na=False)
    assert len(table) == 2 and (table["error"] == "").all() and "pred" in table.columns
    assert all(set(str(cell).split()) <= {str(k) for k in range(8)} for cell in table["pred"])
    # the same samples as HPA's one file per stain, grouped by the pattern (stain names, in the run's order)
    per_stain = pd.read_csv(inference.classify(str(hpa / "test"), model=str(run), pattern="{sample}_{channel}.png",
                                               out=str(tmp_path / "hpa_stains.csv")), keep_default_na=False)
    assert len(per_stain) == 4 and (per_stain["error"] == "").all()
    assert all([Path(f).stem.split("_")[1] for f in files.split(";")] == ["red", "green", "blue", "yellow"]
               for files in per_stain["files"])
    same = per_stain.set_index(per_stain["path"].map(lambda p: Path(p).name)).loc[["te00000", "te00001"]]
    stack = table.set_index(table["path"].map(lambda p: Path(p).stem)).loc[["te00000", "te00001"]]
    prob = [c for c in table.columns if c.startswith("prob_")]
    assert np.allclose(same[prob].to_numpy(float), stack[prob].to_numpy(float), atol=1e-5)
    moths = write_moths(tmp_path / "moths", per_species=12, rare=2, size=24)
    make_folds.main(str(moths / "image_folder"), out_dir=str(tmp_path / "moth_csv"), n_folds=2, source="folder",
                    grouped=False)
    run = _run(tmp_path, "moth_run", "configs/data/moths.yml", moths / "image_folder",
               "--data_params/min_samples=3", *_fold(tmp_path / "moth_csv"))
    table = pd.read_csv(inference.classify(str(moths / "image_folder" / "Noctua pronuba"), model=str(run),
                                           out=str(tmp_path / "moths.csv")), keep_default_na=False)
    parents = json.loads((run / "checkpoints" / "labels.json").read_text())["parents"]
    assert len(table) == 12 and {"pred_genus", "pred_group", "pred_family"} <= set(table.columns)
    assert all(parents[s] == [g, gr, f] for s, g, gr, f in
               table[["pred", "pred_genus", "pred_group", "pred_family"]].itertuples(index=False))


def test_numbered_channel_files_and_incomplete_samples(manifest_run, tmp_path):
    run, root = manifest_run
    rgb = sorted((root / "images").glob("c1_*.png"))[:2]
    for k, path in enumerate(rgb):  # RxRx1-style names: one grey file per channel
        img = cv2.imread(str(path))[..., ::-1]
        for c in range(3):
            if not (k == 1 and c == 2):  # the second sample lacks channel 3
                cv2.imwrite(str(tmp_path / f"s{k}_w{c + 1}.png"), img[..., c])
    (tmp_path / "notes.txt.png").write_bytes(b"x")
    table = pd.read_csv(inference.classify(str(tmp_path), model=str(run), pattern="{sample}_w{channel}.png",
                                           out=str(tmp_path / "out" / "p.csv")), keep_default_na=False)
    errors = table.set_index("path")["error"]
    assert errors[str(tmp_path / "s0")] == "" and "no file for channel(s) [3]" in errors[str(tmp_path / "s1")]
    assert "does not match --pattern" in errors[str(tmp_path / "notes.txt.png")]
    whole = pd.read_csv(inference.classify(str(rgb[0]), model=str(run), out=str(tmp_path / "whole.csv")))
    prob = [c for c in whole.columns if c.startswith("prob_")]
    assert np.allclose(table.set_index("path").loc[str(tmp_path / "s0"), prob].to_numpy(float),
                       whole[prob].to_numpy(float)[0], atol=1e-5)
    with pytest.raises(DataError, match="must name {sample} and {channel}"):
        inference.classify(str(tmp_path), model=str(run), pattern="{id}.png", out=str(tmp_path / "x.csv"))


def test_a_package_classifies_without_the_run_tree_and_refuses_edits(manifest_run, tmp_path):
    run, root = manifest_run
    tree = tmp_path / "tree"
    for fold in (0, 1):
        shutil.copytree(run, tree / "[all]" / f"fold_{fold}" / run.name)
    package = tmp_path / "pkg"
    inference.export(model=str(tree), out=str(package))
    meta = json.loads((package / "package.json").read_text())
    assert len(meta["members"]) == 2 and meta["channels"] == [1, 2, 3] and meta["classes"] == ["c0", "c1", "c2", "c3"]
    assert meta["image_size"] == 32 and meta["tta"] == "d4" and len(meta["sha256"]) == 64
    images = str(root / "images" / "c2_*.png")
    from_tree = pd.read_csv(inference.classify(images, model=str(tree), out=str(tmp_path / "a.csv")))
    shutil.rmtree(tree)  # the package alone
    from_pkg = pd.read_csv(inference.classify(images, model=str(package), out=str(tmp_path / "b.csv")))
    prob = [c for c in from_tree.columns if c.startswith("prob_")]
    assert np.allclose(from_tree[prob].to_numpy(float), from_pkg[prob].to_numpy(float), atol=1e-6)
    assert (from_tree["model"] == from_pkg["model"]).all()  # ids are checkpoint hashes, not paths
    # a file slipped in among the members is refused, not loaded
    extra = package / "members" / "9_extra" / "DONE.json"
    extra.parent.mkdir()
    extra.write_text("{}")
    with pytest.raises(DataError, match=r"members/9_extra/DONE.json is not one of its recorded files"):
        inference.classify(images, model=str(package), out=str(tmp_path / "c.csv"))
    shutil.rmtree(extra.parent)
    # an edited file is named, and nothing is classified
    config = next(package.rglob("config.yml"))
    config.write_text(config.read_text() + "\n# edited\n")
    with pytest.raises(DataError, match=r"config.yml does not match its recorded SHA-256"):
        inference.classify(images, model=str(package), out=str(tmp_path / "c.csv"))
    assert not (tmp_path / "c.csv").exists()


def test_predictions_log_to_a_real_mlflow_store(manifest_run, tmp_path):
    """classify and predict with --mlflow: one finished MLflow run each, read back through the client."""
    from mlflow.tracking import MlflowClient

    run, root = manifest_run
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = inference.classify(str(root / "images"), model=str(run), out=str(tmp_path / "c.csv"), mlflow=True,
                             mlflow_uri=uri, mlflow_experiment="preds")
    inference.predict(str(run), str(tmp_path / "p"), mlflow=True, mlflow_uri=uri, mlflow_experiment="preds")
    client = MlflowClient(tracking_uri=uri)
    runs = {r.data.tags["command"]: r for r in client.search_runs([client.get_experiment_by_name("preds").experiment_id])}
    assert set(runs) == {"classify", "predict"} and {r.info.status for r in runs.values()} == {"FINISHED"}
    c, p = runs["classify"], runs["predict"]
    assert c.data.metrics["samples"] == len(pd.read_csv(out)) and c.data.metrics["unreadable"] == 0
    assert json.loads(c.data.tags["models"]) == [str(run)] and c.data.params["top_k"] == "3"
    assert {a.path for a in client.list_artifacts(c.info.run_id)} == {"c.csv"}
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert p.data.metrics["test_samples"] == meta["n_test"] and p.data.params["run_dir"] == str(run)
    assert {a.path for a in client.list_artifacts(p.info.run_id)} == {"meta.json"}
    # artefacts beside the database, not in whichever folder the command ran in
    assert sorted(p.name for p in (tmp_path / "mlruns").rglob("*.json")) == ["meta.json"]
