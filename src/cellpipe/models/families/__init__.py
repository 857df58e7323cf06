"""Backbone families, one module each; ``cellpipe.models`` imports every one (``import_families``).

A family module registers a builder with ``@MODELS.register("name")``. A builder takes
``(model_name, pretrained)`` and returns (3-channel body with its ImageNet weights loaded,
number of pooled features). It resolves the weight file before building, so a missing file
fails fast. Heavy third-party imports go inside the builder: every family is imported with
the package.
"""
