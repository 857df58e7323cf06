"""``smp``: segmentation_models_pytorch encoders."""
from typing import Tuple

from torch import nn

from cellpipe.models.pretrained import load_pretrained, resolve_pretrained
from cellpipe.models.registry import MODELS
from cellpipe.models.stem import RGB

# ImageNet classifier names across smp encoders' source networks.
_HEADS = ("fc", "classifier", "last_linear", "_fc", "head")


@MODELS.register("smp")
def build_smp(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """Any segmentation_models_pytorch encoder; the deepest map is pooled."""
    from segmentation_models_pytorch.encoders import get_encoder  # heavy import, only when used

    path = resolve_pretrained(pretrained, model_name, None)
    body = get_encoder(model_name, in_channels=RGB, weights=None)
    load_pretrained(body, path, _HEADS, model_name)
    return body, body.out_channels[-1]
