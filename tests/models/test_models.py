"""Models: every registered family, the family auto-import, stem adaptation, weight loading."""
import ast
import re
import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import cellpipe  # noqa: F401  (the torchvision shim, before timm)
from cellpipe.core.errors import ConfigError, DataError
from cellpipe.models import MODELS, CellClassifier, adapt_stem, create_model, families, load_checkpoint, model_names
from cellpipe.models.registry import import_families

PACKAGE = Path(families.__file__).parents[1]  # src/cellpipe/models
# One small backbone per registered builder; a new builder needs an entry here.
SMALL = {
    "cell_senet": "se_resnext50_32x4d",
    "cell_densenet": "densenet121",
    "timm": "test_resnet",
    "smp": "resnet18",
    "compact": "cnn3_w8",
}
SIZES = (32, 48)
BATCH = 2
N_CLASSES = 16
CONTROL_CLASSES = 31


@pytest.fixture(scope="module")
def built():
    """Models built once per module (the SE-ResNeXt takes seconds to build)."""
    cache = {}

    def get(model, n_channels):
        key = (model, n_channels)
        if key not in cache:
            cache[key] = create_model(model, SMALL[model], n_channels, N_CLASSES).eval()
        return cache[key]

    return get


@pytest.fixture
def hub_dir(tmp_path):
    """An empty torch hub cache, restored afterwards."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def tiny(n_channels=6, num_classes=N_CLASSES, **kwargs):
    return create_model("timm", "test_resnet", n_channels, num_classes, **kwargs)


def test_registry_lists_builders():
    assert set(SMALL) == set(model_names())


@pytest.mark.parametrize("n_channels", (5, 6))
@pytest.mark.parametrize("model", model_names())
def test_forward_shape_any_size(built, model, n_channels):
    net = built(model, n_channels)
    assert isinstance(net, CellClassifier)
    assert (net.n_channels, net.num_classes, net.model_name) == (n_channels, N_CLASSES, SMALL[model])
    with torch.no_grad():
        for size in SIZES:
            assert net(torch.randn(BATCH, n_channels, size, size)).shape == (BATCH, N_CLASSES)


@pytest.mark.parametrize("n_channels", (5, 6))
def test_adapt_stem_repeats_rgb_kernels(n_channels):
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 1), nn.Conv2d(3, 4, 1))
    rgb = net[0].weight.detach().clone()
    bias = net[0].bias.detach().clone()
    assert adapt_stem(net, n_channels) == "0"
    expected = torch.cat([rgb, rgb], dim=1)[:, :n_channels] * 3 / n_channels
    torch.testing.assert_close(net[0].weight.detach(), expected)
    torch.testing.assert_close(net[0].bias.detach(), bias)
    assert net[0].in_channels == n_channels and net[3].in_channels == 3  # only the first one
    assert net(torch.randn(1, n_channels, 8, 8)).shape == (1, 4, 6, 6)


def test_adapt_stem_needs_rgb_conv():
    with pytest.raises(ConfigError, match="no Conv2d with 3 input channels"):
        adapt_stem(nn.Sequential(nn.Conv2d(4, 8, 3)), 6)


def test_freeze_backbone_freezes_encoder_only():
    net = tiny(dropout=0.1)
    net.freeze_backbone()
    assert not any(p.requires_grad for p in net.backbone_parameters())
    assert all(p.requires_grad for p in net.head_parameters())
    net(torch.randn(BATCH, 6, 32, 32)).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    net.freeze_backbone(False)
    assert all(p.requires_grad for p in net.parameters())
    n_split = len(list(net.backbone_parameters())) + len(list(net.head_parameters()))
    assert n_split == len(list(net.parameters()))


@pytest.mark.parametrize("wrap", ("raw", "model_state_dict", "state_dict+module"))
def test_weight_loads_encoder_and_makes_new_head(tmp_path, wrap):
    part1 = tiny(num_classes=CONTROL_CLASSES)
    state = part1.state_dict()
    if wrap == "model_state_dict":
        state = {"model_state_dict": state, "epoch": 3}
    elif wrap == "state_dict+module":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "part1.pth"
    torch.save(state, path)

    part2 = tiny(num_classes=N_CLASSES, weight=str(path))
    for key, value in part1.encoder.state_dict().items():
        torch.testing.assert_close(part2.encoder.state_dict()[key], value, msg=key)
    assert part2.head.weight.shape == (N_CLASSES, part1.encoder.num_features)
    assert set(load_checkpoint(path)) == set(part1.state_dict())


def test_weight_channel_mismatch(tmp_path):
    path = tmp_path / "six.pth"
    torch.save(tiny(6).state_dict(), path)
    msg = f"checkpoint {path} was trained on 6 channels but model_params.n_channels=5 (data_params.channels)"
    with pytest.raises(DataError, match=re.escape(msg)):
        tiny(5, weight=path)


def test_weight_errors_name_the_file(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        tiny(weight=missing)
    other = tmp_path / "smp.pth"
    torch.save(create_model("smp", "resnet18", 6, N_CLASSES).state_dict(), other)
    with pytest.raises(DataError, match=re.escape(str(other)) + ".*missing keys"):
        tiny(weight=other)
    backbone_only = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), backbone_only)
    with pytest.raises(DataError, match="no 'encoder.*' keys"):
        tiny(weight=backbone_only)


@pytest.mark.parametrize("model", model_names())
def test_imagenet_missing_fails_fast(hub_dir, model, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):  # failing fast means never trying a download
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises((DataError, ConfigError), match="model_params.pretrained=PATH") as err:
        create_model(model, SMALL[model], 6, N_CLASSES, pretrained="imagenet")
    if model == "cell_senet":
        assert str(hub_dir / "checkpoints" / "se_resnext50_32x4d-a260b3a4.pth") in str(err.value)


def test_pretrained_path_loads_rgb_then_adapts_stem(tmp_path):
    imagenet = timm.create_model("test_resnet", num_classes=1000)  # classifier keys are ignored
    path = tmp_path / "rgb.pth"
    torch.save(imagenet.state_dict(), path)

    net = tiny(6, pretrained=str(path))
    rgb = imagenet.state_dict()
    expected = torch.cat([rgb["conv1.0.weight"]] * 2, dim=1) * 3 / 6
    torch.testing.assert_close(net.encoder.body.conv1[0].weight.detach(), expected)
    torch.testing.assert_close(net.encoder.body.state_dict()["layer1.0.conv1.weight"], rgb["layer1.0.conv1.weight"])

    wrong = tmp_path / "wrong.pth"
    torch.save(timm.create_model("resnet18").state_dict(), wrong)
    with pytest.raises(DataError, match=re.escape(str(wrong)) + ".*shape mismatch"):
        tiny(6, pretrained=wrong)


def test_imagenet_found_in_hub_cache(hub_dir):
    """cell_densenet reads torchvision's file (its "norm.1" key style) from the hub cache."""
    rgb = timm.create_model("densenet121", num_classes=1000).state_dict()
    tv_style = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
                for k, v in rgb.items() if not k.endswith("num_batches_tracked")}
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(tv_style, hub_dir / "checkpoints" / "densenet121-a639ec97.pth")

    net = create_model("cell_densenet", "densenet121", 5, N_CLASSES, pretrained="imagenet")
    state = net.encoder.body.state_dict()
    conv0 = rgb["features.conv0.weight"]
    expected = torch.cat([conv0, conv0[:, :2]], dim=1) * 3 / 5
    torch.testing.assert_close(state["features.conv0.weight"], expected)
    key = "features.denseblock1.denselayer1.norm1.weight"
    torch.testing.assert_close(state[key], rgb[key])


