"""``compact``: a small conv net for small images on the CPU (``cnn<blocks>_w<width>``, e.g. cnn4_w32).

Each block is conv3x3-BN-ReLU, then a 2x2 max-pool (not after the last block); the width doubles
per block. It keeps the full input resolution in its first block, where a ResNet stem would
down-sample 4x, and costs what a hand-written CNN of the same width costs; the GPU recipes keep
the seed's backbones. No ImageNet weights exist for it (``pretrained`` takes a PATH of your own).
"""
import re
from typing import Tuple

from torch import nn

from cellpipe.core.errors import ConfigError
from cellpipe.models.pretrained import load_pretrained, resolve_pretrained
from cellpipe.models.registry import MODELS

NAME = re.compile(r"^cnn(\d+)_w(\d+)$")


def block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


@MODELS.register("compact")
def build_compact(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """``cnn<blocks>_w<width>``: blocks 1-8, width 4-512 (the first block's channels)."""
    m = NAME.match(str(model_name))
    if not m or not 1 <= int(m[1]) <= 8 or not 4 <= int(m[2]) <= 512:
        raise ConfigError(f"config key 'model_params/model_name': compact takes cnn<blocks>_w<width> "
                          f"(blocks 1-8, width 4-512, e.g. cnn4_w32), got {model_name!r}")
    n, width = int(m[1]), int(m[2])
    widths = [width * 2 ** k for k in range(n)]
    # 3 input channels, as every family's body: adapt_stem widens the first conv to n_channels
    body = nn.Sequential(*(block(c_in, c_out, k < n - 1) for k, (c_in, c_out) in enumerate(zip([3] + widths, widths))))
    # no published weights: pretrained is a PATH of your own state dict (imagenet fails with that advice)
    load_pretrained(body, resolve_pretrained(pretrained, model_name, None), (), model_name)
    return body, widths[-1]
