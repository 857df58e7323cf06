"""cellpipe: multi-channel cell-image classification on Catalyst.

Layers, each importing only the ones below it:

    serve, tune               the model service (FastAPI); hyperparameter studies (Optuna)
    engine                    a grid of commands on local processes or Slurm (submitit)
    profiling                 embeddings of a screen, corrections on controls, mAP / accuracy
    prep, reports, demo       data preparation tools, pictures and tables, generated data sets
    postprocess, rxrx         prediction-tree collection, blending, submissions; RxRx1 plates
    inference                 predict a finished run (sites, TTA views, AdaBN)
    training                  Catalyst runner, stages, callbacks, optimizers, start-up checks
    models                    backbone families (models/families/, one file each), stems, heads, checkpoints
    data                      Dataset, normalisation, transforms, TTA views, statistics, folds
    tasks                     target kinds (one file each): labels, activation, losses, metrics, reports
    sources                   input adapters: files -> sample table + image loading
    core                      errors, registry, config, atomic writes, layout names, readers

Importing the package arms the torchvision-on-CPU shim (core.compat), which patches torch just
before the first ``import torchvision``; the package itself imports no torch.
"""
from cellpipe.core import compat

compat.install()
