"""Single-label target kind: the label map, top-k / MAP@k metrics, cross-entropy losses, ArcFace."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cellpipe.core.errors import DataError
from cellpipe.core.tables import natural_sort
from cellpipe.tasks import build_task
from cellpipe.tasks.base import CRITERIA
from cellpipe.tasks.single import SingleLabel, classification_metrics, map_at_k, topk_accuracy, true_class_rank
from cellpipe.training.losses import create_criterion


def test_natural_sort_and_label_map():
    assert natural_sort(["c10", "c2", "c1", "b"]) == ["b", "c1", "c2", "c10"]
    table = pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", None]})
    labels = build_task(table, {"unseen_labels": "error"})
    assert labels.classes == ["x", "y"] and list(labels.encode(table, "t")) == [0, 1, -1]
    with pytest.raises(DataError, match="label 'z' of sample q is not a class"):
        labels.encode(pd.DataFrame({"id": ["q"], "label": ["z"]}), "valid.csv")
    other = build_task(table, {"unseen_labels": "other", "other_label": "Other"})
    assert other.classes == ["Other", "x", "y"]
    assert list(other.encode(pd.DataFrame({"id": ["q"], "label": ["z"]}), "v")) == [0]
    assert SingleLabel.from_dict(json.loads(json.dumps(other.to_dict()))).classes == other.classes


def test_min_samples_bundles_rare_classes_in_every_split():
    train = pd.DataFrame({"id": list("abcde"), "label": ["x", "x", "x", "y", "z"]})
    valid = pd.DataFrame({"id": ["f", "g"], "label": ["y", "x"]})
    labels = build_task(train, {"min_samples": 2, "other_label": "Other"})
    assert labels.classes == ["Other", "x"]
    assert list(labels.encode(train, "t")) == [1, 1, 1, 0, 0] and list(labels.encode(valid, "v")) == [0, 1]
    # the bundling travels with the map: a reloaded map encodes new tables the same way
    again = SingleLabel.from_dict(json.loads(json.dumps(labels.to_dict())))
    assert list(again.encode(valid, "v")) == [0, 1] and list(again.canonical(valid["label"])) == ["Other", "x"]


def _brute_ranks(logits, targets):
    """1-based position of the target in each row sorted by descending score."""
    return np.array([list(np.argsort(-row, kind="stable")).index(t) + 1 for row, t in zip(logits, targets)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 10
    logits = rng.normal(size=(n, c)).astype(np.float32)
    targets = rng.integers(0, c, size=n)
    ranks = _brute_ranks(logits, targets)
    lt, tt = torch.from_numpy(logits), torch.from_numpy(targets)
    assert torch.equal(true_class_rank(lt, tt), torch.from_numpy(ranks))
    for k in (1, 3, 5):
        assert topk_accuracy(lt, tt, k) == pytest.approx(np.mean(ranks <= k))
    expected_map = np.mean(np.where(ranks <= 3, 1.0 / ranks, 0.0))
    assert map_at_k(lt, tt, 3) == pytest.approx(expected_map)
    # MAP@3 credits a 2nd or 3rd place with 1/2 or 1/3: strictly below top-3 accuracy here
    assert ((ranks == 2) | (ranks == 3)).any()
    assert map_at_k(lt, tt, 3) < topk_accuracy(lt, tt, 3)
    assert map_at_k(lt, tt, 3) > topk_accuracy(lt, tt, 1)
    got = classification_metrics(logits, targets)  # numpy input works too
    assert got == {"accuracy01": pytest.approx(np.mean(ranks == 1)), "accuracy03": pytest.approx(np.mean(ranks <= 3)),
                   "map03": pytest.approx(expected_map)}


def test_metrics_on_known_ranks():
    logits = torch.tensor([[0.9, 0.1, 0.0, -1.0],   # target 0: rank 1
                           [0.9, 0.5, 0.1, 0.0],    # target 2: rank 3
                           [0.1, 0.9, 0.5, 0.0],    # target 2: rank 2
                           [0.1, 0.9, 0.5, 0.0]])   # target 3: rank 4
    targets = torch.tensor([0, 2, 2, 3])
    assert true_class_rank(logits, targets).tolist() == [1, 3, 2, 4]
    assert map_at_k(logits, targets, 3) == pytest.approx((1 + 1 / 3 + 1 / 2 + 0) / 4)
    assert topk_accuracy(logits, targets, 3) == pytest.approx(3 / 4)


def test_ties_rank_first():
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.5, 0.5], [2.0, 1.0, 1.0]])
    targets = torch.tensor([1, 2, 2])
    assert true_class_rank(logits, targets).tolist() == [1, 1, 2]
    assert topk_accuracy(logits, targets, 1) == pytest.approx(2 / 3)
    assert map_at_k(logits, targets, 3) == pytest.approx((1 + 1 + 0.5) / 3)


def test_label_smoothing_loss_formula():
    torch.manual_seed(0)
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    eps = 0.2
    smooth = create_criterion("LabelSmoothingCrossEntropy", smoothing=eps)(logits, targets)
    plain = create_criterion("CrossEntropyLoss")(logits, targets)
    logp = torch.log_softmax(logits, dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    manual = ((1 - eps) * nll - eps * logp.mean(dim=1)).mean()
    assert torch.allclose(smooth, manual, atol=1e-6)
    assert torch.allclose(plain, nll.mean(), atol=1e-6)
    assert not torch.allclose(smooth, plain)


def test_default_smoothing_and_registry():
    logits, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert create_criterion("LabelSmoothingCrossEntropy").label_smoothing == pytest.approx(0.1)
    assert create_criterion("CrossEntropyLoss").label_smoothing == 0.0
    assert torch.isfinite(create_criterion("LabelSmoothingCrossEntropy")(logits, targets))
    with pytest.raises(KeyError) as e:
        create_criterion("TverskyLoss")
    assert all(name in str(e.value) for name in CRITERIA.names())


def test_arcface_loss_adds_a_margin_to_the_true_class():
    torch.manual_seed(0)
    logits, cos = torch.randn(6, 4), torch.rand(6, 4) * 1.6 - 0.8
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ce = torch.nn.functional.cross_entropy
    no_margin = create_criterion("ArcFaceCombined", arc_weight=1.0, margin=0.0, scale=10.0)
    assert torch.isclose(no_margin((logits, cos), y), ce(10.0 * cos, y), atol=1e-5)
    margin = create_criterion("ArcFaceCombined", arc_weight=1.0, margin=0.5, scale=10.0)
    assert margin((logits, cos), y) > no_margin((logits, cos), y)  # the true class is made harder to reach
    mixed = create_criterion("ArcFaceCombined", arc_weight=0.2, margin=0.5, scale=10.0)
    assert torch.isclose(mixed((logits, cos), y), 0.8 * ce(logits, y) + 0.2 * margin((logits, cos), y))
    assert torch.isclose(mixed(logits, y), ce(logits, y))  # validation: the softmax head alone
