"""Models: backbone registry, n-channel stem, linear head, checkpoint loading (never imports training)."""
from cellpipe.models.factory import (MODELS, CellClassifier, adapt_stem, create_model, load_checkpoint,  # noqa: F401
                                     load_encoder, model_names)
