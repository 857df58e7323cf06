"""Real (tiny) training runs through train.main: artefacts, skipping, resuming, stage-to-stage weights."""
import contextlib
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import train
from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.data.build import load_normalizer, make_dataset
from cellpipe.models import create_model, load_checkpoint
from cellpipe.tasks.single import classification_metrics
from cellpipe.training import runner

REPO = Path(__file__).resolve().parents[2]
CHANNELS = [1, 2, 3, 4, 5]
STAGES = ("warmup", "finetune")
COMMON = ["--data_params/source_params/control_offset=16", "--data_params/image_size=32", "--data_params/batch_size=16",
          "--stages/warmup/num_epochs=1", "--stages/finetune/num_epochs=1", "--data_params/channels=[1,2,3,4,5]"]


def treatment_args(root, csv, logdir, *extra):
    """Part II: the demo's 16 siRNAs, fold 0."""
    return ["--config", str(REPO / "configs/config.yml"), "--overlay", str(REPO / "configs/demo.yml"),
            "--logdir", str(logdir), "--model_params/num_classes=16", *COMMON, f"--data_params/root={root}",
            f"--data_params/train_csv={csv}/train_0.csv", f"--data_params/valid_csv={csv}/valid_0.csv", *extra]


def control_args(root, csv, logdir, *extra):
    """Part I: the demo's 4 controls (num_classes 4 from demo_control.yml)."""
    return ["--config", str(REPO / "configs/config_control.yml"), "--overlay", str(REPO / "configs/demo_control.yml"),
            "--logdir", str(logdir), *COMMON, f"--data_params/root={root}",
            f"--data_params/train_csv={csv}/control_train.csv", f"--data_params/valid_csv={csv}/control_valid.csv",
            *extra]


