"""A run whose final validation score is not above its kind's trivial baseline is flagged."""
import numpy as np
import pandas as pd
import pytest

from cellpipe.tasks import build_task
from cellpipe.training.evaluate import write_validation_report

FAMILY = '''"speciesName";"nederNaam";"group";"family";"genus"
"Noctua pronuba";"huismoeder";"macro";"Noctuidae";"Noctua"
"Noctua comes";"volgeling";"macro";"Noctuidae";"Noctua"
"Idaea aversata";"grijze";"micro";"Geometridae";"Idaea"
'''


def kind_case(kind, tmp_path):
    """(task, table, good logits, bad logits) of one kind: good = the truth, bad = a constant minority guess."""
    if kind == "multilabel":
        table = pd.DataFrame({"id": list("abcdef"), "label": ["0", "1", "0 1", "0", "2", "0"]})
        task = build_task(table, {"target": "multilabel"})
        good = np.where(task.encode(table, "t") > 0, 4.0, -4.0)
        return task, table, good, np.full_like(good, -4.0)  # never predicts anything
    table = pd.DataFrame({"id": list("abcdef"), "label": ["Noctua pronuba"] * 4 + ["Noctua comes", "Idaea aversata"]})
    dp = {"target": kind}
    if kind == "hierarchy":
        (tmp_path / "family.csv").write_text(FAMILY)
        dp["hierarchy"] = {"file": str(tmp_path / "family.csv")}
    task = build_task(table, dp)
    targets = task.encode(table, "t")
    species = targets if targets.ndim == 1 else targets[:, 0]
    good, bad = np.full((6, task.n_outputs), -4.0), np.full((6, task.n_outputs), -4.0)
    good[np.arange(6), species] = 4.0
    bad[:, task.classes.index("Idaea aversata")] = 4.0  # right for 1 of 6, the majority class gets 4 of 6
    return task, table, good, bad


@pytest.mark.parametrize("kind", ["single", "multilabel", "hierarchy"])
def test_below_baseline_names_the_score_and_the_baseline(kind, tmp_path):
    task, table, good, bad = kind_case(kind, tmp_path)
    targets = task.encode(table, "t")
    report = write_validation_report(good, table.assign(target=list(targets)), task, tmp_path, targets)
    assert task.below_baseline(report) is None
    report = write_validation_report(bad, table.assign(target=list(targets)), task, tmp_path, targets)
    warning = task.below_baseline(report)
    assert warning and task.final_score in warning and task.baseline_score in warning
    assert report[task.final_score] <= report[task.baseline_score]


def test_done_json_and_log_say_when_a_run_ends_below_its_baseline(tmp_path, caplog):
    """finish_run (what ends every training run) with a model that always answers the rarest class."""
    import json
    import time

    import torch

    import train
    from cellpipe.core import config as cfglib
    from cellpipe.data.build import prepare_training
    from cellpipe.demo.generic import write_manifest
    from cellpipe.models import create_model
    from cellpipe.training.runner import finish_run

    root = write_manifest(tmp_path / "data", per_class=6).parent
    args, overrides = train.parse_args(["--config", "configs/classify.yml", "--overlay", "configs/data/manifest.yml",
                                        "--overlay", "configs/tiny.yml", "--logdir", str(tmp_path / "run"),
                                        f"--data_params/root={root}"])
    cfg = cfglib.load_config(args.config, args.overlay, overrides)
    prepared = prepare_training(cfg, workers=0)
    model = create_model(**cfg["model_params"]).eval()
    counts = np.bincount(prepared.valid.targets, minlength=len(prepared.labels.classes))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-5.0)
        model.head.bias[int(np.argmin(counts))] = 5.0
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    summary = finish_run(cfg, tmp_path / "run", model, prepared, {"best_epoch": 1, "valid": {}}, "finetune",
                         time.time(), warnings=["a start-up warning"])
    done = json.loads((tmp_path / "run" / "DONE.json").read_text())
    assert done["warnings"][0] == "a start-up warning" and "below its trivial baseline" in done["warnings"][1]
    assert done["warnings"] == summary["warnings"]
    assert any("below its trivial baseline" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
