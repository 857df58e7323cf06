"""Options of single-label runs on any source: labels, balancing, unfreeze schedule, early stopping,
per-epoch checkpoints and predicting with a chosen epoch."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cellpipe.core.errors import DataError
from cellpipe.data.dataset import class_weights, sample_weights
from cellpipe.demo.generic import write_manifest
from cellpipe.inference.predict import predict_run
from cellpipe.training.callbacks import GradualUnfreezeCallback

REPO = Path(__file__).resolve().parents[2]


def test_balancing_weights():
    targets = np.array([0, 0, 0, 1])
    w = class_weights(targets, 3)
    assert w[2] == 0 and w[1] == pytest.approx(3 * w[0]) and w[:2].mean() == pytest.approx(1)
    s = np.array(sample_weights(targets, 3))
    assert s[targets == 0].sum() == pytest.approx(s[targets == 1].sum())  # each class drawn equally often


@pytest.mark.parametrize("epoch,expected", [(1, 0), (2, 1), (3, 2), (4, 3), (5, 3), (9, 3)])
def test_unfreeze_schedule(epoch, expected):
    # from epoch 2, over 3 epochs, up to half of 6 blocks: 1, 2, 3 blocks, then stays at 3
    assert GradualUnfreezeCallback(start_epoch=2, duration=3, fraction=0.5).blocks_open(epoch, 6) == expected


def _train(tmp_path, root, *extra):
    import train

    logdir = tmp_path / "run"
    rc = train.main(["--config", str(REPO / "configs/classify.yml"), "--overlay", str(REPO / "configs/data/manifest.yml"),
                     "--overlay", str(REPO / "configs/tiny.yml"), "--logdir", str(logdir),
                     f"--data_params/root={root}", *extra])
    assert rc == 0
    return logdir


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest")
    write_manifest(root, per_class=8)
    return root


@pytest.mark.slow
def test_keep_epochs_and_predict_a_chosen_epoch(manifest, tmp_path):
    run = _train(tmp_path, manifest, "--state_params/keep_epoch_checkpoints=true",
                 "--data_params/balance=loss")
    kept = sorted(p.name for p in (run / "finetune" / "checkpoints").glob("model.0*.pth"))
    assert kept == ["model.0001.pth", "model.0002.pth", "model.0003.pth"]
    best_epoch = json.loads((run / "DONE.json").read_text())["best_epoch"]
    other = 3 if best_epoch != 3 else 1
    a = predict_run(run, None, tmp_path, dest=tmp_path / "other", epoch=other)
    b = predict_run(run, None, tmp_path, dest=tmp_path / "best")
    c = predict_run(run, None, tmp_path, dest=tmp_path / "best_epoch", epoch=best_epoch)
    assert json.loads((a / "meta.json").read_text())["epoch"] == other
    assert not np.allclose(np.load(a / "pred_test.npy"), np.load(b / "pred_test.npy"))  # different weights
    # the run's model is its best epoch (catalyst 22.4's model.best.pth was the last epoch's)
    assert np.array_equal(np.load(c / "pred_test.npy"), np.load(b / "pred_test.npy"))
    with pytest.raises(DataError, match="no checkpoint of epoch 9.*model.0003.pth"):
        predict_run(run, None, tmp_path, dest=tmp_path / "e9", epoch=9)


@pytest.mark.slow
def test_early_stopping_ends_a_stage(manifest, tmp_path):
    # lr 0 and no schedule: the metric never improves, so patience 1 stops after 2 of 6 epochs
    run = _train(tmp_path, manifest, "--state_params/early_stopping_patience=1", "--stages/finetune/num_epochs=6",
                 "--stages/finetune/optimizer_params/lr=0.0", "--stages/finetune/scheduler_params=null")
    done = json.loads((run / "finetune" / "STAGE_DONE.json").read_text())
    assert done["epochs_run"] == 2, done


def test_gradual_unfreeze_config_is_checked():
    sys.path.insert(0, str(REPO / "src"))
    from cellpipe.core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="fraction"):
        load_config(REPO / "configs/classify.yml", overrides=[
            "--stages/finetune/unfreeze={start_epoch: 1, duration: 2, fraction: 1.5}"])


def test_ceal_pseudo_manifest(manifest, tmp_path):
    from cellpipe.prep.ceal import entropy, pseudo_manifest

    man = pd.read_parquet(manifest / "manifest.parquet")
    test = man[man["split_set"] == "TEST"].reset_index(drop=True)
    confident = np.tile([0.97, 0.01, 0.01, 0.01], (len(test), 1))
    confident[::2] = 0.25  # every other sample: a flat, maximal-entropy prediction
    preds = pd.DataFrame({"id": test["img_path"], "pred": "c0"})
    preds[[f"prob_c{i}" for i in range(4)]] = confident
    preds.to_csv(tmp_path / "pred.csv", index=False)
    out = tmp_path / "v2.parquet"
    summary = pseudo_manifest(manifest / "manifest.parquet", tmp_path / "pred.csv", out, max_entropy=0.5)
    v2 = pd.read_parquet(out)
    flipped = v2[~v2["is_gt"].astype(bool)]
    assert summary["pseudo_labelled"] == len(flipped) == len(test[1::2])
    assert set(flipped["img_path"]) == set(test["img_path"][1::2])
    assert (flipped["split_set"] == "TRAIN").all() and (flipped["label"] == "c0").all()
    gt = v2["is_gt"].astype(bool).to_numpy()
    assert len(v2) == len(man) and (v2["label"].to_numpy()[gt] == man["label"].to_numpy()[gt]).all()
    assert entropy(np.full((1, 4), 0.25))[0] == pytest.approx(np.log(4))
    # the new version trains with its pseudo rows only when asked
    from cellpipe.sources import make_source
    shutil_root = tmp_path / "root"
    shutil_root.mkdir()
    (shutil_root / "images").symlink_to(manifest / "images")
    out.rename(shutil_root / "v2.parquet")
    params = {"manifest": "v2.parquet"}
    plain = make_source({"root": str(shutil_root), "source": "manifest", "source_params": params}).catalog()
    pseudo = make_source({"root": str(shutil_root), "source": "manifest",
                          "source_params": {**params, "use_pseudo": True}}).catalog()
    assert len(pseudo) - len(plain) == len(flipped)


@pytest.mark.parametrize("override,match", [
    ("--data_params/filter={label: [c9]}", "the train split is empty"),   # empty class set after filtering
    ("--data_params/filter={colour: [red]}", "filter names column 'colour'"),
    ("--model_params/num_classes=7", "num_classes'=7 but the training split has 4 classes"),
])
def test_bad_selection_is_one_clear_error(manifest, override, match):
    from cellpipe.core.config import load_config
    from cellpipe.data.build import prepare_training

    cfg = load_config(REPO / "configs/classify.yml", [REPO / "configs/data/manifest.yml", REPO / "configs/tiny.yml"],
                      [f"--data_params/root={manifest}", override])
    with pytest.raises((DataError, ValueError), match=match):
        prepare_training(cfg)


@pytest.mark.slow
def test_gradual_unfreeze_in_a_training_run(manifest, tmp_path):
    """Finetune epoch 1: every encoder block still frozen (weights as the warm-up left them); epoch 2:
    the deepest half opens and learns while the shallow blocks keep their weights."""
    from cellpipe.models import create_model, load_checkpoint
    from cellpipe.training.callbacks import encoder_blocks

    run = _train(tmp_path, manifest, "--state_params/keep_epoch_checkpoints=true", "--stages/finetune/num_epochs=2",
                 "--stages/finetune/unfreeze={start_epoch: 2, duration: 1, fraction: 0.5}",
                 "--stages/finetune/scheduler_params=null", "--stages/finetune/optimizer_params/lr=0.01")
    start = load_checkpoint(run / "warmup" / "checkpoints" / "model.best.pth")
    epochs = [load_checkpoint(run / "finetune" / "checkpoints" / f"model.000{e}.pth") for e in (1, 2)]
    from cellpipe.core.config import read_run_config

    model = create_model(**read_run_config(run / "config.yml")["model_params"])  # the run's own architecture
    blocks = encoder_blocks(model)
    names = {id(p): n for n, p in model.named_parameters()}
    block_params = [[names[id(p)] for p in b.parameters()] for b in blocks]

    def moved(a, b, params):
        return any(not torch.equal(a[n], b[n]) for n in params)

    assert not any(moved(start, epochs[0], ps) for ps in block_params)  # epoch 1: all frozen
    assert math.ceil(0.5 * len(blocks)) < len(blocks)  # some blocks stay shut
    assert moved(epochs[0], epochs[1], block_params[-1])  # the deepest block learns in epoch 2
    assert not moved(epochs[0], epochs[1], block_params[0])  # the stem stays frozen