@contextlib.contextmanager
def restored_logging():
    """train.setup_logging replaces the root handlers and opens train.log: undo both."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def run_main(argv):
    with restored_logging():
        return train.main(argv)


def resolved(argv):
    args, overrides = train.parse_args(argv)
    return cfglib.load_config(args.config, args.overlay, overrides)


def mtimes(logdir: Path, names):
    return {n: (logdir / n).stat().st_mtime_ns for n in names}


def stage_files(stage):
    return [f"{stage}/checkpoints/model.best.pth", f"{stage}/{runner.STAGE_DONE}"]


@pytest.fixture(scope="module")
def runs(demo_root, demo_csv, tmp_path_factory):
    """A Part I control run, then a 16-class run starting from its weights."""
    tmp = tmp_path_factory.mktemp("train")
    control = tmp / "control"
    c_argv = control_args(demo_root, demo_csv, control)
    assert run_main(c_argv) == 0
    control_best = control / layout.FINAL_CHECKPOINT
    run = tmp / "run16"
    r_argv = treatment_args(demo_root, demo_csv, run, f"--model_params/weight={control_best}")
    assert run_main(r_argv) == 0
    return SimpleNamespace(control=control, control_argv=c_argv, run=run, argv=r_argv,
                           root=demo_root, csv=demo_csv)


# ------------------------------------------------------------------ artefacts


@pytest.mark.slow
@pytest.mark.parametrize("which,num_classes", [("control", 4), ("run", 16)])
def test_run_artefacts(runs, which, num_classes):
    logdir, argv = (runs.control, runs.control_argv) if which == "control" else (runs.run, runs.argv)
    done = json.loads((logdir / layout.DONE_FILE).read_text())
    assert done["num_classes"] == num_classes and done["channels"] == CHANNELS
    assert 0.0 <= done["valid"]["map03"] <= 1.0 and "accuracy01" in done["valid"]

    payload = torch.load(logdir / layout.FINAL_CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"model_state_dict", "channels", "model_params"} <= set(payload)
    assert payload["channels"] == CHANNELS
    mp = payload["model_params"]
    assert mp["num_classes"] == num_classes and mp["n_channels"] == len(CHANNELS)
    assert mp["model"] == "timm" and mp["model_name"] == "test_resnet"
    assert "weight" not in mp  # a rebuilt model must not need the earlier stage's file
    assert payload["model_state_dict"]["head.weight"].shape[0] == num_classes

    assert yaml.safe_load((logdir / "config.yml").read_text()) == resolved(argv)
    log_text = (logdir / "train.log").read_text()
    assert "config:" in log_text and "stage finetune best epoch" in log_text

    for stage in STAGES:
        sd = logdir / stage
        marker = json.loads((sd / runner.STAGE_DONE).read_text())
        assert marker["stage"] == stage and marker["best_epoch"] == 1
        assert (sd / "checkpoints" / "model.best.pth").is_file()
        for split in ("train", "valid"):
            lines = (sd / f"{split}.csv").read_text().strip().splitlines()
            assert len(lines) == 2 and "loss" in lines[0].split(",")  # header + 1 epoch
            assert list((sd / split).glob("events.out.tfevents.*")), f"no TensorBoard events in {sd / split}"
        assert "map03" in (sd / "valid.csv").read_text().splitlines()[0].split(",")


@pytest.mark.slow
def test_best_checkpoint_reproduces_reported_metric(runs):
    """Rebuild from best.pth alone, score the valid fold: the numbers in DONE.json come back."""
    payload = torch.load(runs.run / layout.FINAL_CHECKPOINT, map_location="cpu", weights_only=True)
    model = create_model(**payload["model_params"])
    model.load_state_dict(payload["model_state_dict"])
    model.eval()
    cfg = resolved(runs.argv)
    dp = cfg["data_params"]
    ds = make_dataset(dp, "valid", cfg["model_params"]["num_classes"], load_normalizer(dp))
    with torch.no_grad():
        x = torch.stack([ds[i]["features"] for i in range(len(ds))])  # N x sites x C x H x W
        logits = model(x.flatten(0, 1)).view(len(ds), x.shape[1], -1).mean(1)
    targets = torch.tensor([ds[i]["targets"] for i in range(len(ds))])
    got = classification_metrics(logits, targets)
    reported = json.loads((runs.run / layout.DONE_FILE).read_text())["valid"]
    for key in ("accuracy01", "accuracy03", "map03"):
        assert got[key] == pytest.approx(reported[key], abs=1e-5), key


# ------------------------------------------------------------------ skip and resume


@pytest.mark.slow
def test_finished_run_is_skipped(runs, monkeypatch):
    names = [layout.DONE_FILE, layout.FINAL_CHECKPOINT, "config.yml"] + [f for s in STAGES for f in stage_files(s)]
    before = mtimes(runs.run, names)
    monkeypatch.setenv("CELLPIPE_FORBID_TRAINING", "1")  # a stage that trained again would fail here
    assert run_main(runs.argv) == 0
    assert mtimes(runs.run, names) == before


@pytest.mark.slow
def test_resume_skips_finished_stages(runs, tmp_path):
    logdir = tmp_path / "run16"
    shutil.copytree(runs.run, logdir)
    (logdir / layout.DONE_FILE).unlink()
    kept = [f for s in STAGES for f in stage_files(s)]
    before = mtimes(logdir, kept)
    argv = treatment_args(runs.root, runs.csv, logdir, f"--model_params/weight={runs.control / layout.FINAL_CHECKPOINT}")
    assert run_main(argv) == 0
    assert (logdir / layout.DONE_FILE).is_file()
    assert mtimes(logdir, kept) == before  # no stage ran again
    assert list((logdir / "finetune" / "checkpoints").glob("model.0002.pth")) == []
    old = load_checkpoint(runs.run / layout.FINAL_CHECKPOINT)
    new = load_checkpoint(logdir / layout.FINAL_CHECKPOINT)
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)


@pytest.mark.slow
def test_resume_reruns_unfinished_stage(runs, tmp_path):
    logdir = tmp_path / "control"
    shutil.copytree(runs.control, logdir)
    (logdir / layout.DONE_FILE).unlink()
    (logdir / "finetune" / runner.STAGE_DONE).unlink()
    warm_before = mtimes(logdir, stage_files("warmup"))
    fine_before = (logdir / "finetune/checkpoints/model.best.pth").stat().st_mtime_ns
    argv = control_args(runs.root, runs.csv, logdir)
    assert run_main(argv) == 0
    assert mtimes(logdir, stage_files("warmup")) == warm_before
    assert (logdir / "finetune/checkpoints/model.best.pth").stat().st_mtime_ns != fine_before
    assert (logdir / "finetune" / runner.STAGE_DONE).is_file() and (logdir / layout.DONE_FILE).is_file()


@pytest.mark.slow
def test_resume_after_moving_the_run_folder(runs, tmp_path):
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(runs.control, first)
    argv = control_args(runs.root, runs.csv, first, "--force")
    assert run_main(argv) == 0  # markers now point into `first`
    first.rename(moved)
    (moved / layout.DONE_FILE).unlink()
    (moved / "finetune" / runner.STAGE_DONE).unlink()
    assert run_main(control_args(runs.root, runs.csv, moved)) == 0


# ------------------------------------------------------------------ weights between parts


def _params(state, prefix="encoder."):
    return {k: v for k, v in state.items() if k.startswith(prefix)}


@pytest.mark.slow
def test_control_weights_feed_the_16_class_run(runs):
    control = load_checkpoint(runs.control / layout.FINAL_CHECKPOINT)
    assert control["head.weight"].shape[0] == 4
    # building the Part II model loads the Part I encoder and a fresh 16-class head
    cfg = resolved(runs.argv)
    assert cfg["model_params"]["weight"] == str(runs.control / layout.FINAL_CHECKPOINT)
    net = create_model(**cfg["model_params"])
    state = net.state_dict()
    assert state["head.weight"].shape[0] == 16
    enc = _params(control)
    assert enc and all(torch.equal(state[k], v) for k, v in enc.items())
    # the warm-up stage froze the backbone: its learned weights are still Part I's (BN statistics may move)
    warm = load_checkpoint(runs.run / "warmup/checkpoints/model.best.pth")
    learned = {n for n, _ in net.named_parameters() if n.startswith("encoder.")}
    assert learned and all(torch.equal(warm[k], control[k]) for k in learned)
    assert not torch.equal(warm["head.weight"], state["head.weight"])  # the head did learn
    final = load_checkpoint(runs.run / layout.FINAL_CHECKPOINT)
    assert any(not torch.equal(final[k], control[k]) for k in learned)  # fine-tuning moved the encoder


def test_six_channel_checkpoint_into_five_channels(demo_root, demo_csv, tmp_path, monkeypatch):
    six = create_model("timm", "test_resnet", n_channels=6, num_classes=4)

    ckpt = tmp_path / "six" / "best.pth"
    ckpt.parent.mkdir()
    torch.save({"model_state_dict": six.state_dict()}, ckpt)
    logdir = tmp_path / "run"
    argv = treatment_args(demo_root, demo_csv, logdir, f"--model_params/weight={ckpt}")
    with pytest.raises(ValueError) as e:
        runner.train(resolved(argv), logdir)
    msg = str(e.value)
    assert "6 channels" in msg and "n_channels=5" in msg and str(ckpt) in msg
    # the CLI turns it into a one-line error (DEBUG=1 re-raises the ValueError itself)
    with pytest.raises(SystemExit) as exit_info:
        run_main(argv)
    assert str(exit_info.value.code) == f"error: {msg}"
    monkeypatch.setenv("DEBUG", "1")
    with pytest.raises(ValueError, match="6 channels"):
        run_main(argv)
    assert not (logdir / layout.DONE_FILE).exists()


@pytest.mark.slow
def test_same_seed_gives_the_same_model(demo_root, demo_csv, tmp_path):
    """Augmentations, site draws and shuffling all follow the config's seed."""
    weights = []
    for name in ("a", "b"):
        assert run_main(treatment_args(demo_root, demo_csv, tmp_path / name, "--stages/finetune/num_epochs=2")) == 0
        weights.append(load_checkpoint(tmp_path / name / "checkpoints" / "best.pth"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("gpus, amp, expected, precision", [
    (1, True, "GPUEngine", "fp16"), (1, False, "GPUEngine", "no"), (2, True, "DataParallelEngine", "fp16")])
def test_engine_on_cuda_machines(monkeypatch, gpus, amp, expected, precision):
    """The engine kwargs must be ones accelerate's Accelerator accepts (catalyst's own helper passes fp16=)."""
    import inspect

    import accelerate

    made = {}

    class Recorder:
        def __init__(self, **kwargs):
            made.update(kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(runner.dl, expected, type(expected, (Recorder,), {}))
    engine = runner.make_engine({"cpu": False, "amp": amp})
    assert type(engine).__name__ == expected
    assert made == {"mixed_precision": precision}
    assert set(made) <= set(inspect.signature(accelerate.Accelerator.__init__).parameters)


def test_engine_on_cpu_ignores_amp():
    assert isinstance(runner.make_engine({"cpu": True, "amp": True}), runner.dl.CPUEngine)
