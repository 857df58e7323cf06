"""``cell_senet``: pretrainedmodels SE-ResNet / SE-ResNeXt / SENet154."""
from collections import OrderedDict
from typing import Tuple

from torch import nn

from cellpipe.core.errors import ConfigError
from cellpipe.models.pretrained import load_pretrained, resolve_pretrained
from cellpipe.models.registry import MODELS

_STAGES = ("layer0", "layer1", "layer2", "layer3", "layer4")


@MODELS.register("cell_senet")
def build_senet(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """pretrainedmodels SE-ResNet/SE-ResNeXt/SENet154, up to layer4."""
    from pretrainedmodels.models import senet  # heavy import, only when used

    if model_name not in senet.pretrained_settings:
        raise ConfigError(f"config key 'model_params/model_name': cell_senet has no '{model_name}'; known: {', '.join(senet.pretrained_settings)}")
    path = resolve_pretrained(pretrained, model_name, senet.pretrained_settings[model_name]["imagenet"]["url"])
    net = getattr(senet, model_name)(pretrained=None)
    # Keep the conv stages only: its fixed 7x7 AvgPool would tie it to 224 px inputs.
    body = nn.Sequential(OrderedDict((stage, getattr(net, stage)) for stage in _STAGES))
    load_pretrained(body, path, ("last_linear",), model_name)
    return body, net.last_linear.in_features
