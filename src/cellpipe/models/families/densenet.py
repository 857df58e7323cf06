"""``cell_densenet``: timm DenseNets with torchvision's ImageNet files."""
from typing import Tuple

from torch import nn

from cellpipe.core.errors import ConfigError
from cellpipe.models.pretrained import load_pretrained, resolve_pretrained
from cellpipe.models.registry import MODELS

_DENSENETS = ("densenet121", "densenet161", "densenet169", "densenet201")


@MODELS.register("cell_densenet")
def build_densenet(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """timm DenseNet; "imagenet" reads torchvision's file from the torch hub cache."""
    import timm  # heavy (torchvision, dynamo): only when this family is built
    import torchvision.models  # only for the weight URLs
    from timm.models.densenet import _filter_torchvision_pretrained

    if model_name not in _DENSENETS:
        raise ConfigError(f"config key 'model_params/model_name': cell_densenet has no '{model_name}'; known: {', '.join(_DENSENETS)}")
    url = torchvision.models.get_weight(f"{model_name.replace('densenet', 'DenseNet')}_Weights.IMAGENET1K_V1").url
    path = resolve_pretrained(pretrained, model_name, url)
    body = timm.create_model(model_name, pretrained=False, num_classes=0)
    # torchvision names keys "norm.1"; timm "norm1". The remap accepts both.
    load_pretrained(body, path, ("classifier",), model_name, remap=_filter_torchvision_pretrained)
    return body, body.num_features
