"""AdaBN (Li et al. 2016): BatchNorm statistics re-estimated on each test group before predicting it.

Batch effects shift every plate's image statistics; a network's BatchNorm layers keep the
training set's running means. Re-estimating them on the plate being predicted (its own
images, no labels) removes the shift, which the RxRx1 5th place reported as worth tens of
points on unseen experiments. ``predict_params/adabn: plate`` (or ``experiment``, any
normalisation level of the source) turns it on for predict / predict-all.
"""
import copy

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from cellpipe.data.sampling import group_codes
from cellpipe.models import call_model, flatten_sites


def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_bn(model, dataset, batch_size: int, num_workers: int = 0, device=None) -> None:
    """Replace every BatchNorm layer's running statistics by those of ``dataset`` (all its sites)."""
    device = device or next(model.parameters()).device
    layers = _bn_layers(model)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the whole group
    model.eval()
    for m in layers:
        m.train()
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        call_model(model, *flatten_sites(batch["features"].to(device), batch.get("context")))
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    model.eval()


def adabn_logits(model, dataset, level: str, predict, batch_size: int, num_workers: int = 0, device=None,
                 **predict_args) -> np.ndarray:
    """Logits of ``dataset`` (a SampleDataset), each group of ``level`` predicted after adapting the
    BatchNorm statistics to that group alone; the model is left as it came."""
    if len(dataset) == 0:
        return predict(model, dataset, batch_size=batch_size, num_workers=num_workers, device=device, **predict_args)
    codes = group_codes(dataset.table, dataset.source, level)
    original = copy.deepcopy(model.state_dict())
    out = None
    try:
        for g in np.unique(codes):
            idx = np.flatnonzero(codes == g)
            part = Subset(dataset, idx.tolist())
            adapt_bn(model, part, batch_size, num_workers, device)
            logits = predict(model, part, batch_size=batch_size, num_workers=num_workers, device=device,
                             **predict_args)
            if out is None:
                out = np.zeros((len(dataset), logits.shape[1]), np.float32)
            out[idx] = logits
    finally:
        model.load_state_dict(original)
    return out
