"""YAML configs: a base file plus overlays, seed-style CLI overrides, validation.

A stage config names its parents with ``_base_: base.yml`` or a list merged in order
(``_base_: [base.yml, data/rxrx1.yml]``, relative to itself); overlays (e.g.
``configs/demo.yml``) are merged on top, then command-line overrides such as
``--data_params/channels=[1,2,3,4,5]``. Only keys present in the bases can be set, so a
typo is an error instead of a silently ignored knob; a key that moved names its new place.
"""
import copy
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Sequence

import yaml

from cellpipe.core.errors import ConfigError

BASE_KEY = "_base_"
AUTO = "auto"


def _read_file(path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at top level")
    return data


def read_yaml(path, strict: bool = False, _seen=()) -> Dict[str, Any]:
    """A file merged over its ``_base_`` files (each merged over its own, a list in order); with
    ``strict`` a file may only set keys its bases define (stage files over base.yml)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: _base_ chain loops back on itself")
    data = _read_file(path)
    bases = data.pop(BASE_KEY, None)
    bases = [bases] if isinstance(bases, str) else list(bases or [])
    if not bases:
        return data
    seen = (*_seen, path.resolve())
    cfg = read_yaml(path.parent / bases[0], strict, seen)
    for base in bases[1:]:
        cfg = merge(cfg, read_yaml(path.parent / base, strict, seen), strict=strict, where=str(path.parent / base))
    return merge(cfg, data, strict=strict, where=str(path))


# keys that moved: old path -> new path (an old name is one error line naming the new one)
MOVED = {f"data_params/{k}": f"data_params/source_params/{k}"
         for k in ("dataset", "control_offset", "controls_as_classes", "pixel_stats")}


def upgrade(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """A run's saved config of an earlier version, its moved keys in their new places (in place):
    base.yml once held RxRx1's keys for every source; only rxrx1 runs keep them."""
    dp = cfg.get("data_params") or {}
    for old in MOVED:
        key = old.split("/")[-1]
        if key in dp:
            value = dp.pop(key)
            if dp.get("source", "rxrx1") == "rxrx1":
                dp.setdefault("source_params", {}).setdefault(key, value)
    return cfg


def read_run_config(path) -> Dict[str, Any]:
    """A run's saved config.yml (already resolved), upgraded to today's key names."""
    return upgrade(_read_file(path))


COMPONENT_KEYS = ("criterion", "optimizer", "scheduler")


def names_other(base: Dict, update: Dict) -> bool:
    """True when ``update`` names a different registry component than ``base`` (its settings differ)."""
    return any(k in base and k in update and update[k] != base[k] for k in COMPONENT_KEYS)


def merge(base: Dict, update: Dict, strict: bool = True, where: str = "", prefix: str = "") -> Dict:
    """Deep-merge ``update`` into a copy of ``base``; lists are replaced whole.

    With ``strict`` a key absent from ``base`` raises ConfigError; a mapping that is empty
    in ``base``, or one whose update names another criterion / optimizer / scheduler, is
    replaced whole.
    """
    out = copy.deepcopy(base)
    if "source" in update and update["source"] != base.get("source") and out.get("source_params"):
        out["source_params"] = {}  # another adapter: the previous one's settings do not apply
    for key, value in update.items():
        path = f"{prefix}{key}"
        if path in MOVED:
            raise ConfigError(f"config key '{path}' in {where or 'overrides'} moved to '{MOVED[path]}'")
        if key not in out:
            if strict:
                known = ", ".join(sorted(map(str, out)))
                raise ConfigError(f"unknown config key '{path}' in {where or 'overrides'}; known here: {known}")
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and out[key] and value is not None and not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' in {where or 'overrides'} is a section of settings "
                              f"({', '.join(sorted(map(str, out[key])))}), not a value: got {value!r}")
        elif isinstance(out[key], dict) and isinstance(value, dict) and names_other(out[key], value):
            # another criterion / optimizer / scheduler takes its own settings: replaced whole
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, dict) and out[key]:
            # an empty mapping in the base (source_params, filter) is free-form: taken whole
            out[key] = merge(out[key], value, strict, where, prefix=f"{path}/")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(args: Iterable[str]) -> Dict[str, Any]:
    """``["--data_params/channels=[1,2]", "--seed", "3"]`` -> nested dict.

    Values are parsed as YAML, so lists, numbers, null and booleans work.
    """
    nested: Dict[str, Any] = {}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"cannot parse override {arg!r}: expected --key/sub=value")
        body = arg[2:]
        if "=" in body:
            key, raw = body.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, raw = body, args[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {arg!r} has no value")
        parts = [p for p in key.split("/") if p]
        if not parts:
            raise ConfigError(f"override {arg!r} names no config key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override --{key}: cannot parse value {raw!r}: {' '.join(str(e).split())}") from None
        node = nested
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override --{key} conflicts with --{'/'.join(parts[:depth + 1])}, which sets a value")
        node[parts[-1]] = value
        i += 1
    return nested


def load_config(path, overlays: Sequence = (), overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """Resolve base + stage file + overlays + CLI overrides, then validate."""
    cfg = read_yaml(path, strict=True)
    for overlay in overlays or ():
        cfg = merge(cfg, read_yaml(overlay), strict=True, where=str(overlay))
    cfg = merge(cfg, parse_overrides(overrides), strict=True, where="command-line overrides")
    return validate(cfg)


def _get(cfg: Dict, key: str):
    node = cfg
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config key '{key}' is missing")
        node = node[part]
    return node


def _positive_int(cfg, key, auto: bool = False):
    value = _get(cfg, key)
    if auto and value in (AUTO, None):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config key '{key}' must be a positive integer, got {value!r}")


def _non_negative_int(cfg, key):
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"config key '{key}' must be an integer >= 0, got {value!r}")


def _choice(cfg, key, choices):
    value = _get(cfg, key)
    if value not in choices:
        raise ConfigError(f"config key '{key}' must be one of {list(choices)}, got {value!r}")


def _pair(cfg, key, length=(2,)):
    value = _get(cfg, key)
    if not isinstance(value, (list, tuple)) or len(value) not in length:
        raise ConfigError(f"config key '{key}' must be a list of {length} numbers, got {value!r}")


def _int_list(cfg, key):
    """'auto' or a non-empty list of distinct positive integers (channels, sites)."""
    value = _get(cfg, key)
    if value == AUTO:
        return
    if (not isinstance(value, list) or not value or len(set(value)) != len(value)
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise ConfigError(f"config key '{key}' must be 'auto' or a list of distinct positive integers, got {value!r}")


SECTIONS = ("model_params", "data_params", "criterion_params", "valid_criterion_params", "optimizer_params",
            "state_params", "engine_params", "stages")  # read as mappings everywhere (mix/predict_params may be null)


def validate(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Check types and ranges that need no data; the source checks channels, sites and
    normalisation against its files at start-up (data.build.resolve)."""
    for section in SECTIONS:
        if section in cfg and not isinstance(cfg[section], dict):
            raise ConfigError(f"config key '{section}' must be a mapping of settings, got {cfg[section]!r}")
    for key in ("data_params/channels", "data_params/train_sites", "data_params/valid_sites"):
        _int_list(cfg, key)
    channels = _get(cfg, "data_params/channels")
    n_channels = _get(cfg, "model_params/n_channels")
    if n_channels in (None, AUTO) and channels != AUTO:
        cfg["model_params"]["n_channels"] = len(channels)
    elif n_channels not in (None, AUTO):
        _positive_int(cfg, "model_params/n_channels")
        if channels != AUTO and n_channels != len(channels):
            raise ConfigError(
                f"config key 'model_params/n_channels'={n_channels} does not match "
                f"data_params/channels={channels} ({len(channels)} channels)"
            )
    _positive_int(cfg, "model_params/num_classes", auto=True)
    for key in ("data_params/batch_size", "data_params/image_size"):
        _positive_int(cfg, key)
    for key in ("data_params/num_workers", "data_params/min_samples"):
        _non_negative_int(cfg, key)
    max_gb = (cfg.get("data_params") or {}).get("cache_max_gb")
    if max_gb is not None and (isinstance(max_gb, bool) or not isinstance(max_gb, (int, float)) or max_gb <= 0):
        raise ConfigError(f"config key 'data_params/cache_max_gb' must be a number > 0, got {max_gb!r}")
    _choice(cfg, "data_params/balance", ("none", "sampler", "loss"))
    _choice(cfg, "data_params/unseen_labels", ("error", "other"))
    patience = _get(cfg, "state_params/early_stopping_patience")
    if patience is not None:
        _positive_int(cfg, "state_params/early_stopping_patience")
    stages = _get(cfg, "stages")
    if not isinstance(stages, dict) or not stages:
        raise ConfigError("config key 'stages' must map stage names to their settings")
    for name in stages:
        _positive_int(cfg, f"stages/{name}/num_epochs")
        _positive_int(cfg, f"stages/{name}/accumulation_steps")
        sched = _get(cfg, f"stages/{name}/scheduler_params")
        if sched and sched.get("scheduler") == "OneCycleLR":
            _pair(cfg, f"stages/{name}/scheduler_params/lr_range")
            _pair(cfg, f"stages/{name}/scheduler_params/momentum_range")
            _non_negative_int(cfg, f"stages/{name}/scheduler_params/warmup_steps")
        unfreeze = (stages[name] or {}).get("unfreeze")
        if unfreeze is not None:
            _unfreeze(cfg, name, unfreeze)
            if (cfg.get("engine_params") or {}).get("processes", 1) != 1:
                # DistributedDataParallel registers the trainable parameters once, at the stage's start
                raise ConfigError(f"config key 'stages/{name}/unfreeze' cannot be combined with "
                                  f"engine_params/processes > 1 (parameters opened mid-stage would not be synced)")
        _optimizer_numbers(cfg, name)
    if "processes" in (cfg.get("engine_params") or {}):
        _positive_int(cfg, "engine_params/processes")
    return cfg


def _optimizer_numbers(cfg, stage):
    """The optimizer's settings other than its name are finite numbers (YAML reads ``nan`` as text)."""
    if "optimizer_params" not in cfg:
        return
    merged = stage_settings(cfg, stage)["optimizer_params"]
    for key, value in merged.items():
        if key == "optimizer" or isinstance(value, (list, tuple, dict)) or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"config key 'stages/{stage}/optimizer_params/{key}' must be a finite number, "
                              f"got {value!r}")


UNFREEZE_KEYS = ("start_epoch", "duration", "fraction")


def _unfreeze(cfg, name, spec):
    key = f"stages/{name}/unfreeze"
    if not isinstance(spec, dict) or set(spec) != set(UNFREEZE_KEYS):
        raise ConfigError(f"config key '{key}' must be null or a mapping with {list(UNFREEZE_KEYS)}, got {spec!r}")
    _non_negative_int(cfg, f"{key}/start_epoch")
    _non_negative_int(cfg, f"{key}/duration")
    frac = spec["fraction"]
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise ConfigError(f"config key '{key}/fraction' must be in (0, 1], got {frac!r}")


def dump(cfg: Dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def stage_settings(cfg: Dict[str, Any], stage: str) -> Dict[str, Any]:
    """A stage's settings: global optimizer/scheduler params overlaid by the stage's own."""
    st = _get(cfg, f"stages/{stage}")
    out = {"optimizer_params": merge(cfg["optimizer_params"], st.get("optimizer_params") or {}, strict=False)}
    out.update({k: v for k, v in st.items() if k != "optimizer_params"})
    return out