def test_create_from_model_params():
    params = {"model": "timm", "model_name": "test_resnet", "n_channels": 5, "num_classes": CONTROL_CLASSES,
              "pretrained": None, "weight": None, "dropout": 0.2}
    net = create_model(**params)
    assert net(torch.randn(BATCH, 5, 32, 32)).shape == (BATCH, CONTROL_CLASSES)


def test_unknown_model_lists_known():
    with pytest.raises(KeyError, match="unknown model 'resnet'.*cell_densenet, cell_senet, compact, smp, timm"):
        create_model("resnet", "resnet18", 6, N_CLASSES)


def test_unknown_backbone_lists_known():
    with pytest.raises(ConfigError, match="se_resnext101_32x4d"):
        create_model("cell_senet", "resnet18", 6, N_CLASSES)


def test_unknown_kwarg_is_named():
    with pytest.raises(ConfigError, match="unknown model_params: colour, size"):
        tiny(size=32, colour="red")


def test_compact_is_the_plain_cnn_of_its_width():
    """cnn<blocks>_w<width>: conv-BN-ReLU blocks doubling the width, full resolution in the first
    block (no stem down-sampling), pooled by the encoder; a bad name fails naming the grammar."""
    net = create_model("compact", "cnn4_w16", 4, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (4, 16, (1, 1)), (16, 32, (1, 1)), (32, 64, (1, 1)), (64, 128, (1, 1))]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 3
    first = dict(net.named_modules())["encoder.body.0"]
    with torch.no_grad():
        assert first(torch.zeros(1, 4, 40, 40)).shape == (1, 16, 20, 20)
        assert net(torch.zeros(2, 4, 40, 40)).shape == (2, 10)
    for bad in ("cnn4", "cnn0_w16", "cnn4_w2", "resnet18"):
        with pytest.raises(ConfigError, match="cnn<blocks>_w<width>"):
            create_model("compact", bad, 3, 2)


