"""A sweep's search space, declared in YAML with the project's ``section/key`` names:

    space:
      optimizer_params/lr: {float: [1.0e-4, 3.0e-3], log: true}   # a range (log scale optional)
      stages/finetune/num_epochs: {int: [4, 12], step: 4}         # an integer range
      model_params/model_name: [cnn4_w16, cnn4_w32]               # a list of choices
      mix_params/mode: [none, mixup]

A trial's values become train.py overrides (``--optimizer_params/lr=0.0012``) and the best trial's a
YAML overlay (nested sections) ready for ``--overlay``. The grid sampler needs every key as a list.
"""
from typing import Any, Dict, List

import yaml

from cellpipe.core.errors import ConfigError


def check_space(space: dict, where: str) -> Dict[str, Any]:
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: 'space' must map config keys (section/key) to a range or a list of choices")
    for key, spec in space.items():
        if "/" not in str(key):
            raise ConfigError(f"{where}: space key {key!r} must be a config key such as optimizer_params/lr")
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{where}: space key {key}: an empty list of choices")
            continue
        if not isinstance(spec, dict) or len({"float", "int"} & set(spec)) != 1:
            raise ConfigError(f"{where}: space key {key}: expected a list of choices or {{float: [low, high]}} / "
                              f"{{int: [low, high]}} (with log: true or step: N), got {spec!r}")
        kind = "float" if "float" in spec else "int"
        bounds = spec[kind]
        unknown = sorted(set(spec) - {kind, "log", "step"})
        if unknown:
            raise ConfigError(f"{where}: space key {key}: unknown setting(s) {unknown}; a range takes log and step")
        if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
            raise ConfigError(f"{where}: space key {key}: {kind} needs [low, high] with low < high, got {bounds!r}")
    return space


def _flat(choice) -> bool:
    return choice is None or isinstance(choice, (bool, int, float, str))


def choices(spec: list) -> list:
    """Optuna's choices of a list: the values, or their YAML text when some are lists or mappings
    (optuna stores only plain values; e.g. lr_range: [[0.01, 0.0001], [0.03, 0.0001]])."""
    return spec if all(_flat(c) for c in spec) else [yaml.safe_dump(c, default_flow_style=True).strip() for c in spec]


def value_of(spec, param):
    """A trial's parameter as the config value it stands for (choices() undone)."""
    return yaml.safe_load(param) if isinstance(spec, list) and not all(_flat(c) for c in spec) else param


def suggest(trial, space: dict) -> Dict[str, Any]:
    """The trial's value for every key (optuna's suggest_* by the key's declaration)."""
    values = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            values[key] = value_of(spec, trial.suggest_categorical(key, choices(spec)))
        elif "float" in spec:
            low, high = spec["float"]
            values[key] = trial.suggest_float(key, float(low), float(high), log=bool(spec.get("log")),
                                              step=spec.get("step"))
        else:
            low, high = spec["int"]
            values[key] = trial.suggest_int(key, int(low), int(high), log=bool(spec.get("log")),
                                            step=int(spec.get("step", 1)))
    return values


def grid(space: dict, where: str) -> Dict[str, list]:
    """The search space of optuna's GridSampler: every key a list."""
    ranges = [k for k, v in space.items() if not isinstance(v, list)]
    if ranges:
        raise ConfigError(f"{where}: the grid sampler needs a list of values for every key; {ranges} are ranges "
                          "(use tpe or random, or list the values)")
    return {k: choices(list(v)) for k, v in space.items()}


def overrides(values: Dict[str, Any]) -> List[str]:
    """train.py arguments of ``values`` (YAML-dumped, so lists and strings parse back as they were)."""
    return [f"--{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in values.items()]


def overlay(values: Dict[str, Any]) -> dict:
    """``{section/key: value}`` -> nested sections, as an overlay file holds them."""
    out: dict = {}
    for key, value in values.items():
        node = out
        *parents, leaf = str(key).split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
