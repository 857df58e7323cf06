"""The bad-input matrix: every input kind x every defect that applies to it.

Each case copies a small valid project (data, folds, a finished run, its predictions), damages one
input, runs the real command that reads it and checks: a non-zero exit, one line that names the
input at fault, and every file that existed before unchanged (nothing marked done).
"""
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ensemble
import make_demo_data
import make_folds
import train
from cellpipe.core import cli
from cellpipe.demo.generic import write_manifest
from cellpipe.inference.predict import predict_all
from conftest import untrained_run

REPO = Path(__file__).resolve().parents[2]
CHANNELS = "[1,2,3,4,5]"
DEMO = dict(image_size=16, n_sirnas=8, n_controls=2, cell_types=1, train_experiments_per_type=3,
            test_experiments_per_type=1)


# ------------------------------------------------------------------ a valid project, built once
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("valid")
    data, csv = base / "data", base / "csv"
    make_demo_data.main(out_dir=str(data), **DEMO)
    make_folds.main(str(data), out_dir=str(csv), n_folds=3, seed=0)
    run = base / "logs" / CHANNELS / "fold_0" / "m"
    untrained_run(train_args(base, run))  # a finished run's files: checkpoints, labels, DONE.json
    predict_all(data, base / "logs", "m", base / "pred")
    pseudo = base / "pseudo"
    pseudo.mkdir()
    table = pd.read_csv(csv / "train_0.csv")
    test = pd.read_csv(data / "test.csv").head(8).assign(sirna=1, dataset="test")
    pd.concat([table.assign(dataset="train"), test]).to_csv(pseudo / "train_0.csv", index=False)
    write_manifest(base / "manifest", per_class=6)
    return base


def train_args(base: Path, logdir: Path, *extra):
    return ["--config", str(REPO / "configs/config.yml"), "--overlay", str(REPO / "configs/tiny.yml"),
            "--logdir", str(logdir), "--model_params/num_classes=8", "--data_params/source_params/control_offset=8",
            "--data_params/image_size=16", "--stages/warmup/num_epochs=1", "--stages/finetune/num_epochs=1",
            f"--data_params/channels={CHANNELS}", f"--data_params/root={base}/data",
            f"--data_params/train_csv={base}/csv/train_0.csv", f"--data_params/valid_csv={base}/csv/valid_0.csv",
            *extra]


# ------------------------------------------------------------------ the commands
def run_train(base, *extra):
    return train.main(train_args(base, base / "newrun", *extra))


def run_train_pseudo(base):
    return run_train(base, "--data_params/source_params/dataset=pseudo", f"--data_params/train_csv={base}/pseudo/train_0.csv")


def run_manifest(base):
    return train.main(["--config", str(REPO / "configs/classify.yml"), "--overlay",
                       str(REPO / "configs/data/manifest.yml"), "--overlay", str(REPO / "configs/tiny.yml"),
                       "--logdir", str(base / "newrun"), f"--data_params/root={base}/manifest"])


def run_cli(main, *argv):
    return lambda base: cli.run(main, [a.format(base=base) for a in argv])


run_predict = run_cli(predict_all, "{base}/data", "{base}/logs", "m", "{base}/newpred")
run_ensemble = run_cli(ensemble.main, "{base}/data", "{base}/pred", "{base}/newens")


# ------------------------------------------------------------------ the defects
def missing(path: Path):
    path.unlink()


def empty(path: Path):
    path.write_bytes(b"")


