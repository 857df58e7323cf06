"""Config files, overlays, command-line overrides and validation."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cellpipe.core import config
from cellpipe.core.config import ConfigError, load_config, merge, parse_overrides

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
STAGES = {"config_control.yml": "control", "config.yml": "non_pseudo", "config_pseudo.yml": "pseudo"}
BASE = config.merge(yaml.safe_load((CONFIGS / "base.yml").read_text()),
                    yaml.safe_load((CONFIGS / "data" / "rxrx1.yml").read_text()))  # what the RxRx1 stages share


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------ stage files


@pytest.mark.parametrize("stage,dataset", sorted(STAGES.items()))
def test_stage_configs_load_and_inherit_base(stage, dataset):
    raw = yaml.safe_load((CONFIGS / stage).read_text())
    assert raw.pop("_base_") == ["base.yml", "data/rxrx1.yml"]
    cfg = load_config(CONFIGS / stage)
    assert cfg["data_params"]["source_params"]["dataset"] == dataset
    assert "_base_" not in cfg
    assert set(cfg) == set(BASE)
    # every key the stage file does not set comes from base.yml unchanged
    own = _flatten(raw)
    flat = _flatten(cfg)
    for key, value in _flatten(BASE).items():
        if key in own:
            assert flat[key] == own[key], key
        elif key != "model_params/n_channels":
            assert flat[key] == value, key
    assert cfg["model_params"]["n_channels"] == len(cfg["data_params"]["channels"])


def test_control_stage_overrides_only_what_differs():
    cfg = load_config(CONFIGS / "config_control.yml")
    assert cfg["data_params"]["source_params"]["dataset"] == "control"
    assert cfg["stages"]["warmup"]["accumulation_steps"] == 4
    # siblings of an overridden key survive the deep merge
    assert cfg["stages"]["warmup"]["num_epochs"] == BASE["stages"]["warmup"]["num_epochs"]
    assert cfg["stages"]["finetune"]["scheduler_params"] == BASE["stages"]["finetune"]["scheduler_params"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_demo_overlay(stage):
    cfg = load_config(CONFIGS / stage, [CONFIGS / "demo.yml"])
    assert cfg["model_params"]["model"] == "timm"
    assert cfg["model_params"]["num_classes"] == 32
    assert cfg["data_params"]["num_workers"] == 0
    assert cfg["data_params"]["source_params"]["dataset"] == STAGES[stage]  # the overlay does not touch it
    sched = cfg["stages"]["finetune"]["scheduler_params"]
    assert sched["scheduler"] == "OneCycleLR"  # kept from base
    assert sched["lr_range"] == [0.004, 0.0001]  # from the overlay
    assert sched["momentum_range"] == BASE["stages"]["finetune"]["scheduler_params"]["momentum_range"]


def test_demo_control_overlay_chains_to_demo():
    cfg = load_config(CONFIGS / "config_control.yml", [CONFIGS / "demo_control.yml"])
    assert cfg["model_params"]["num_classes"] == 4
    assert cfg["model_params"]["model_name"] == "test_resnet"  # from demo.yml via _base_
    assert cfg["data_params"]["source_params"]["dataset"] == "control"


def test_base_path_is_relative_to_the_file(tmp_path):
    _write(tmp_path / "parent.yml", {"a": 1, "b": {"c": 2, "d": 3}})
    child = _write(tmp_path / "sub" / "child.yml", {"_base_": "../parent.yml", "b": {"c": 20}})
    assert config.read_yaml(child) == {"a": 1, "b": {"c": 20, "d": 3}}
    grandchild = _write(tmp_path / "sub" / "deeper" / "gc.yml", {"_base_": "../child.yml", "a": 5})
    assert config.read_yaml(grandchild) == {"a": 5, "b": {"c": 20, "d": 3}}


def test_missing_base_file_is_named(tmp_path):
    child = _write(tmp_path / "child.yml", {"_base_": "nowhere.yml"})
    with pytest.raises(ConfigError, match="nowhere.yml"):
        config.read_yaml(child)


def test_unknown_key_in_stage_file(tmp_path):
    stage = _write(tmp_path / "stage.yml", {"_base_": str(CONFIGS / "base.yml"), "data_params": {"chanels": [1]}})
    with pytest.raises(ConfigError, match="data_params/chanels"):
        load_config(stage)


# ------------------------------------------------------------------ overrides


def test_override_parsing():
    got = parse_overrides(["--data_params/channels=[1,2,3]", "--model_params/weight=", "--seed", "3",
                           "--engine_params/cpu=true", "--data_params/root=/some/where"])
    assert got == {"data_params": {"channels": [1, 2, 3], "root": "/some/where"},
                   "model_params": {"weight": None}, "seed": 3, "engine_params": {"cpu": True}}


def test_overrides_applied():
    cfg = load_config(CONFIGS / "config.yml", [CONFIGS / "demo.yml"],
                      ["--data_params/channels=[1,2,3]", "--model_params/weight=", "--seed", "3",
                       "--stages/finetune/scheduler_params/lr_range=[0.1,0.01]"])
    assert cfg["data_params"]["channels"] == [1, 2, 3]
    assert cfg["model_params"]["n_channels"] == 3
    assert cfg["model_params"]["weight"] is None
    assert cfg["seed"] == 3
    assert cfg["stages"]["finetune"]["scheduler_params"]["lr_range"] == [0.1, 0.01]
    assert cfg["stages"]["finetune"]["scheduler_params"]["warmup_steps"] == 1  # demo.yml, untouched


@pytest.mark.parametrize("bad", [["data_params/channels=[1]"], ["--seed"]])
def test_unparseable_override(bad):
    with pytest.raises(ConfigError):
        parse_overrides(bad)


def test_n_channels_filled_and_checked():
    cfg = load_config(CONFIGS / "config.yml", overrides=["--data_params/channels=[2,4]"])
    assert cfg["model_params"]["n_channels"] == 2
    ok = load_config(CONFIGS / "config.yml", overrides=["--data_params/channels=[2,4]", "--model_params/n_channels=2"])
    assert ok["model_params"]["n_channels"] == 2
    with pytest.raises(ConfigError, match="n_channels") as e:
        load_config(CONFIGS / "config.yml", overrides=["--data_params/channels=[2,4]", "--model_params/n_channels=3"])
    assert "[2, 4]" in str(e.value)


def test_unknown_key_in_overlay(tmp_path):
    overlay = _write(tmp_path / "typo.yml", {"data_params": {"chanels": [1, 2]}})
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "config.yml", [overlay])
    assert "data_params/chanels" in str(e.value)
    assert str(overlay) in str(e.value)


@pytest.mark.parametrize("override,key", [
    ("--data_params/chanels=[1,2]", "data_params/chanels"),
    ("--sed=3", "sed"),
    ("--stages/finetune/scheduler_params/lr_rnge=[1,2]", "stages/finetune/scheduler_params/lr_rnge"),
])
def test_unknown_key_on_command_line(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "config.yml", overrides=[override])
    assert f"'{key}'" in str(e.value)
    assert "command-line" in str(e.value)


@pytest.mark.parametrize("override,key", [
    ("--data_params/channels=[1,7]", "data_params/channels"),
    ("--data_params/channels=[]", "data_params/channels"),
    ("--data_params/channels=[1,1]", "data_params/channels"),
    ("--data_params/batch_size=0", "data_params/batch_size"),
    ("--data_params/image_size=-4", "data_params/image_size"),
    ("--model_params/num_classes=2.5", "model_params/num_classes"),
    ("--data_params/num_workers=-1", "data_params/num_workers"),
    ("--data_params/normalization=foo", "data_params/normalization"),
    ("--data_params/train_sites=[3]", "data_params/train_sites"),
    ("--data_params/valid_sites=[]", "data_params/valid_sites"),
    ("--stages/warmup/num_epochs=0", "stages/warmup/num_epochs"),
    ("--stages/finetune/scheduler_params/lr_range=[0.1]", "stages/finetune/scheduler_params/lr_range"),
])
def test_bad_values_name_the_key(override, key):
    from cellpipe.training.checks import check_names

    with pytest.raises(ConfigError) as e:  # at load, or at the start-up checks against the source
        check_names(load_config(CONFIGS / "config.yml", overrides=[override]))
    assert key in str(e.value)


def test_channel_error_names_the_channel():
    from cellpipe.training.checks import check_names

    cfg = load_config(CONFIGS / "config.yml", overrides=["--data_params/channels=[1,7]"])
    with pytest.raises(ConfigError, match="channel 7 is outside 1-6"):
        check_names(cfg)


def test_dump_round_trips():
    cfg = load_config(CONFIGS / "config_pseudo.yml", [CONFIGS / "demo.yml"], ["--seed=5"])
    assert config.validate(yaml.safe_load(config.dump(cfg))) == cfg


def test_stage_settings_overlay_global_optimizer():
    cfg = load_config(CONFIGS / "config.yml", overrides=["--optimizer_params/weight_decay=0.01"])
    st = config.stage_settings(cfg, "finetune")
    assert st["optimizer_params"] == {"optimizer": "Nadam", "lr": 0.0001, "weight_decay": 0.01}
    assert st["num_epochs"] == cfg["stages"]["finetune"]["num_epochs"]
    assert cfg["optimizer_params"]["lr"] == 0.001  # not mutated


# ------------------------------------------------------------------ the CLI


def _train_cli(*args):
    return subprocess.run([sys.executable, "src/train.py", "--config", "configs/config.yml", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_print_config(tmp_path):
    logdir = tmp_path / "run"
    out = _train_cli("--logdir", str(logdir), "--print-config", "--data_params/channels=[1,2]")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["data_params"]["channels"] == [1, 2]
    assert cfg["model_params"]["n_channels"] == 2
    assert not logdir.exists()  # printing trains nothing


def test_cli_bad_key_exits_2(tmp_path):
    out = _train_cli("--logdir", str(tmp_path / "run"), "--data_params/chanels=[1,2]")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "data_params/chanels" in lines[0]
    assert "Traceback" not in out.stderr


def test_space_separated_override_does_not_swallow_the_next_flag():
    with pytest.raises(ConfigError, match="model_params/weight"):
        parse_overrides(["--model_params/weight", "--seed=3"])


def test_other_criterion_replaces_its_settings_whole():
    base = {"criterion_params": {"criterion": "LabelSmoothingCrossEntropy", "smoothing": 0.1}}
    out = merge(base, {"criterion_params": {"criterion": "FocalLoss", "gamma": 2.0}})
    assert out["criterion_params"] == {"criterion": "FocalLoss", "gamma": 2.0}
    with pytest.raises(ConfigError, match="unknown config key 'criterion_params/gamma'"):
        merge(base, {"criterion_params": {"gamma": 2.0}})


@pytest.mark.parametrize("key", sorted(config.MOVED))
def test_a_moved_key_names_its_new_place(key):
    with pytest.raises(ConfigError, match=f"config key '{key}' in command-line overrides moved to "
                                          f"'{config.MOVED[key]}'"):
        load_config(CONFIGS / "config.yml", [], [f"--{key}=1"])


def test_old_run_configs_are_upgraded_on_read(tmp_path):
    old = {"data_params": {"source": "rxrx1", "dataset": "control", "control_offset": 1108, "channels": [1, 2]}}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(old))
    dp = config.read_run_config(tmp_path / "config.yml")["data_params"]
    assert dp["source_params"] == {"dataset": "control", "control_offset": 1108} and "dataset" not in dp
    # base.yml once gave every source RxRx1's keys: other sources drop them
    other = {"data_params": {"source": "manifest", "dataset": "non_pseudo", "source_params": {}}}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(other))
    assert config.read_run_config(tmp_path / "config.yml")["data_params"] == {"source": "manifest", "source_params": {}}


def test_switching_the_source_drops_the_previous_adapters_settings():
    cfg = load_config(CONFIGS / "config.yml", [CONFIGS / "data" / "rxrx1_2020.yml"])
    assert cfg["data_params"]["source"] == "rxrx1_2020" and "control_offset" not in cfg["data_params"]["source_params"]
