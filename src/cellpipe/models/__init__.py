"""Models: backbone families (one file each in families/), n-channel stem, head, checkpoint loading.

Never imports training.
"""
from cellpipe.models.checkpoint import load_checkpoint, load_encoder
from cellpipe.models.factory import create_model, model_names
from cellpipe.models.head import CellClassifier, call_model, flatten_sites
from cellpipe.models.registry import MODELS, import_families
from cellpipe.models.stem import adapt_stem

__all__ = ["MODELS", "CellClassifier", "adapt_stem", "call_model", "create_model", "flatten_sites",
           "load_checkpoint", "load_encoder", "model_names"]

import_families()
