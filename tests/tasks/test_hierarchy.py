"""Hierarchy target kind (seed 001): levels from the hierarchy file, joint decoding, loss, metrics."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.tasks import build_task, from_dict
from cellpipe.tasks.hierarchy import Hierarchy, read_hierarchy
from cellpipe.training.evaluate import prediction_table
from cellpipe.training.losses import create_criterion

FAMILY = '''"speciesName";"nederNaam";"group";"family";"genus"
"Noctua pronuba";"huismoeder";"macro";"Noctuidae";"Noctua"
"Noctua comes";"volgeling";"macro";"Noctuidae";"Noctua"
"Idaea aversata";"grijze";"micro";"Geometridae";"Idaea"
'''


def table(labels, ids=None):
    return pd.DataFrame({"id": ids or [f"s{i}" for i in range(len(labels))], "label": labels})


@pytest.fixture
def family(tmp_path):
    path = tmp_path / "family.csv"
    path.write_text(FAMILY)
    return path


def test_hierarchy_map_other_at_every_level_and_consistent_decoding(family):
    train = table(["Noctua pronuba"] * 3 + ["Noctua comes"] * 3 + ["Idaea aversata"] * 3 + ["Rare one"]
                  + ["Unlisted sp"] * 3)
    dp = {"target": "hierarchy", "min_samples": 2, "hierarchy": {"file": str(family)}}
    labels = build_task(train, dp)
    assert labels.levels == ["species", "genus", "group", "family"]
    assert labels.classes == ["Idaea aversata", "Noctua comes", "Noctua pronuba", "Other"]
    assert labels.level_classes[1] == ["Idaea", "Noctua", "Other"]
    t = labels.encode(table(["Rare one", "Unlisted sp", "Noctua comes"]), "v")
    other = [labels.level_index[k]["Other"] for k in range(4)]
    assert t[0].tolist() == other and t[1].tolist() == other
    assert t[2].tolist() == [1, 1, 1, 1]  # Noctua comes, Noctua, macro (after Other), Noctuidae
    again = from_dict(json.loads(json.dumps(labels.to_dict())))
    assert isinstance(again, Hierarchy) and again.encode(table(["Rare one"]), "v").tolist() == [other]
    # heads that disagree (species says Idaea aversata, genus head says Noctua): the joint decoding
    # stays on one path of the hierarchy and the row is flagged inconsistent
    logits = np.zeros((1, labels.n_outputs))
    parts = labels.split(logits)
    parts[0][0, 0] = 5.0
    parts[1][0, 1] = 0.5
    decoded = labels.decode(labels.probabilities(logits))
    assert decoded["pred"][0] == "Idaea aversata" and decoded["pred_genus"][0] == "Idaea"
    assert not decoded["consistent"][0]
    loss = create_criterion("HierarchyCrossEntropy", loss_weights=[1, 0, 0, 0], labels=labels)
    assert float(loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(t[2:3]))) > 0
    with pytest.raises(ConfigError, match="has 2 values but the hierarchy has 4 levels"):
        create_criterion("HierarchyCrossEntropy", loss_weights=[1, 1], labels=labels)
    m = labels.epoch_metrics(logits, t[2:3])
    assert m["accuracy_species"] == 0.0 and m["consistency"] == 0.0
    preds = prediction_table(logits, table(["Noctua comes"]), labels, t[2:3])
    assert preds.loc[0, "truth_genus"] == "Noctua" and preds.loc[0, "pred_family"] == "Geometridae"


def test_hierarchy_file_errors(tmp_path, family):
    lacking = tmp_path / "lacking.csv"
    lacking.write_text(FAMILY.replace('"genus"', '"genera"'))
    with pytest.raises(DataError, match="lacks column 'genus'"):
        read_hierarchy(lacking, "speciesName", {"genus": "genus", "family": "family"})
    two = tmp_path / "two.csv"
    two.write_text(FAMILY + '"Noctua comes";"x";"macro";"Noctuidae";"Agrotis"\n')
    with pytest.raises(DataError, match="'Noctua comes' is in two genus values"):
        read_hierarchy(two, "speciesName", {"genus": "genus", "family": "family"})
    with pytest.raises(ConfigError, match="hierarchy/file' is required"):
        build_task(table(["a"]), {"target": "hierarchy"})


def test_level_metric_must_name_a_level(family):
    labels = build_task(table(["Noctua comes", "Idaea aversata"]),
                        {"target": "hierarchy", "hierarchy": {"file": str(family)}})
    labels.check_metric("accuracy_genus")
    with pytest.raises(ConfigError, match="accuracy_gens names no level"):
        labels.check_metric("accuracy_gens")
