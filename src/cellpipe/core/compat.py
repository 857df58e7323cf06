"""Environment fixes that must run before torchvision (and so timm, smp,
pretrainedmodels) is imported. ``install()`` (run when ``cellpipe`` is imported) arms them
without importing torch: the patch runs when something first imports torchvision, so the
commands that never touch a model (grid.py, folds, tables) start without torch. Idempotent.

Why: PyPI's torchvision 0.28 wheel is a CUDA build. On a CPU-only torch its
``_C.so`` cannot load, and ``import torchvision`` then dies registering fake
kernels for ``torchvision::nms``/``qnms``, whose schemas live in ``_C.so``.
Declaring the two schemas ourselves lets models and transforms import; the
ops themselves (torchvision.ops, torchvision.io) stay unusable, and nothing
here needs them (images are read with OpenCV).
"""
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

# No hub is reachable: fail at once instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY = None  # keeps the torch.library registration alive


def torchvision_ops_loadable() -> bool:
    """True when torchvision's compiled ops library loads on this torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    lib = Path(spec.origin).parent / "_C.so"
    if not lib.exists():
        return False
    try:
        torch.ops.load_library(str(lib))
    except (OSError, RuntimeError):
        return False
    return True


def patch_torchvision() -> bool:
    """Declare the missing op schemas when needed. Returns True if patched."""
    global _LIBRARY
    import torch

    if _LIBRARY is not None or "torchvision" in sys.modules:
        return _LIBRARY is not None
    if torchvision_ops_loadable():
        return False
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _LIBRARY.define(schema)
    return True


class _PatchFirst(importlib.abc.MetaPathFinder):
    """Runs patch_torchvision() just before the first ``import torchvision``, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            patch_torchvision()
        return None  # the usual finders load the module


# Catalyst 22.4's settings module imports every optional integration at import time to see whether
# it is installed (mlflow, onnx, optuna, scikit-learn, ...: ~3 s of each train.py / inference.py
# start-up here, since the project installs several of them for its own code). The project uses
# none of Catalyst's integrations, so while catalyst.settings runs, those probes are told the
# module is absent (modules already imported are found as usual). CELLPIPE_CATALYST_PROBES=1 keeps them.
_CATALYST_PROBES = {"mlflow", "onnx", "onnxruntime", "optuna", "sklearn", "wandb", "comet_ml", "neptune", "imageio",
                    "skimage", "apex", "fairscale", "deepspeed", "torch_xla", "scipy", "matplotlib"}


class _QuietCatalystProbes(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.active = False

    def find_spec(self, name, path=None, target=None):
        if self.active and name.split(".")[0] in _CATALYST_PROBES:
            raise ModuleNotFoundError(f"{name} (hidden from catalyst.settings' probes)", name=name)
        if name != "catalyst.settings" or self.active:
            return None
        sys.meta_path.remove(self)  # once: find the real module, then run it with the probes hidden
        spec = importlib.util.find_spec(name)
        real, finder = spec.loader, self

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return real.create_module(spec)

            def exec_module(self, module):
                finder.active = True
                sys.meta_path.insert(0, finder)
                try:
                    real.exec_module(module)
                finally:
                    sys.meta_path.remove(finder)
                    finder.active = False

        spec.loader = Loader()
        return spec


def install() -> None:
    if "torchvision" in sys.modules:
        patch_torchvision()
    elif not any(isinstance(f, _PatchFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchFirst())
    if ("catalyst.settings" not in sys.modules and os.environ.get("CELLPIPE_CATALYST_PROBES") != "1"
            and not any(isinstance(f, _QuietCatalystProbes) for f in sys.meta_path)):
        sys.meta_path.insert(0, _QuietCatalystProbes())
