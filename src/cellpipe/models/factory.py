"""Cell classifiers: an ImageNet backbone with an n-channel stem and a linear head.

``create_model(**cfg["model_params"])`` builds every model. A builder registered
in ``MODELS`` makes the 3-channel backbone and loads its ImageNet weights; then
``adapt_stem`` widens the first conv to ``n_channels`` and an earlier stage's
checkpoint (``weight``) may replace the encoder. No network access is ever
attempted: weights come from local files only.
"""
import copy
import inspect
import logging
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import timm
import torch
from timm.models._manipulate import adapt_input_conv
from torch import nn

from cellpipe.core.errors import ConfigError, DataError
from cellpipe.core.registry import Registry

logger = logging.getLogger(__name__)

MODELS = Registry("model")

StateDict = Dict[str, torch.Tensor]

# Keys under which training frameworks nest the model's state dict.
_NESTED_STATE_KEYS = ("model_state_dict", "state_dict")
# Prefixes added by DataParallel/DDP and torch.compile wrappers.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# ImageNet classifier names across smp encoders' source networks.
_SMP_HEADS = ("fc", "classifier", "last_linear", "_fc", "head")
_SENET_STAGES = ("layer0", "layer1", "layer2", "layer3", "layer4")
_DENSENETS = ("densenet121", "densenet161", "densenet169", "densenet201")
_RGB = 3
# Keys listed when a state dict does not fit, enough to see the pattern.
_SHOW_KEYS = 5


# ----------------------------------------------------------------- the model


class Encoder(nn.Module):
    """Backbone body plus global average pooling: image -> B x num_features.

    The pool is adaptive, so any input size works.
    """

    def __init__(self, body: nn.Module, num_features: int):
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x)
        if isinstance(f, (list, tuple)):  # smp encoders return every stage
            f = f[-1]
        if f.ndim == 4:  # feature map; timm bodies already return pooled vectors
            f = self.pool(f)
        return f.flatten(1)


class CellClassifier(nn.Module):
    """``encoder`` (image -> features) followed by ``head`` (features -> logits)."""

    def __init__(self, encoder: Encoder, num_classes: int, model_name: str,
                 n_channels: int, dropout: float = 0.0, stem: str = "", arcface: bool = False,
                 context_values: Optional[Sequence[str]] = None):
        super().__init__()
        self.encoder = encoder
        # a categorical input beside the image (the 1st RxRx1 place gave the cell type): one learned
        # vector per value, added to the image features before both heads
        self.context_values = list(context_values or [])
        self.context = nn.Embedding(len(self.context_values), encoder.num_features) if self.context_values else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(encoder.num_features, num_classes)
        # ArcFace: class centres on the unit sphere; ``cosines`` gives the training loss its input
        self.arc = nn.Parameter(torch.randn(num_classes, encoder.num_features) * 0.01) if arcface else None
        self.model_name = model_name
        self.n_channels = n_channels
        self.num_classes = num_classes
        self.stem = stem  # name of the n-channel conv inside ``encoder``
        self.channels_last = False  # engine_params/channels_last: NHWC inputs (tensor cores); not saved

    def to_channels_last(self) -> "CellClassifier":
        """Weights and inputs in NHWC memory layout (faster convolutions under AMP on recent GPUs)."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        f = self.encoder(x)
        if self.context is not None:
            if context is None:
                raise ValueError("this model takes a context input (model_params/context_column) and got none")
            f = f + self.context(context.to(f.device))
        return f

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, with_cosines: bool = False):
        """Logits; with ``with_cosines`` (ArcFace training) also the cosine of the features to every
        class centre, from one encoder pass. A flag rather than a second method, so that the call
        goes through (Distributed)DataParallel wrappers."""
        f = self.features(x, context)
        logits = self.head(self.dropout(f))
        if not with_cosines:
            return logits
        return logits, nn.functional.linear(nn.functional.normalize(f), nn.functional.normalize(self.arc))

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) gradients into the encoder; the head stays trainable."""
        for p in self.encoder.parameters():
            p.requires_grad = not frozen

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()


# ------------------------------------------------------------ stem adaptation


