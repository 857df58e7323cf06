"""Models: backbone registry, n-channel stem, linear head, checkpoint loading (never imports training)."""
from cellpipe.models.factory import (  # noqa: F401
                                     MODELS,
                                     CellClassifier,
                                     adapt_stem,
                                     call_model,
                                     create_model,
                                     flatten_sites,
                                     load_checkpoint,
                                     load_encoder,
                                     model_names,
)