def registered_in(path: Path):
    """Names given by ``@MODELS.register(...)`` decorators in ``path`` (docstrings do not count)."""
    for node in ast.walk(ast.parse(path.read_text())):
        for deco in getattr(node, "decorator_list", ()):
            if isinstance(deco, ast.Call) and ast.unparse(deco.func) == "MODELS.register":
                yield deco.args[0].value if deco.args else node.name


def test_registered_names_are_the_family_files():
    """Every ``@MODELS.register`` in the package stands in a family file, one or more per file,
    and exactly those names are registered: a family file that is not imported, a family file
    without a builder, or a builder registered elsewhere fails here."""
    found = {name: path for path in PACKAGE.rglob("*.py") for name in registered_in(path)}
    assert {p.parent for p in found.values()} == {PACKAGE / "families"}
    assert set(found.values()) == set((PACKAGE / "families").glob("[!_]*.py"))
    assert set(found) == set(model_names())
    for name, path in found.items():
        assert MODELS.get(name).__module__ == f"cellpipe.models.families.{path.stem}"


NEW_FAMILY = '''
import timm

from cellpipe.models.registry import MODELS


@MODELS.register("tmp_family")
def build(model_name, pretrained=None):
    body = timm.create_model(model_name, pretrained=False, num_classes=0)
    return body, body.num_features
'''


@pytest.fixture
def extra_families(tmp_path, monkeypatch):
    """A second folder of the families package; registry and module cache restored afterwards."""
    monkeypatch.setattr(families, "__path__", [*families.__path__, str(tmp_path)])
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith(families.__name__ + "."):
            del sys.modules[name]


def test_new_family_file_is_registered_without_other_edits(extra_families):
    (extra_families / "tmp_family.py").write_text(NEW_FAMILY)
    (extra_families / "_helpers.py").write_text("raise AssertionError('_* modules are not families')\n")
    import_families()
    assert set(model_names()) == set(SMALL) | {"tmp_family"}
    net = create_model("tmp_family", "test_resnet", 5, N_CLASSES)
    assert net(torch.randn(BATCH, 5, 32, 32)).shape == (BATCH, N_CLASSES)
    import_families()  # a second import registers nothing twice


def test_models_never_import_upper_layers():
    allowed = {"core", "sources", "data", "models"}  # the layers at or below models (cellpipe/__init__.py)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.startswith("cellpipe."):
                    assert name.split(".")[1] in allowed, f"{path.relative_to(PACKAGE)} imports {name}"
