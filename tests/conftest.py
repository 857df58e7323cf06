"""Shared pytest fixtures."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import make_demo_data
import make_folds

FORBID_TRAINING = "CELLPIPE_FORBID_TRAINING"  # cellpipe.training.runner refuses to train when it is set


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Tests not marked slow (make test-fast) train nothing: any training stage they start, in this
    process or a subprocess, fails at once. Set before the test's fixtures, session fixtures included."""
    if item.get_closest_marker("slow") is None:
        os.environ[FORBID_TRAINING] = "1"
    else:
        os.environ.pop(FORBID_TRAINING, None)


# tiny demo set shared by the whole session: 2 cell types x (3 train + 1 test) experiments
DEMO_KWARGS = dict(image_size=32, n_sirnas=16, n_controls=4, cell_types=2,
                   train_experiments_per_type=3, test_experiments_per_type=1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """Path of a tiny synthetic RxRx1-layout data set (with pixel_stats.csv), built once."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_data.main(out_dir=str(root), **DEMO_KWARGS)
    return root


# ------------------------------------------------------------- run folders
REPO = Path(__file__).resolve().parents[1]
# the generated demos' model (configs/tiny.yml), which names their run folders
TINY_MODEL = "cnn4_w16"
TRAINED_CHANNELS = "[1,2,3,4,5]"
TRAINED_MODEL = "test_resnet"
TRAINED_FOLDS = (0, 1)


def tiny_train_args(data_root, csv_dir, fold, logdir, channels=TRAINED_CHANNELS, config="configs/config.yml"):
    """train.main argv for one 1+1-epoch, 32 px run of the demo's 16 siRNAs (absolute config paths)."""
    return [
        "--config", str(REPO / config), "--overlay", str(REPO / "configs" / "demo.yml"), "--logdir", str(logdir),
        "--model_params/num_classes=16", "--data_params/source_params/control_offset=16", "--data_params/image_size=32",
        "--data_params/batch_size=32", "--stages/warmup/num_epochs=1", "--stages/finetune/num_epochs=1",
        f"--data_params/channels={channels}", f"--data_params/root={data_root}",
        f"--data_params/train_csv={csv_dir}/train_{fold}.csv", f"--data_params/valid_csv={csv_dir}/valid_{fold}.csv",
    ]


def untrained_run(argv, seed: int = 0) -> Path:
    """A finished run folder of train.py's ``argv`` whose model is freshly initialised
    (cellpipe.training.fresh): for tests of what consumes runs, which need the files, not a trained
    model. A second. ``seed`` draws the initial weights (runs of one ensemble differ)."""
    import train
    from cellpipe.core import config as cfglib
    from cellpipe.training.fresh import fresh_run

    args, overrides = train.parse_args(argv)
    cfg = cfglib.load_config(args.config, [o for o in args.overlay if o], overrides)
    return fresh_run(cfg, args.logdir, seed)


@pytest.fixture(scope="session")
def untrained_runs(demo_root, tmp_path_factory):
    """Two finished runs (folds 0 and 1, channels [1,2,3,4,5], test_resnet) of the demo set with untrained
    models (untrained_run): {log_dir}/non_pseudo/[1,2,3,4,5]/fold_{0,1}/test_resnet/. Returns data_root,
    csv_dir (3 fold CSVs, seed 0), log_dir, model_root, model_name, channels, folds."""
    tmp = tmp_path_factory.mktemp("untrained")
    csv_dir, log_dir = tmp / "csv", tmp / "logs"
    make_folds.main(str(demo_root), out_dir=str(csv_dir), n_folds=3, seed=0)
    model_root = log_dir / "non_pseudo"
    for fold in TRAINED_FOLDS:
        untrained_run(tiny_train_args(demo_root, csv_dir, fold, model_root / TRAINED_CHANNELS / f"fold_{fold}"
                                      / TRAINED_MODEL), seed=fold)
    return {"data_root": demo_root, "csv_dir": csv_dir, "log_dir": log_dir, "model_root": model_root,
            "model_name": TRAINED_MODEL, "channels": TRAINED_CHANNELS, "folds": TRAINED_FOLDS}


@pytest.fixture(scope="session")
def demo_csv(demo_root, tmp_path_factory):
    """Fold CSVs (3 folds, seed 0) and the control split of demo_root, written by make_folds."""
    out = tmp_path_factory.mktemp("csv")
    make_folds.main(str(demo_root), str(out), n_folds=3, seed=0)
    return out


# ------------------------------------------------------------- synthetic plate layouts (rxrx, ensembles)
def make_wells(rng, groups, n_experiments, prefix="EXP", drop=0):
    """Every experiment's plates 1..G hold the G groups in a random order, wells shuffled.

    ``drop`` wells are removed at random (plates then miss a well or two).
    """
    n_groups = groups.max() + 1
    frames = []
    for e in range(n_experiments):
        for plate, g in enumerate(rng.permutation(n_groups), start=1):
            sirna = rng.permutation(np.flatnonzero(groups == g))
            frames.append(pd.DataFrame({
                "experiment": f"{prefix}-{e + 1:02d}", "plate": plate,
                "well": [f"W{i:03d}" for i in range(len(sirna))], "sirna": sirna, "group": g,
            }))
    df = pd.concat(frames, ignore_index=True)
    if drop:
        df = df.drop(rng.choice(len(df), drop, replace=False)).reset_index(drop=True)
    df.insert(0, "id_code", df["experiment"] + "_" + df["plate"].astype(str) + "_" + df["well"])
    return df


def run_bench(script: str, cfg: dict, tmp_path: Path):
    """Run ``bench/<script>`` as a user would, on a config written from ``cfg``; it must succeed.
    Returns its command line (to rerun it with more flags) and its output folder."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / f"{Path(script).stem}.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp_path / "out"
    cmd = [sys.executable, f"bench/{script}", "--config", str(config), "--out_dir", str(out)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return cmd, out



@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node Slurm cluster (tests/slurm_cluster.py), started once for the session."""
    from slurm_cluster import cluster_or_skip

    cluster = cluster_or_skip(tmp_path_factory)
    yield cluster
    cluster.stop()


# ------------------------------------------------------------- the real Phenix site as a LoadData CSV
REAL = REPO.parent / "shared" / "data" / "cellpainting-6ch"
# the site's channels in Phenix order (ch1 brightfield, ch5 DNA: the data's README)
REAL_NAMES = ["Brightfield", "ER", "AGP", "Mito", "DNA", "RNA"]


def write_load_data(path: Path, illum_dir=None, **extra) -> Path:
    row = {"Metadata_Plate": "BR00117010", "Metadata_Well": "C03", "Metadata_Site": 3, "Metadata_Source": "phenix",
           **extra}
    for i, name in enumerate(REAL_NAMES, 1):
        row[f"FileName_Orig{name}"] = f"r03c03f03p01-ch{i}sk1fk1fl1.tiff"
        row[f"PathName_Orig{name}"] = str(REAL)
        if illum_dir is not None:
            row[f"FileName_Illum{name}"] = f"{name}.npy"
            row[f"PathName_Illum{name}"] = str(illum_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(path, index=False)
    return path


