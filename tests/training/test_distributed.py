"""Distributed data parallel: per-process sampling, gathered metrics, and a real 2-process run on CPU
(gloo, torchrun); the one-GPU switches channels_last and compile."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from cellpipe.data.sampling import GroupBatchSampler, SeededBatches
from cellpipe.models import create_model
from cellpipe.training.distributed import ShardSampler
from cellpipe.training.runner import prepare_model
from conftest import REPO, tiny_train_args


def _draws(batches, rank, world):
    torch.manual_seed(7)  # what CellRunner does in every process at the start of each loader
    return list(SeededBatches(batches, rank, world))


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("kind", ["random", "group"])
def test_processes_share_out_one_sequence_of_draws(world, kind):
    """N processes together draw exactly what one process draws (same samples, same seeds), each
    the same number of batches (DDP steps in lockstep), none twice."""
    if kind == "random":
        batches = BatchSampler(RandomSampler(range(50)), 4, False)
    else:
        batches = GroupBatchSampler(np.repeat(np.arange(5), 10), 4, seed=3)
    single = _draws(batches, 0, 1)
    shards = [_draws(batches, r, world) for r in range(world)]
    n = len(single) // world
    assert [len(s) for s in shards] == [n] * world == [len(SeededBatches(batches, r, world)) for r in range(world)]
    merged = [shards[i % world][i // world] for i in range(n * world)]
    assert merged == single[:n * world]
    indices = [i for shard in shards for batch in shard for i, _ in batch]
    assert len(indices) == len(set(indices))


def test_shard_sampler_covers_every_index_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]


def test_channels_last_and_compile_keep_the_checkpoint_format():
    plain = create_model(model="timm", model_name="test_resnet", n_channels=3, num_classes=4)
    model = create_model(model="timm", model_name="test_resnet", n_channels=3, num_classes=4)
    model.load_state_dict(plain.state_dict())
    model = prepare_model(model, {"channels_last": True, "compile": "eager"}, "cpu")
    assert model.channels_last
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert list(model.state_dict()) == list(plain.state_dict())  # no _orig_mod. prefixes
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=1e-4, atol=1e-5)
    auto = prepare_model(create_model(model="timm", model_name="test_resnet", n_channels=3, num_classes=4),
                         {"channels_last": "auto", "compile": False}, "cpu")
    assert not auto.channels_last  # auto: on CUDA only


def test_processes_must_be_a_whole_number(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "src/train.py"), "--config", str(REPO / "configs/config.yml"),
                           "--logdir", str(tmp_path / "run"), "--engine_params/processes=two"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "engine_params/processes" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_two_process_run_on_cpu_gathers_validation_metrics(demo_root, demo_csv, tmp_path):
    """train.py with engine_params/processes=2 relaunches itself under torchrun (gloo); the best
    epoch's validation accuracy (gathered from both processes' shards) equals the accuracy rank 0
    computes alone over the whole validation split with the final model."""
    run = tmp_path / "run"
    args = tiny_train_args(demo_root, demo_csv, 0, run) + [
        "--engine_params/processes=2", "--engine_params/channels_last=true", "--engine_params/compile=eager",
        "--data_params/batch_size=8"]
    proc = subprocess.run([sys.executable, str(REPO / "src/train.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads((run / "DONE.json").read_text())
    history = pd.read_csv(run / "history.csv")
    best = history[(history.stage == "finetune") & (history.epoch == done["best_epoch"])].iloc[0]
    n_valid = len(pd.read_csv(demo_csv / "valid_0.csv"))
    assert done["n_valid"] == n_valid
    assert best["valid_accuracy01"] == pytest.approx(done["valid_top1_final"], abs=1e-6)
    assert "rank 1" not in (run / "train.log").read_text()  # one log, written by rank 0


def test_gradual_unfreeze_is_refused_with_several_processes():
    from cellpipe.core import config as cfglib
    from cellpipe.core.errors import ConfigError

    unfreeze = "--stages/finetune/unfreeze={start_epoch: 1, duration: 1, fraction: 0.5}"
    cfglib.load_config(REPO / "configs/config.yml", [], [unfreeze])  # one process: fine
    with pytest.raises(ConfigError, match="unfreeze.*processes"):
        cfglib.load_config(REPO / "configs/config.yml", [], [unfreeze, "--engine_params/processes=2"])
