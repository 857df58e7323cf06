"""The classifier around a backbone: pooled encoder, linear head (ArcFace centres, context input)."""
from typing import Iterator, Optional, Sequence

import torch
from torch import nn


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


def flatten_sites(x: torch.Tensor, context: Optional[torch.Tensor] = None):
    """(B, S, C, H, W) -> (B*S, C, H, W), the context repeated per site; 4-D input as it is."""
    if x.ndim != 5:
        return x, context
    return x.flatten(0, 1), None if context is None else context.repeat_interleave(x.shape[1])


def call_model(model: nn.Module, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``model(x)``, with the context input when there is one (plain nn.Modules take none)."""
    return model(x) if context is None else model(x, context)
