"""Multi-label target kind (seed 004): label encoding, decoding, thresholds, losses, metrics, folds."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.data.folds import make_folds
from cellpipe.tasks import build_task, from_dict, task_class
from cellpipe.tasks.multilabel import MultiLabel, fit_thresholds, multi_hot
from cellpipe.training.losses import check_criterion, create_criterion


def table(labels, ids=None):
    return pd.DataFrame({"id": ids or [f"s{i}" for i in range(len(labels))], "label": labels})


def test_multilabel_map_encodes_ids_and_names_and_round_trips():
    labels = build_task(table(["0 2", "1", None]), {"target": "multilabel"}, fixed=["a", "b", "c"])
    t = labels.encode(table(["0 2", "b", None]), "t")
    assert t[:2].tolist() == [[1, 0, 1], [0, 1, 0]] and (t[2] == -1).all()
    again = from_dict(
        json.loads(json.dumps(labels.to_dict())))
    assert isinstance(again, MultiLabel) and again.classes == ["a", "b", "c"]
    # without a fixed list the classes are the training split's tokens, naturally sorted
    assert build_task(table(["x10 x2", "x1"]), {"target": "multilabel"}).classes == ["x1", "x2", "x10"]


@pytest.mark.parametrize("cell,match", [("0 7", "label '7' of sample s0 is outside the class list"),
                                        ("  ", "sample s0 has an empty label")])


def test_multilabel_bad_labels_are_one_line(cell, match):
    labels = MultiLabel(["a", "b", "c"])
    with pytest.raises(DataError, match=match):
        labels.encode(table([cell]), "train.csv")


def test_multilabel_decode_keeps_one_class_and_uses_thresholds():
    labels = MultiLabel(["a", "b", "c"])
    probs = np.array([[0.1, 0.2, 0.3], [0.9, 0.6, 0.1]])
    assert labels.decode(probs)["pred"].tolist() == ["c", "a b"]
    assert labels.decode(probs, thresholds=[0.95, 0.5, 0.05])["pred"].tolist() == ["c", "b c"]


def test_fit_thresholds_maximise_each_class_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < [0.5, 0.1]).astype(int)
    # class 1's scores are low even for positives: a low threshold recovers them
    probs = np.where(y == 1, rng.uniform([0.5, 0.15], [1.0, 0.3], (400, 2)), rng.uniform([0.0, 0.0], [0.5, 0.1], (400, 2)))
    th = fit_thresholds(probs, y, (0.02, 0.98, 0.01))
    assert 0.1 <= th[1] <= 0.15 and 0.4 <= th[0] <= 0.5
    assert fit_thresholds(probs, np.zeros_like(y))[0] == 0.5  # nothing to fit: 0.5


def test_multilabel_losses_and_weighted_sum():
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    good, bad = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    for name, kw in (("FocalLoss", {"gamma": 2.0}), ("SoftF1Loss", {}), ("BCEWithLogitsLoss", {})):
        loss = create_criterion(name, **kw)
        assert loss(logits, good) < loss(logits, bad)
    focal, plain = create_criterion("FocalLoss", gamma=2.0), create_criterion("FocalLoss", gamma=0.0)
    assert focal(logits, good) < plain(logits, good)  # easy examples are down-weighted
    assert torch.isclose(plain(logits, good), create_criterion("BCEWithLogitsLoss")(logits, good))
    combo = create_criterion("WeightedSum", losses=[{"criterion": "FocalLoss", "gamma": 2.0, "coef": 2.0},
                                                    {"criterion": "SoftF1Loss", "coef": 1.0}])
    assert torch.isclose(combo(logits, bad), 2 * focal(logits, bad) + create_criterion("SoftF1Loss")(logits, bad))
    with pytest.raises(ConfigError, match="does not fit data_params/target=single"):
        check_criterion({"criterion": "FocalLoss"}, task_class("single"), "criterion_params")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'gama'"):
        create_criterion("FocalLoss", gama=2)


def test_multilabel_metrics():
    labels = MultiLabel(["a", "b", "c"])
    y = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    perfect = np.where(y == 1, 5.0, -5.0)
    m = labels.epoch_metrics(perfect, y)
    assert m["macro_f1"] == 1.0 and m["micro_f1"] == 1.0 and m["bce"] < 0.01
    assert labels.epoch_metrics(-perfect, y)["macro_f1"] < 0.5


def test_multilabel_folds_keep_rare_classes_and_groups():
    rng = np.random.default_rng(0)
    labels = [" ".join(str(k) for k in np.flatnonzero(rng.random(5) < [0.5, 0.3, 0.2, 0.1, 0.06])) or "0"
              for _ in range(300)]
    df = pd.DataFrame({"id": [f"s{i}" for i in range(300)], "label": labels, "group": [f"g{i // 2}" for i in range(300)]})
    folds = make_folds(df, 3, 0, grouped=True, target="multilabel")
    y = multi_hot(df["label"])
    share = y.mean(axis=0)
    for tr, va in folds:
        assert not set(tr["group"]) & set(va["group"])
        fold_share = multi_hot(pd.concat([va["label"], df["label"]]))[:len(va)].mean(axis=0)
        assert np.all(np.abs(fold_share - share) < 0.06)  # every class near its overall rate
