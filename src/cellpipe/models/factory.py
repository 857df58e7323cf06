"""``create_model(**model_params)``: a registered family's body, n-channel stem, head, earlier weights.

A builder in ``MODELS`` (one file per family in ``families/``) makes the 3-channel backbone
and loads its ImageNet weights; then ``adapt_stem`` widens the first conv to ``n_channels``
and an earlier stage's checkpoint (``weight``) may replace the encoder. No network access is
ever attempted: weights come from local files only.
"""
import inspect
import logging
from typing import Optional, Sequence

from cellpipe.core.errors import ConfigError
from cellpipe.models.checkpoint import load_encoder
from cellpipe.models.head import CellClassifier, Encoder
from cellpipe.models.registry import MODELS
from cellpipe.models.stem import adapt_stem, keep_resolution

logger = logging.getLogger(__name__)


def model_names():
    """Names accepted as ``model_params.model``."""
    return MODELS.names()


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
