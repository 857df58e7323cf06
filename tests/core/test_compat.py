"""The torchvision shim: models import on a CPU torch with the CUDA torchvision wheel."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from cellpipe.core import compat

SRC = Path(__file__).resolve().parents[2] / "src"


def _has_cpu_kernel(op: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")


def test_timm_model_with_five_channels_runs():
    import timm
    import torchvision  # noqa: F401

    model = timm.create_model("test_resnet", pretrained=False, in_chans=5, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 5, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_patch_is_idempotent():
    import torchvision  # noqa: F401  (the import hook has patched torch by now, when it had to)

    library = compat._LIBRARY
    first = compat.patch_torchvision()
    second = compat.patch_torchvision()
    assert first == second
    assert compat._LIBRARY is library  # no second registration of the schemas
    assert first == (library is not None)


def test_loadable_matches_real_kernel():
    import torchvision  # noqa: F401

    loadable = compat.torchvision_ops_loadable()
    assert isinstance(loadable, bool)
    # nms exists either way (real library or our declared schema) ...
    assert hasattr(torch.ops.torchvision, "nms")
    assert hasattr(torch.ops.torchvision, "qnms")
    # ... but it has a CPU kernel only when the compiled library loaded
    assert _has_cpu_kernel("torchvision::nms") == loadable
    # the shim is active exactly when the library is not loadable
    assert (compat._LIBRARY is not None) == (not loadable)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=SRC, capture_output=True, text=True, timeout=120)


def test_subprocess_import_with_and_without_shim():
    if compat.torchvision_ops_loadable():
        # torchvision works on its own here: then importing it bare must succeed too
        assert _run("import torchvision").returncode == 0
    else:
        bare = _run("import torchvision")
        assert bare.returncode != 0
        assert "torchvision::nms" in bare.stderr
    shimmed = _run("import cellpipe, torchvision; print(torchvision.__version__)")
    assert shimmed.returncode == 0, shimmed.stderr
    assert shimmed.stdout.strip()


def test_importing_the_package_loads_no_torch():
    """The shim waits for torchvision: commands that never build a model start without torch."""
    light = _run("import sys, cellpipe, cellpipe.engine.grid, cellpipe.core.config; print('torch' in sys.modules)")
    assert light.returncode == 0 and light.stdout.strip() == "False", light.stderr


def test_catalysts_integration_probes_are_skipped_and_the_modules_still_import():
    """catalyst.settings would import mlflow, onnx, optuna, scikit-learn... just to see they exist."""
    probe = "import sys, cellpipe, catalyst; print(sorted(m for m in ('mlflow', 'onnx', 'sklearn') if m in sys.modules))"
    quiet = _run(probe + "; import onnx; print('later imports work')")
    assert quiet.returncode == 0 and quiet.stdout.split("\n")[:2] == ["[]", "later imports work"], quiet.stderr
    loud = subprocess.run([sys.executable, "-c", probe], cwd=SRC, capture_output=True, text=True,
                          env={**os.environ, "CELLPIPE_CATALYST_PROBES": "1"})
    assert loud.returncode == 0 and loud.stdout.strip() == "['mlflow', 'onnx', 'sklearn']", loud.stderr
