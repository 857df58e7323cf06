"""cellpipe: multi-channel cell-image classification on Catalyst.

Layers, each importing only the ones below it:

    prep, reports, demo       data preparation tools, pictures and tables, generated data sets
    postprocess, rxrx         prediction-tree collection, blending, submissions; RxRx1 plates
    inference                 predict a finished run (sites, TTA views)
    training                  Catalyst runner, stages, losses, metrics, optimizers
    models                    backbones, n-channel stems, heads, checkpoint loading
    data                      Dataset, normalisation, transforms, statistics, folds, label maps
    sources                   input adapters: files -> sample table + image loading
    core                      errors, registry, config, atomic writes, layout names, readers

Importing the package applies the torchvision-on-CPU shim first (core.compat).
"""
from cellpipe.core import compat  # noqa: F401  (before anything imports torchvision)
