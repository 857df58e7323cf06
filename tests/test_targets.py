"""Target kinds (multi-label, hierarchy): label maps, losses, metrics, thresholds, TTA crops, folds, dedup."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from cellpipe.core.config import merge
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.data.dedup import drop_copies, duplicate_groups, duplicate_pairs, phash
from cellpipe.data.folds import make_folds, merge_groups
from cellpipe.data.tta import tta_views
from cellpipe.tasks import build_task, from_dict, task_class
from cellpipe.tasks.hierarchy import Hierarchy, read_hierarchy
from cellpipe.tasks.multilabel import MultiLabel, fit_thresholds, multi_hot
from cellpipe.training.evaluate import prediction_table
from cellpipe.training.losses import check_criterion, create_criterion

FAMILY = '''"speciesName";"nederNaam";"group";"family";"genus"
"Noctua pronuba";"huismoeder";"macro";"Noctuidae";"Noctua"
"Noctua comes";"volgeling";"macro";"Noctuidae";"Noctua"
"Idaea aversata";"grijze";"micro";"Geometridae";"Idaea"
'''


def table(labels, ids=None):
    return pd.DataFrame({"id": ids or [f"s{i}" for i in range(len(labels))], "label": labels})


# ---------------------------------------------------------------- multi-label

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


def test_other_criterion_replaces_its_settings_whole():
    base = {"criterion_params": {"criterion": "LabelSmoothingCrossEntropy", "smoothing": 0.1}}
    out = merge(base, {"criterion_params": {"criterion": "FocalLoss", "gamma": 2.0}})
    assert out["criterion_params"] == {"criterion": "FocalLoss", "gamma": 2.0}
    with pytest.raises(ConfigError, match="unknown config key 'criterion_params/gamma'"):
        merge(base, {"criterion_params": {"gamma": 2.0}})


def test_multilabel_metrics():
    labels = MultiLabel(["a", "b", "c"])
    y = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1]])
    perfect = np.where(y == 1, 5.0, -5.0)
    m = labels.epoch_metrics(perfect, y)
    assert m["macro_f1"] == 1.0 and m["micro_f1"] == 1.0 and m["bce"] < 0.01
    assert labels.epoch_metrics(-perfect, y)["macro_f1"] < 0.5


# ---------------------------------------------------------------- hierarchy

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


# ---------------------------------------------------------------- TTA, folds, dedup

def test_five_crop_views():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    views = tta_views("five_crop", crop=0.5)
    crops = [v(x) for v in views]
    assert len(crops) == 5 and all(c.shape[-2:] == (4, 4) for c in crops)
    assert crops[0][0, 0, 0, 0] == 0 and crops[3][0, 0, -1, -1] == 63 and crops[4][0, 0, 0, 0] == 18
    assert len(tta_views("five_crop_flip", crop=6)) == 10 and tta_views("five_crop", crop=6)[0](x).shape[-1] == 6
    with pytest.raises(DataError, match="gives 16 px for 8 px"):
        tta_views("five_crop", crop=16)[0](x)


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


def test_phash_finds_near_duplicates_and_groups_them():
    rng = np.random.default_rng(0)
    imgs = [rng.uniform(0, 255, (32, 32, 3)) for _ in range(4)]
    imgs.append(np.clip(imgs[1] + rng.normal(0, 2, imgs[1].shape), 0, 255))  # a re-scan of image 1
    hashes = np.array([phash(i) for i in imgs], dtype=np.uint64)
    assert (1, 4) in [(i, j) for i, j, _ in duplicate_pairs(hashes, 6)]
    dups = duplicate_groups([f"s{i}" for i in range(5)], hashes, 6)
    assert dups.loc[4, "dup_group"] == "s1" and dups["group_size"].tolist() == [1, 2, 1, 1, 2]
    tab = pd.DataFrame({"id": [f"s{i}" for i in range(5)], "group": list("abcde")})
    assert drop_copies(tab, dups)["id"].tolist() == ["s0", "s1", "s2", "s3"]
    merged = merge_groups(tab, dups)
    assert merged[1] == merged[4] and merged[0] != merged[1]


# ---------------------------------------------------------------- bad input through the real command

@pytest.mark.parametrize("edit,match", [
    (lambda df: df.assign(Target=df["Target"].where(df.index != 3, "0 31")), "Target id '31' of Id tr00003 is outside"),
    (lambda df: df.assign(Target=df["Target"].where(df.index != 2, "")), "Target of Id tr00002 is empty"),
])
def test_hpa_bad_target_is_one_line(tmp_path, edit, match):
    import train
    from cellpipe.demo.hpa import write_hpa

    root = write_hpa(tmp_path / "hpa", n_train=12, n_test=4, size=16, duplicates=0)
    csv = root / "train.csv"
    before = csv.read_text()
    edit(pd.read_csv(csv, dtype=str, keep_default_na=False)).to_csv(csv, index=False)
    changed = csv.read_text()
    with pytest.raises(SystemExit) as e:
        train.main(["--config", "configs/classify.yml", "--overlay", "configs/data/hpa.yml", "--overlay",
                    "configs/tiny.yml", "--logdir", str(tmp_path / "run"), f"--data_params/root={root}",
                    "--data_params/source_params={classes: 8}"])
    message = str(e.value.code)  # SystemExit's message: what the interpreter prints on exit
    assert len(message.splitlines()) == 1 and match in message and "train.csv" in message, message
    assert csv.read_text() == changed != before and not (tmp_path / "run" / "DONE.json").exists()


def test_level_metric_must_name_a_level(family):
    labels = build_task(table(["Noctua comes", "Idaea aversata"]),
                        {"target": "hierarchy", "hierarchy": {"file": str(family)}})
    labels.check_metric("accuracy_genus")
    with pytest.raises(ConfigError, match="accuracy_gens names no level"):
        labels.check_metric("accuracy_gens")


# ---------------------------------------------------------------- winners' tricks (issue 8)

@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixing_mixes_inputs_and_losses(mode):
    from cellpipe.training.mixing import MixedLoss, Mixer, check_mix

    x = torch.stack([torch.full((2, 8, 8), float(i)) for i in range(4)])
    y = torch.tensor([0, 1, 2, 3])
    mixed, t = Mixer(mode, alpha=1.0, p=1.0, seed=0).mix(x, y)
    a, b, lam = t
    assert torch.equal(a, y) and sorted(b.tolist()) == [0, 1, 2, 3] and 0 < lam < 1
    if mode == "mixup":
        assert torch.allclose(mixed, lam * x + (1 - lam) * x[[y.tolist().index(v) for v in b.tolist()]])
    else:  # the pasted box's share of pixels is 1 - lam, exactly
        changed = (mixed != x).float().mean(dim=(1, 2, 3))
        moved = b != a
        assert torch.allclose(changed[moved], torch.full_like(changed[moved], 1 - lam))
    ce = torch.nn.CrossEntropyLoss()
    logits = torch.randn(4, 4)
    assert torch.isclose(MixedLoss(ce)(logits, t), lam * ce(logits, a) + (1 - lam) * ce(logits, b))
    assert torch.isclose(MixedLoss(ce)(logits, y), ce(logits, y))
    assert Mixer(mode, p=1e-9).mix(x, y)[1] is y  # p: unmixed batches pass through
    with pytest.raises(ConfigError, match="mix_params/mode"):
        check_mix({"mode": "mixcut"})


def test_small_image_stem_keeps_resolution():
    from cellpipe.models import create_model

    def layer1_side(**kw):
        m = create_model(model="timm", model_name="resnet18", n_channels=6, num_classes=5, **kw)
        side = []
        m.encoder.body.layer1.register_forward_hook(lambda mod, i, o: side.append(o.shape[-1]))
        m(torch.zeros(1, 6, 64, 64))
        return side[0]

    assert (layer1_side(), layer1_side(stem_stride=1), layer1_side(stem_stride=1, stem_pool=False)) == (16, 32, 64)
    with pytest.raises(ConfigError, match="stem_stride' must be a positive integer"):
        layer1_side(stem_stride=0)


def test_ema_callback_validates_the_average_and_trains_the_raw_weights():
    from types import SimpleNamespace

    from cellpipe.training.callbacks import EMACallback

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    runner = SimpleNamespace(model=model, is_train_loader=True, engine=SimpleNamespace(unwrap_model=lambda m: m))
    ema = EMACallback(decay=0.9)
    ema.on_experiment_start(runner)
    for _ in range(2):  # two "optimizer steps" to weight 1.0
        with torch.no_grad():
            model.weight.fill_(1.0)
        ema.on_batch_end(runner)
    expected = 1 - 0.9 ** 2  # 0.1, then 0.9 * 0.1 + 0.1
    runner.is_train_loader = False
    ema.on_loader_start(runner)  # validation sees the average
    assert torch.allclose(model.weight, torch.full((1, 2), expected))
    ema.on_batch_end(runner)  # not a training batch: no update
    runner.is_train_loader = True
    ema.on_epoch_start(runner)  # training goes on from the raw weights
    assert torch.allclose(model.weight, torch.ones(1, 2))


def test_group_batches_come_from_one_plate_each():
    from cellpipe.data.sampling import GroupBatchSampler

    groups = np.repeat([0, 1, 2], [5, 3, 1])
    sampler = GroupBatchSampler(groups, batch_size=2, seed=0, drop_last=True)
    batches = list(sampler)
    assert all(len(set(groups[b])) == 1 for b in batches)  # one plate per batch
    # batches of one (BatchNorm cannot use them) are dropped: plate 0 gives 2 + 2, plate 1 gives 2
    assert sorted(len(b) for b in batches) == [2, 2, 2] and len(sampler) == 3
    assert len(list(GroupBatchSampler(groups, batch_size=2, seed=0))) == 6  # kept without drop_last


def test_adabn_uses_each_groups_own_statistics():
    from types import SimpleNamespace

    from cellpipe.inference.adabn import adabn_logits
    from cellpipe.training.evaluate import predict_logits

    class Plates(torch.utils.data.Dataset):
        """Two plates whose images differ only by a constant offset (a batch effect)."""
        table = pd.DataFrame({"id": [f"s{i}" for i in range(8)], "experiment": "E", "plate": [1] * 4 + [2] * 4})
        source = SimpleNamespace(name="fake", levels={"plate": ["experiment", "plate"]})

        def __len__(self):
            return 8

        def __getitem__(self, i):
            x = torch.arange(4.0).view(1, 1, 2, 2) + (0 if i < 4 else 100) + i % 4
            return {"features": x, "targets": 0, "index": i}

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model.num_classes = 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = predict_logits(model, Plates(), batch_size=4)
    adapted = adabn_logits(model, Plates(), "plate", predict_logits, batch_size=4)
    # after per-plate statistics the offset is gone: both plates give the same logits
    assert np.allclose(adapted[:4], adapted[4:], atol=1e-4) and not np.allclose(plain[:4], plain[4:])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is left as it came


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


def test_arcface_model_trains(tmp_path, capsys):
    import train
    from cellpipe.demo.generic import write_manifest

    root = write_manifest(tmp_path / "m", per_class=6).parent
    args = ["--config", "configs/classify.yml", "--overlay", "configs/data/manifest.yml", "--overlay", "configs/tiny.yml",
            "--logdir", str(tmp_path / "run"), f"--data_params/root={root}", "--stages/finetune/num_epochs=1"]
    assert train.main(args + ["--model_params/arcface=true"]) == 2  # centres without their loss
    assert "ArcFaceCombined and model_params/arcface=true go together" in capsys.readouterr().err
    assert train.main(args + ["--model_params/arcface=true", "--criterion_params/criterion=ArcFaceCombined"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.pth", weights_only=False)
    assert state["model_state_dict"]["arc"].shape[0] == 4 and state["model_params"]["arcface"] is True


def test_controls_as_extra_classes_and_the_ensemble_drops_them(tmp_path):
    import make_demo_data
    import make_folds
    from cellpipe.rxrx.ensemble import main as rxrx_ensemble
    from cellpipe.sources import make_source

    data = tmp_path / "d"
    make_demo_data.main(out_dir=str(data), image_size=16, n_sirnas=8, n_controls=2, cell_types=1,
                        train_experiments_per_type=3, test_experiments_per_type=1, pixel_stats=False)
    make_folds.main(str(data), out_dir=str(tmp_path / "csv"), n_folds=3)
    dp = {"source": "rxrx1", "root": str(data), "source_params": {"control_offset": 8},
          "train_csv": str(tmp_path / "csv" / "train_0.csv"), "valid_csv": str(tmp_path / "csv" / "valid_0.csv")}
    plain = make_source(dp).split("train")
    extra = make_source({**dp, "source_params": {"control_offset": 8, "controls_as_classes": True}}).split("train")
    controls = extra.iloc[len(plain):]
    assert set(controls["label"]) == {"8", "9"} and set(controls["dataset"]) == {"train", "test"}
    assert make_source({**dp, "source_params": {"control_offset": 8, "controls_as_classes": True}}).split("valid")["label"].astype(int).max() < 8
    # predictions with 10 columns (8 treatments + 2 controls): the assignment uses the first 8
    test = pd.read_csv(data / "test.csv")
    truth = pd.read_csv(data / "test_labels.csv").set_index("id_code").loc[test["id_code"], "sirna"].to_numpy()
    logits = np.full((len(test), 10), -5.0, np.float32)
    logits[np.arange(len(test)), truth] = 5.0
    logits[:, 9] = 50.0  # a control column that would win every argmax
    run = tmp_path / "pred" / "[1,2,3,4,5,6]" / "fold_0" / "m"
    run.mkdir(parents=True)
    np.save(run / "pred_test.npy", logits)
    out = rxrx_ensemble(str(data), str(tmp_path / "pred"), str(tmp_path / "ens"))
    sub = pd.read_csv(tmp_path / "ens" / "submission.csv")
    assert out["n_classes"] == 8 and (sub["sirna"].to_numpy() == truth).all()


def test_context_embedding_changes_the_logits_and_is_required():
    from cellpipe.models import create_model

    torch.manual_seed(0)
    net = create_model("timm", "test_resnet", n_channels=2, num_classes=3, context_column="cell_type",
                       context_values=["HEPG2", "HUVEC"])
    with torch.no_grad():
        net.context.weight[1] += 5.0  # a trained model: the two cell types differ
    net.eval()
    x = torch.randn(2, 2, 16, 16)
    same = net(x, torch.tensor([0, 0]))
    assert not torch.allclose(same, net(x, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="context"):
        net(x)
    with pytest.raises(ConfigError, match="context_values"):
        create_model("timm", "test_resnet", n_channels=2, num_classes=3, context_column="cell_type",
                     context_values="auto")


def test_cell_type_context_trains_and_predicts(tmp_path, demo_root, trained_runs, capsys):
    import train
    from cellpipe.inference.predict import predict_run
    from conftest import tiny_train_args

    run = tmp_path / "ctx" / "[1,2,3,4,5]" / "fold_0" / "m"
    args = tiny_train_args(demo_root, trained_runs["csv_dir"], 0, run)
    with pytest.raises(SystemExit) as exit_info:
        train.main(args + ["--model_params/context_column=nope"])
    assert "'model_params/context_column'='nope'" in str(exit_info.value.code)
    assert train.main(args + ["--model_params/context_column=cell_type", "--model_params/arcface=true",
                              "--criterion_params/criterion=ArcFaceCombined"]) == 0
    state = torch.load(run / "checkpoints" / "best.pth", weights_only=False)
    assert state["model_params"]["context_values"] == ["HEPG2", "HUVEC"]
    assert state["model_state_dict"]["context.weight"].shape[0] == 2
    dest = predict_run(run, demo_root, tmp_path / "pred", adabn="plate")
    logits = np.load(dest / "pred_test.npy")
    assert logits.shape == (len(pd.read_csv(demo_root / "test.csv")), 16) and np.isfinite(logits).all()
