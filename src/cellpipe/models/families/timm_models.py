"""``timm``: any ``timm.create_model`` name (the file is not timm.py, so as not to read as the package)."""
from typing import Tuple

from torch import nn

from cellpipe.core.errors import ConfigError
from cellpipe.models.pretrained import load_pretrained, resolve_pretrained
from cellpipe.models.registry import MODELS


@MODELS.register("timm")
def build_timm(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """Any ``timm.create_model`` name, pooled by timm (``num_classes=0``)."""
    import timm  # heavy (torchvision, dynamo: ~1.7 s): only when a timm model is built

    if not timm.is_model(model_name):
        raise ConfigError(f"config key 'model_params/model_name': timm has no model '{model_name}' (see timm.list_models())")
    path = resolve_pretrained(pretrained, model_name, None)
    body = timm.create_model(model_name, pretrained=False, num_classes=0)
    heads = body.pretrained_cfg.get("classifier") or ()
    load_pretrained(body, path, (heads,) if isinstance(heads, str) else heads, model_name)
    return body, body.num_features