def flatten_sites(x: torch.Tensor, context: Optional[torch.Tensor] = None):
    """(B, S, C, H, W) -> (B*S, C, H, W), the context repeated per site; 4-D input as it is."""
    if x.ndim != 5:
        return x, context
    return x.flatten(0, 1), None if context is None else context.repeat_interleave(x.shape[1])


def call_model(model: nn.Module, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``model(x)``, with the context input when there is one (plain nn.Modules take none)."""
    return model(x) if context is None else model(x, context)


def adapt_stem(module: nn.Module, n_channels: int) -> str:
    """Make the first 3-channel conv of ``module`` take ``n_channels`` inputs.

    The RGB kernels are repeated over the new channels and scaled by 3/n
    (timm's ``adapt_input_conv``), so activations keep their ImageNet scale.
    Returns the conv's qualified name inside ``module``.
    """
    for name, conv in module.named_modules():  # noqa: B007 - the first match is used after the loop
        if isinstance(conv, nn.Conv2d) and conv.in_channels == _RGB:
            break
    else:
        raise ConfigError(f"{type(module).__name__} has no Conv2d with {_RGB} input channels")
    if n_channels == _RGB:
        return name
    # A copy keeps the conv's class (timm's same-padding convs) and settings.
    new = copy.deepcopy(conv)
    new.in_channels = n_channels
    new.weight = nn.Parameter(adapt_input_conv(n_channels, conv.weight.detach().clone()))
    parent_name, _, attr = name.rpartition(".")
    setattr(module.get_submodule(parent_name), attr, new)
    return name


# --------------------------------------------------------- checkpoint files


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


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _load_strict(module: nn.Module, state: StateDict, path, what: str) -> None:
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


def _hub_checkpoint(url: str) -> Path:
    """Where torch.hub keeps a downloaded file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _resolve_pretrained(pretrained, model_name: str, url: Optional[str]) -> Optional[Path]:
    """Turn ``model_params.pretrained`` into a local file, or None for random init.

    Raises DataError at once if the file is absent: no download is tried.
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


def _load_pretrained(body: nn.Module, path: Optional[Path], heads: Iterable[str], model_name: str,
                     remap: Callable[[StateDict], StateDict] = None) -> None:
    """Load ImageNet weights from ``path`` into the 3-channel ``body``,
    ignoring the classifier keys ``heads``."""
    if path is None:
        return
    state = {k: v for k, v in load_checkpoint(path).items() if not _under(k, heads)}
    if remap is not None:
        state = remap(state)
    _load_strict(body, state, path, f"the {_RGB}-channel {model_name} backbone")
    logger.info("loaded ImageNet weights for %s from %s", model_name, path)


# ------------------------------------------------------------------ builders
# A builder takes (model_name, pretrained) and returns (3-channel body with
# ImageNet weights loaded, number of pooled features). It resolves the weight
# file before building, so a missing file fails fast.


@MODELS.register("cell_senet")
def build_senet(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """pretrainedmodels SE-ResNet/SE-ResNeXt/SENet154, up to layer4."""
    from pretrainedmodels.models import senet  # heavy import, only when used

    if model_name not in senet.pretrained_settings:
        raise ConfigError(f"config key 'model_params/model_name': cell_senet has no '{model_name}'; known: {', '.join(senet.pretrained_settings)}")
    path = _resolve_pretrained(pretrained, model_name, senet.pretrained_settings[model_name]["imagenet"]["url"])
    net = getattr(senet, model_name)(pretrained=None)
    # Keep the conv stages only: its fixed 7x7 AvgPool would tie it to 224 px inputs.
    body = nn.Sequential(OrderedDict((stage, getattr(net, stage)) for stage in _SENET_STAGES))
    _load_pretrained(body, path, ("last_linear",), model_name)
    return body, net.last_linear.in_features


@MODELS.register("cell_densenet")
def build_densenet(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """timm DenseNet; "imagenet" reads torchvision's file from the torch hub cache."""
    import torchvision.models  # only for the weight URLs
    from timm.models.densenet import _filter_torchvision_pretrained

    if model_name not in _DENSENETS:
        raise ConfigError(f"config key 'model_params/model_name': cell_densenet has no '{model_name}'; known: {', '.join(_DENSENETS)}")
    url = torchvision.models.get_weight(f"{model_name.replace('densenet', 'DenseNet')}_Weights.IMAGENET1K_V1").url
    path = _resolve_pretrained(pretrained, model_name, url)
    body = timm.create_model(model_name, pretrained=False, num_classes=0)
    # torchvision names keys "norm.1"; timm "norm1". The remap accepts both.
    _load_pretrained(body, path, ("classifier",), model_name, remap=_filter_torchvision_pretrained)
    return body, body.num_features


@MODELS.register("timm")
def build_timm(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """Any ``timm.create_model`` name, pooled by timm (``num_classes=0``)."""
    if not timm.is_model(model_name):
        raise ConfigError(f"config key 'model_params/model_name': timm has no model '{model_name}' (see timm.list_models())")
    path = _resolve_pretrained(pretrained, model_name, None)
    body = timm.create_model(model_name, pretrained=False, num_classes=0)
    heads = body.pretrained_cfg.get("classifier") or ()
    _load_pretrained(body, path, (heads,) if isinstance(heads, str) else heads, model_name)
    return body, body.num_features


@MODELS.register("smp")
def build_smp(model_name: str, pretrained=None) -> Tuple[nn.Module, int]:
    """Any segmentation_models_pytorch encoder; the deepest map is pooled."""
    from segmentation_models_pytorch.encoders import get_encoder  # heavy import, only when used

    path = _resolve_pretrained(pretrained, model_name, None)
    body = get_encoder(model_name, in_channels=_RGB, weights=None)
    _load_pretrained(body, path, _SMP_HEADS, model_name)
    return body, body.out_channels[-1]


# ------------------------------------------------------------------- factory


def model_names():
    """Names accepted as ``model_params.model``."""
    return MODELS.names()


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


def create_model(model: str, model_name: str, n_channels: int, num_classes: int,
                 pretrained=None, weight=None, dropout: float = 0.0, stem_stride: Optional[int] = None,
                 stem_pool: bool = True, arcface: bool = False, context_column: Optional[str] = None,
                 context_values: Optional[Sequence[str]] = None, **kwargs) -> CellClassifier:
    """Build a classifier from ``model_params``.

    model: registered builder (see ``model_names()``); model_name: its backbone.
    pretrained: None/False (random init), "imagenet" (known file in the torch hub
        cache) or a PATH to a 3-channel ImageNet state dict.
    weight: PATH of an earlier stage's checkpoint; its encoder is loaded and the
        head is made afresh (so num_classes may differ). Overrides ``pretrained``.
    dropout: probability before the head.
    stem_stride / stem_pool: a smaller stem stride / no stem max-pool, for small images.
    arcface: also learn ArcFace class centres (criterion ArcFaceCombined uses them in training).
    context_column / context_values: a categorical column of the sample table (e.g. cell_type) given
        to the model as a learned embedding; the values are filled from the training table.
    """
    if kwargs:
        accepted = ", ".join(inspect.signature(create_model).parameters)
        raise ConfigError(f"unknown model_params: {', '.join(sorted(kwargs))}; accepted: {accepted}")
    builder = MODELS.get(model)
    if weight is not None and pretrained:
        # The checkpoint replaces the whole encoder, so skip reading ImageNet weights.
        logger.info("model_params.weight is set: ignoring model_params.pretrained=%s", pretrained)
        pretrained = None
    if context_column and (isinstance(context_values, str) or not context_values):
        raise ConfigError(f"config key 'model_params/context_values'={context_values!r}: the training table fills "
                          f"it from column '{context_column}' (model_params/context_column)")
    body, num_features = builder(model_name, pretrained=pretrained)
    stem = adapt_stem(body, n_channels)
    keep_resolution(body, stem, stem_stride, stem_pool)
    net = CellClassifier(Encoder(body, num_features), num_classes, model_name, n_channels,
                         dropout=dropout, stem=f"body.{stem}", arcface=bool(arcface),
                         context_values=context_values if context_column else None)
    if weight is not None:
        load_encoder(net, weight)
    return net


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
    _load_strict(net.encoder, state, path, f"the {net.model_name} encoder")
    logger.info("loaded encoder of %s from %s; head is new (%d classes)", net.model_name, path, net.num_classes)