def truncated(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_an_image(path: Path):
    path.write_text("this is not an image\n")


def csv_edit(edit):
    def apply(path: Path):
        edit(pd.read_csv(path)).to_csv(path, index=False)
    return apply


def set_cell(column, value):
    def edit(df):
        df[column] = df[column].astype(object)
        df.loc[df.index[0], column] = value
        return df
    return csv_edit(edit)


drop_column = lambda column: csv_edit(lambda df: df.drop(columns=[column]))  # noqa: E731
duplicate_row = csv_edit(lambda df: pd.concat([df, df.head(1)]))


def image_of(shape, dtype=np.uint8):
    def apply(path: Path):
        import cv2

        cv2.imwrite(str(path), np.full(shape, 100, dtype))
    return apply


def npy_of(make):
    def apply(path: Path):
        np.save(path, make(np.load(path)))
    return apply


def nan_values(a):
    a = a.copy()
    a[0, 0] = np.nan
    return a


def inf_values(a):
    a = a.copy()
    a[0, 0] = np.inf
    return a


def text(content):
    return lambda path: path.write_text(content)


def first_png(base: Path) -> Path:
    row = pd.read_csv(base / "csv" / "train_0.csv").iloc[0]
    return base / "data" / "train" / row.experiment / f"Plate{row.plate}" / f"{row.well}_s1_w1.png"


def overlay(base):
    return base / "overlay.yml"


CKPT = "logs/" + CHANNELS + "/fold_0/m/checkpoints/best.pth"
PRED = "pred/" + CHANNELS + "/fold_0/m/pred_test.npy"
# (input, defect, file relative to the project (or a function of it), damage, command, text the one line must hold)
CASES = [
    # rxrx1 train.csv, read by make_folds
    ("train.csv", "missing", "data/train.csv", missing, run_cli(make_folds.main, "{base}/data", "--out_dir",
                                                                   "{base}/newcsv", "--n_folds", "3"), "train.csv"),
    ("train.csv", "empty", "data/train.csv", empty, run_cli(make_folds.main, "{base}/data", "--out_dir",
                                                               "{base}/newcsv", "--n_folds", "3"), "train.csv"),
    ("train.csv", "wrong_shape", "data/train.csv", drop_column("sirna"),
     run_cli(make_folds.main, "{base}/data", "--out_dir", "{base}/newcsv", "--n_folds", "3"), "sirna"),
    ("train.csv", "wrong_type", "data/train.csv", set_cell("sirna", "abc"),
     run_cli(make_folds.main, "{base}/data", "--out_dir", "{base}/newcsv", "--n_folds", "3"), "sirna"),
    ("train.csv", "nan", "data/train.csv", set_cell("sirna", None),
     run_cli(make_folds.main, "{base}/data", "--out_dir", "{base}/newcsv", "--n_folds", "3"), "sirna"),
    ("train.csv", "duplicated_ids", "data/train.csv", duplicate_row,
     run_cli(make_folds.main, "{base}/data", "--out_dir", "{base}/newcsv", "--n_folds", "3"), "train.csv"),
    # a fold file, read by training
    ("fold csv", "missing", "csv/train_0.csv", missing, run_train, "train_0.csv"),
    ("fold csv", "empty", "csv/train_0.csv", empty, run_train, "train_0.csv"),
    ("fold csv", "truncated", "csv/train_0.csv", truncated, run_train, "train_0.csv"),
    ("fold csv", "wrong_shape", "csv/train_0.csv", drop_column("well"), run_train, "well"),
    ("fold csv", "wrong_type", "csv/train_0.csv", set_cell("sirna", "abc"), run_train, "sirna"),
    ("fold csv", "nan", "csv/train_0.csv", set_cell("plate", None), run_train, "plate"),
    ("fold csv", "duplicated_ids", "csv/train_0.csv", duplicate_row, run_train, "train_0.csv"),
    # an image, read by training
    ("image", "missing", first_png, missing, run_train, "_s1_w1.png"),
    ("image", "empty", first_png, empty, run_train, "_s1_w1.png"),
    ("image", "truncated", first_png, truncated, run_train, "_s1_w1.png"),
    ("image", "wrong_type", first_png, not_an_image, run_train, "_s1_w1.png"),
    ("image", "wrong_shape", first_png, image_of((24, 16)), run_train, "_s1_w1.png"),
    ("image", "wrong_channel_count", first_png, image_of((16, 16, 3)), run_train, "_s1_w1.png"),
    ("image", "wrong_dtype", first_png, image_of((16, 16), np.uint16), run_train, "_s1_w1.png"),
    # the plate statistics, read by training
    ("pixel_stats.csv", "empty", "data/pixel_stats.csv", empty, run_train, "pixel_stats.csv"),
    ("pixel_stats.csv", "truncated", "data/pixel_stats.csv", truncated, run_train, "pixel_stats.csv"),
    ("pixel_stats.csv", "wrong_shape", "data/pixel_stats.csv", drop_column("std"), run_train, "std"),
    ("pixel_stats.csv", "wrong_type", "data/pixel_stats.csv", set_cell("mean", "abc"), run_train, "mean"),
    ("pixel_stats.csv", "nan", "data/pixel_stats.csv", set_cell("std", None), run_train, "std"),
    ("pixel_stats.csv", "inf", "data/pixel_stats.csv", set_cell("std", float("inf")), run_train, "std"),
    ("pixel_stats.csv", "duplicated_ids", "data/pixel_stats.csv", duplicate_row, run_train, "pixel_stats.csv"),
    # a config overlay and command-line overrides
    ("config", "truncated", overlay, text("data_params: {batch_size: 4\n"),
     lambda b: run_train(b, "--overlay", str(overlay(b))), "overlay.yml"),
    ("config", "wrong_type", overlay, text("data_params: {batch_size: many}\n"),
     lambda b: run_train(b, "--overlay", str(overlay(b))), "batch_size"),
    ("config", "unknown_key", overlay, text("data_params: {batch_sise: 4}\n"),
     lambda b: run_train(b, "--overlay", str(overlay(b))), "batch_sise"),
    ("config", "wrong_shape", overlay, text("- a\n- b\n"),
     lambda b: run_train(b, "--overlay", str(overlay(b))), "overlay.yml"),
    ("override", "wrong_type", None, None, lambda b: run_train(b, "--data_params/batch_size=abc"), "batch_size"),
    ("override", "nan", None, None, lambda b: run_train(b, "--stages/finetune/optimizer_params/lr=nan"), "lr"),
    ("override", "inf", None, None, lambda b: run_train(b, "--data_params/image_size=.inf"), "image_size"),
    ("override", "unknown_key", None, None, lambda b: run_train(b, "--data_params/nope=1"), "nope"),
    ("override", "wrong_channel_count", None, None, lambda b: run_train(b, "--data_params/channels=[1,2,9]"),
     "channels"),
    # a checkpoint, read by predict-all
    ("checkpoint", "missing", CKPT, missing, run_predict, "best.pth"),
    ("checkpoint", "empty", CKPT, empty, run_predict, "best.pth"),
    ("checkpoint", "truncated", CKPT, truncated, run_predict, "best.pth"),
    ("checkpoint", "wrong_type", CKPT, text("not a checkpoint"), run_predict, "best.pth"),
    # a prediction folder, read by the ensemble
    ("predictions", "missing", PRED, missing, run_ensemble, "pred_test.npy"),
    ("predictions", "empty", PRED, empty, run_ensemble, "pred_test.npy"),
    ("predictions", "truncated", PRED, truncated, run_ensemble, "pred_test.npy"),
    ("predictions", "wrong_shape", PRED, npy_of(lambda a: a[:-1]), run_ensemble, "pred_test.npy"),
    ("predictions", "nan", PRED, npy_of(nan_values), run_ensemble, "pred_test.npy"),
    ("predictions", "inf", PRED, npy_of(inf_values), run_ensemble, "pred_test.npy"),
    # a pseudo-label fold file, read by Part III training
    ("pseudo csv", "empty", "pseudo/train_0.csv", empty, run_train_pseudo, "train_0.csv"),
    ("pseudo csv", "wrong_type", "pseudo/train_0.csv", set_cell("dataset", "elsewhere"), run_train_pseudo,
     "dataset"),
    ("pseudo csv", "nan", "pseudo/train_0.csv", set_cell("sirna", None), run_train_pseudo, "sirna"),
    ("pseudo csv", "duplicated_ids", "pseudo/train_0.csv", duplicate_row, run_train_pseudo, "train_0.csv"),
    # seed 000's parquet manifest
    ("manifest", "missing", "manifest/manifest.parquet", missing, run_manifest, "manifest.parquet"),
    ("manifest", "empty", "manifest/manifest.parquet", empty, run_manifest, "manifest.parquet"),
    ("manifest", "truncated", "manifest/manifest.parquet", truncated, run_manifest, "manifest.parquet"),
    # command-line flags of the tools
    ("flags", "wrong_type", None, None, run_cli(make_demo_data.main, "--out_dir", "{base}/x", "--cell_types",
                                                "HEPG2"), "cell_types"),
    ("flags", "wrong_type", None, None, run_cli(make_folds.main, "{base}/data", "--n_folds", "five"), "n_folds"),
    ("flags", "wrong_type", None, None, run_cli(ensemble.main, "{base}/data", "{base}/pred", "{base}/e",
                                                "--temperature", "hot"), "temperature"),
    ("flags", "missing", None, None, run_cli(make_folds.main), "data_root"),
]


def tree_digest(root: Path) -> dict:
    return {p.relative_to(root): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("kind,defect,target,damage,command,names", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input(project, tmp_path, capsys, kind, defect, target, damage, command, names):
    base = tmp_path / "p"
    shutil.copytree(project, base)
    if damage is not None:
        path = target(base) if callable(target) else base / target
        damage(path)
    before = tree_digest(base)
    try:
        rc = command(base)
        message = capsys.readouterr().err.strip().splitlines()
        message = message[-1] if message else ""
    except SystemExit as e:
        rc, message = e.code, str(e.code)
        if isinstance(e.code, int):  # fire's own usage errors: one "ERROR: ..." line before the usage text
            message = next((line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")), "")
    assert rc not in (0, None), f"{kind}/{defect}: the command succeeded"
    assert "\n" not in message.strip() and names in message, f"{kind}/{defect}: {message!r}"
    after = tree_digest(base)
    changed = [str(p) for p, h in before.items() if after.get(p) != h]
    assert not changed, f"{kind}/{defect} changed {changed}"
    assert not (base / "newrun" / "DONE.json").exists(), "a failed command marked its run done"
