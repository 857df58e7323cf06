"""The target-kind registry: one module per kind, no kind branches elsewhere, a new kind is one file."""
import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cellpipe.tasks as tasks
from cellpipe.core.errors import ConfigError
from cellpipe.tasks import TASKS, from_dict, kinds, resolve_defaults, task_class
from cellpipe.tasks.single import SingleLabel
from cellpipe.training.evaluate import prediction_table, write_validation_report
from cellpipe.training.losses import check_criterion

SRC = Path(tasks.__file__).resolve().parents[1]
# comparisons with a target kind's name; outside tasks/ the code asks the task object instead
KIND_BRANCH = re.compile(r"""(kind|target)\s*(==|!=|\bin\b)\s*\(?["'](single|multilabel|hierarchy)["']""")


def test_every_module_of_the_package_registers_its_kind():
    modules = {m.name for m in pkgutil.iter_modules(tasks.__path__)} - {"base"}
    assert set(kinds()) == modules
    for name in modules:
        cls = task_class(name)
        assert cls.kind == name and cls.__module__ == f"cellpipe.tasks.{name}"
        assert cls.default_criterion["criterion"] in cls.criteria
        assert cls.metric_known(cls.default_metric)


def test_no_target_kind_branches_outside_tasks():
    hits = [f"{p.relative_to(SRC)}:{n}: {line.strip()}"
            for p in SRC.rglob("*.py") if "tasks" not in p.relative_to(SRC).parts
            for n, line in enumerate(p.read_text().splitlines(), 1) if KIND_BRANCH.search(line)]
    assert hits == []


def test_unknown_kind_names_the_key_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"data_params/target': unknown kind 'regression'; known: hierarchy, "):
        task_class("regression")


def test_auto_criterion_and_metric_take_the_kinds_defaults():
    cfg = {"data_params": {"target": "multilabel"}, "criterion_params": {"criterion": "auto"},
           "valid_criterion_params": {"criterion": "auto"}, "state_params": {"main_metric": "auto"}}
    resolve_defaults(cfg)
    assert cfg["criterion_params"]["criterion"] == "BCEWithLogitsLoss"
    assert cfg["state_params"]["main_metric"] == "macro_f1"
    kept = {"data_params": {}, "criterion_params": {"criterion": "LabelSmoothingCrossEntropy", "smoothing": 0.1},
            "valid_criterion_params": {"criterion": "CrossEntropyLoss"}, "state_params": {"main_metric": "map03"}}
    assert resolve_defaults(kept)["criterion_params"]["smoothing"] == 0.1


class Binary(SingleLabel):
    """A kind written for this test only: two classes, scored by balanced accuracy."""

    kind = "test_binary"
    metrics = ("balanced_accuracy",)
    default_metric = "balanced_accuracy"

    def epoch_metrics(self, logits, targets):
        pred = np.asarray(logits).argmax(axis=1)
        targets = np.asarray(targets)
        return {"balanced_accuracy": float(np.mean([(pred[targets == c] == c).mean() for c in (0, 1)]))}


@pytest.fixture
def binary_kind():
    TASKS.register("test_binary")(Binary)
    yield Binary
    TASKS._items.pop("test_binary")


def test_a_new_kind_is_one_class_and_every_consumer_uses_it(binary_kind, tmp_path):
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": ["no", "yes", "yes", "no"]})
    task = tasks.build_task(table, {"target": "test_binary"})
    assert isinstance(from_dict(task.to_dict()), Binary)  # labels.json round trip
    check_criterion({"criterion": "CrossEntropyLoss"}, Binary, "criterion_params")
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    targets = task.encode(table, "t")
    assert task.epoch_metrics(logits, targets) == {"balanced_accuracy": 0.75}
    preds = prediction_table(logits, table, task, targets)
    assert list(preds["pred"]) == ["no", "yes", "no", "no"]
    report = write_validation_report(logits, table.assign(target=targets), task, tmp_path)
    assert report["valid_top1_final"] == 0.75 and report["baseline_top1_majority"] == 0.5
    assert (tmp_path / "per_class.csv").is_file()


def test_kind_modules_import_nothing_above_core():
    for path in Path(tasks.__file__).parent.glob("*.py"):
        imports = re.findall(r"^from (cellpipe\.\w+)", path.read_text(), flags=re.M)
        assert set(imports) <= {"cellpipe.core", "cellpipe.tasks"}, path.name
    importlib.import_module("cellpipe.tasks.single")
