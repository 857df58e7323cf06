"""Ensemble CLI: submission checks, logit averaging, and main() on a tiny prediction tree."""
import numpy as np
import pandas as pd
import pytest

from cellpipe.core.errors import DataError
from cellpipe.core.layout import channels_tag
from cellpipe.rxrx import ensemble, plates
from conftest import make_wells  # the same synthetic plate layout as tests/rxrx/test_plates.py

N_CLASSES, N_GROUPS = 16, 4
COMBOS = ([1, 2, 3, 4, 5], [1, 2, 3, 4, 6])
MODEL = "tiny_net"


def noisy_logits(rng, truth, signal=2.0):
    logits = rng.normal(0, 1, (len(truth), N_CLASSES)).astype(np.float32)
    logits[np.arange(len(truth)), truth] += signal
    return logits


@pytest.fixture
def tree(tmp_path):
    """data/{train,test}.csv and preds/{combo}/fold_{k}/tiny_net/ with test and valid logits."""
    rng = np.random.default_rng(0)
    groups = np.arange(N_CLASSES) % N_GROUPS
    train = make_wells(rng, groups, 3, "HEPG2")
    train = train.drop(index=[5]).reset_index(drop=True)  # a plate missing a well
    test_full = make_wells(rng, groups, 2, "U2OS")
    test = test_full.drop(columns="sirna")
    data = tmp_path / "data"
    data.mkdir()
    train.to_csv(data / "train.csv", index=False)
    test.to_csv(data / "test.csv", index=False)
    folds = {0: ["HEPG2-01"], 1: ["HEPG2-02", "HEPG2-03"]}
    for combo in COMBOS:
        for k, exps in folds.items():
            d = tmp_path / "preds" / channels_tag(combo) / f"fold_{k}" / MODEL
            d.mkdir(parents=True)
            np.save(d / "pred_test.npy", noisy_logits(rng, test_full["sirna"].to_numpy()))
            valid = train[train["experiment"].isin(exps)].sample(frac=1, random_state=k)  # order differs per run
            np.save(d / "pred_valid.npy", noisy_logits(rng, valid["sirna"].to_numpy()))
            valid[["id_code"]].rename(columns={"id_code": "id"}).to_csv(d / "valid_ids.csv", index=False)
    return {"data": data, "preds": tmp_path / "preds", "out": tmp_path / "out",
            "train": train, "test": test, "test_truth": test_full["sirna"].to_numpy()}


def test_validate_submission_accepts_and_rejects():
    test_df = pd.DataFrame({"id_code": ["a", "b", "c"]})
    good = pd.DataFrame({"id_code": ["c", "a", "b"], "sirna": [0, 3, 15]})
    ensemble.validate_submission(good, test_df, N_CLASSES)
    cases = {
        "duplicated.*'a'": pd.DataFrame({"id_code": ["a", "a", "b", "c"], "sirna": [0, 1, 2, 3]}),
        "lacks 1 test id_code.*'c'": pd.DataFrame({"id_code": ["a", "b"], "sirna": [0, 1]}),
        "not in test.csv.*'z'": pd.DataFrame({"id_code": ["a", "b", "c", "z"], "sirna": [0, 1, 2, 3]}),
        "integers": pd.DataFrame({"id_code": ["a", "b", "c"], "sirna": [0.0, 1.5, 2.0]}),
        "outside 0..15.*'b'": pd.DataFrame({"id_code": ["a", "b", "c"], "sirna": [0, 16, 2]}),
        "outside 0..15.*'c'": pd.DataFrame({"id_code": ["a", "b", "c"], "sirna": [0, 1, -1]}),
    }
    for pattern, sub in cases.items():
        with pytest.raises(DataError, match=pattern):
            ensemble.validate_submission(sub, test_df, N_CLASSES)


def test_average_logits_and_softmax():
    a, b = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    np.testing.assert_allclose(ensemble.average_logits([a, b]), 0.5)
    np.testing.assert_allclose(ensemble.average_logits(iter([a, b]), weights=[3, 1]), 0.25)
    with pytest.raises(DataError, match="shape"):
        ensemble.average_logits([a, np.ones((3, 3))])
    with pytest.raises(DataError, match=">= 0"):
        ensemble.average_logits([a, b], weights=[1, -1])
    p = ensemble.softmax(np.array([[0.0, np.log(3.0)]]), temperature=1.0)
    np.testing.assert_allclose(p, [[0.25, 0.75]], rtol=1e-6)
    flat = ensemble.softmax(np.array([[0.0, np.log(3.0)]]), temperature=1e6)
    np.testing.assert_allclose(flat, [[0.5, 0.5]], rtol=1e-5)


