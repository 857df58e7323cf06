"""ImageNet weights for a builder's 3-channel body, from local files only (never a download)."""
import logging
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.models.checkpoint import StateDict, load_checkpoint, load_strict
from cellpipe.models.stem import RGB

logger = logging.getLogger(__name__)


def _hub_checkpoint(url: str) -> Path:
    """Where torch.hub keeps a downloaded file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def resolve_pretrained(pretrained, model_name: str, url: Optional[str]) -> Optional[Path]:
    """Turn ``model_params.pretrained`` into a local file, or None for random init.

    Raises DataError at once if the file is absent: no download is tried. ``url`` is the
    family's known ImageNet file (its name in the torch hub cache), None where there is none.
    """
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True or pretrained == "imagenet":
        if url is None:
            raise ConfigError(
                f"no known ImageNet file for {model_name}: save its ImageNet state dict "
                f"and set model_params.pretrained=PATH")
        path = _hub_checkpoint(url)
        if not path.is_file():
            raise DataError(
                f"ImageNet weights for {model_name} not found: put {path.name} (from {url}) "
                f"at {path}, or set model_params.pretrained=PATH")
        return path
    path = Path(pretrained)
    if not path.is_file():
        raise DataError(f"model_params.pretrained file not found: {path}")
    return path


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def load_pretrained(body: nn.Module, path: Optional[Path], heads: Iterable[str], model_name: str,
                    remap: Callable[[StateDict], StateDict] = None) -> None:
    """Load ImageNet weights from ``path`` into the 3-channel ``body``,
    ignoring the classifier keys ``heads``."""
    if path is None:
        return
    state = {k: v for k, v in load_checkpoint(path).items() if not _under(k, heads)}
    if remap is not None:
        state = remap(state)
    load_strict(body, state, path, f"the {RGB}-channel {model_name} backbone")
    logger.info("loaded ImageNet weights for %s from %s", model_name, path)
