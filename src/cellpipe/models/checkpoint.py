"""Checkpoint files: read a state dict (nested, wrapper prefixes stripped), load it strictly."""
import logging
import pickle
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from cellpipe.core.errors import DataError
from cellpipe.models.head import CellClassifier

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]

# Keys under which training frameworks nest the model's state dict.
_NESTED_STATE_KEYS = ("model_state_dict", "state_dict")
# Prefixes added by DataParallel/DDP and torch.compile wrappers.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Keys listed when a state dict does not fit, enough to see the pattern.
_SHOW_KEYS = 5


def load_checkpoint(path) -> StateDict:
    """Read a state dict from ``path``: raw, or nested under ``model_state_dict``
    or ``state_dict``; ``module.`` (DataParallel) prefixes are removed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint file not found: {path}")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # Our own training checkpoints may hold metrics as numpy scalars.
            logger.warning("%s holds non-tensor objects; loading it with full unpickling", path)
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError) as e:
        raise DataError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    for key in _NESTED_STATE_KEYS:
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise DataError(f"checkpoint {path} holds no state dict of tensors")
    return {_strip_prefixes(k): v for k, v in obj.items()}


def _strip_prefixes(key: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def load_strict(module: nn.Module, state: StateDict, path, what: str) -> None:
    """Load ``state`` into ``module``, all keys and shapes matching, or raise
    a DataError naming the file."""
    own = module.state_dict()
    # Checkpoints older than torch 0.4.1 have no BatchNorm counters; torch fills them.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    resized = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if k in state and state[k].shape != v.shape]
    problems = [f"{label}: {', '.join(keys[:_SHOW_KEYS])}" + (" ..." if len(keys) > _SHOW_KEYS else "")
                for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatch (file vs model)", resized)) if keys]
    if problems:
        raise DataError(f"{path} does not fit {what}; " + "; ".join(problems))
    module.load_state_dict(state, strict=False)


def load_encoder(net: CellClassifier, path) -> None:
    """Load the ``encoder.*`` weights of the checkpoint at ``path`` into ``net``."""
    prefix = "encoder."
    state = {k[len(prefix):]: v for k, v in load_checkpoint(path).items() if k.startswith(prefix)}
    if not state:
        raise DataError(f"checkpoint {path} has no '{prefix}*' keys: not a CellClassifier checkpoint "
                         f"(an ImageNet file goes in model_params.pretrained)")
    stem = state.get(f"{net.stem}.weight")
    if stem is not None and stem.shape[1] != net.n_channels:
        raise DataError(f"checkpoint {path} was trained on {stem.shape[1]} channels but "
                         f"model_params.n_channels={net.n_channels} (data_params.channels)")
    load_strict(net.encoder, state, path, f"the {net.model_name} encoder")
    logger.info("loaded encoder of %s from %s; head is new (%d classes)", net.model_name, path, net.num_classes)
