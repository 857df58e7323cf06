"""Target kinds by name (``data_params/target``): one module each, registered in TASKS.

Every module of this package that registers a Task subclass is imported on first use, so a
new kind is one new file (plus its tests). ``labels.json`` records the kind; ``load``/``from_dict``
give back the task object that decodes a model's outputs.
"""
import json
from pathlib import Path

from cellpipe.core.config import AUTO
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.registry import Registry, import_modules

TASKS = Registry("target kind")


def _load_kinds() -> None:
    import_modules(__name__, skip=("base",))


def kinds():
    _load_kinds()
    return TASKS.names()


def task_class(kind, key: str = "data_params/target"):
    """The Task subclass of ``kind`` (None means single)."""
    _load_kinds()
    kind = kind or "single"
    if kind not in TASKS:
        raise ConfigError(f"config key '{key}': unknown kind '{kind}'; known: {', '.join(TASKS.names())}")
    return TASKS.get(kind)


def build_task(train, data_params: dict, fixed=None):
    """The run's task from its training split (``data_params/target``)."""
    return task_class(data_params.get("target")).build(train, data_params, fixed)


def from_dict(d: dict):
    _load_kinds()
    kind = d.get("kind", "single")
    if kind not in TASKS:
        raise DataError(f"unknown label map kind {kind!r}; known: {TASKS.names()}")
    return TASKS.get(kind).from_dict(d)


def load(path):
    """Any kind's task from labels.json."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file not found: {path}")
    try:
        return from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"cannot read label map {path}: {e}") from None


def resolve_defaults(cfg: dict) -> dict:
    """``auto`` criterion / main metric -> the target kind's defaults (in place; returns cfg)."""
    task = task_class(cfg["data_params"].get("target"))
    for key, default in (("criterion_params", task.default_criterion),
                         ("valid_criterion_params", task.default_valid_criterion)):
        if (cfg.get(key) or {}).get("criterion") in (None, AUTO):
            cfg[key] = dict(default)
    if cfg["state_params"].get("main_metric") in (None, AUTO):
        cfg["state_params"]["main_metric"] = task.default_metric
    return cfg