def test_collect_filters(tree):
    runs = ensemble.collect(tree["preds"])
    assert len(runs) == 4
    assert len(ensemble.collect(tree["preds"], channels=[1, 2, 3, 4, 6], folds=0)) == 1
    assert len(ensemble.collect([tree["preds"]], model_names=MODEL, channels=["[1,2,3,4,5]"])) == 2
    with pytest.raises(DataError, match="no pred_test.npy"):
        ensemble.collect(tree["preds"], model_names="other")


def test_main_end_to_end(tree, capsys):
    result = ensemble.main(tree["data"], tree["preds"], tree["out"], temperature=1.0)
    out = tree["out"]
    sub = pd.read_csv(out / "submission.csv")
    ensemble.validate_submission(sub, tree["test"], N_CLASSES)
    assert list(sub["id_code"]) == list(tree["test"]["id_code"])
    assert (sub["sirna"].to_numpy() == tree["test_truth"]).mean() > 0.9
    assigned = pd.read_csv(out / "test_assigned.csv")
    assert list(assigned.columns) == ["id_code", "experiment", "plate", "well", "sirna",
                                      "sirna_argmax", "prob", "group"]
    assert not assigned.duplicated(["experiment", "plate", "sirna"]).any()
    probs = np.load(out / "test_probs.npy")
    assert probs.shape == (len(tree["test"]), N_CLASSES)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    oof = pd.read_csv(out / "oof_accuracy.csv")
    assert list(oof["experiment"]) == ["HEPG2-01", "HEPG2-02", "HEPG2-03", "ALL"]
    assert oof["n_wells"].iloc[-1] == len(tree["train"])
    assert oof["acc_assigned"].iloc[-1] >= oof["acc_argmax"].iloc[-1]
    assert result["oof_acc_assigned"] == pytest.approx(oof["acc_assigned"].iloc[-1])
    assert "ALL" in capsys.readouterr().out
    # argmax mode and model weights run too
    argmax = ensemble.main(tree["data"], tree["preds"], out, assignment=False, weights={MODEL: 2.0})
    assert argmax["changed_by_assignment"] == 0


def test_wrong_row_count_names_file(tree):
    bad = tree["preds"] / "[1,2,3,4,6]" / "fold_1" / MODEL / "pred_test.npy"
    np.save(bad, np.zeros((3, N_CLASSES), np.float32))
    with pytest.raises(DataError, match=r"fold_1.*pred_test\.npy has 3 rows but the table has 32"):
        ensemble.main(tree["data"], tree["preds"], tree["out"])


def test_wrong_width_names_file(tree):
    bad = tree["preds"] / "[1,2,3,4,6]" / "fold_0" / MODEL / "pred_test.npy"
    np.save(bad, np.zeros((len(tree["test"]), N_CLASSES + 1), np.float32))
    with pytest.raises(DataError, match=r"fold_0.*has 17 classes"):
        ensemble.main(tree["data"], tree["preds"], tree["out"])


def test_empty_pred_dir(tree, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no pred_test.npy found.*empty"):
        ensemble.main(tree["data"], empty, tree["out"])
    with pytest.raises(DataError, match="not found.*missing"):
        ensemble.main(tree["data"], tmp_path / "missing", tree["out"])


def test_failed_validation_keeps_old_submission(tree, monkeypatch):
    out = tree["out"]
    out.mkdir()
    (out / "submission.csv").write_text("id_code,sirna\nold,1\n")
    monkeypatch.setattr(plates, "assign", lambda probs, *a, **k: np.full(len(probs), N_CLASSES))
    with pytest.raises(DataError, match="outside 0..15"):
        ensemble.main(tree["data"], tree["preds"], out)
    assert (out / "submission.csv").read_text() == "id_code,sirna\nold,1\n"
    assert sorted(p.name for p in out.iterdir()) == ["submission.csv"]
