"""Stem adaptation: the first RGB conv widened to n channels; a finer stem for small images."""
import copy
from typing import Optional

from torch import nn

from cellpipe.core.errors import ConfigError

RGB = 3  # every builder returns an ImageNet (3-channel) body


def adapt_stem(module: nn.Module, n_channels: int) -> str:
    """Make the first 3-channel conv of ``module`` take ``n_channels`` inputs.

    The RGB kernels are repeated over the new channels and scaled by 3/n
    (timm's ``adapt_input_conv``), so activations keep their ImageNet scale.
    Returns the conv's qualified name inside ``module``.
    """
    for name, conv in module.named_modules():  # noqa: B007 - the first match is used after the loop
        if isinstance(conv, nn.Conv2d) and conv.in_channels == RGB:
            break
    else:
        raise ConfigError(f"{type(module).__name__} has no Conv2d with {RGB} input channels")
    if n_channels == RGB:
        return name
    from timm.models._manipulate import adapt_input_conv  # lazy: importing timm costs ~1.7 s
    # A copy keeps the conv's class (timm's same-padding convs) and settings.
    new = copy.deepcopy(conv)
    new.in_channels = n_channels
    new.weight = nn.Parameter(adapt_input_conv(n_channels, conv.weight.detach().clone()))
    parent_name, _, attr = name.rpartition(".")
    setattr(module.get_submodule(parent_name), attr, new)
    return name


def keep_resolution(body: nn.Module, stem: str, stem_stride: Optional[int], stem_pool: bool) -> None:
    """Small inputs (CPU-sized 32-128 px): a stem conv with a smaller stride and / or no max-pool
    after it keeps the early feature maps large (CIFAR-style stems); the weights are unchanged."""
    if stem_stride is not None:
        if not isinstance(stem_stride, int) or isinstance(stem_stride, bool) or stem_stride < 1:
            raise ConfigError(f"config key 'model_params/stem_stride' must be a positive integer, got {stem_stride!r}")
        conv = body.get_submodule(stem)
        conv.stride = (stem_stride, stem_stride)
    if not stem_pool:
        for name, module in body.named_modules():
            if isinstance(module, nn.MaxPool2d):
                parent, _, attr = name.rpartition(".")
                setattr(body.get_submodule(parent) if parent else body, attr, nn.Identity())
                return
        raise ConfigError("config key 'model_params/stem_pool'=false: the backbone has no MaxPool2d to remove")
