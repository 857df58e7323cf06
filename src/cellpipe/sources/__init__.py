"""Input adapters by name (``data_params/source``): rxrx1, rxrx1_2020, manifest, folder, phenix, hpa,
loaddata (CellProfiler LoadData CSV), imagexpress, ome (OME-TIFF / OME-Zarr and other formats through bioio).

Each module registers one Source subclass (every module of the package is imported on first use);
``make_source(data_params)`` builds the configured one. A new layout is one module here plus a YAML overlay.
"""
from cellpipe.core.registry import Registry, import_modules

SOURCES = Registry("source")


def make_source(data_params: dict):
    """The Source that ``data_params`` names, with its ``source_params``."""
    from cellpipe.sources.base import accepts

    _load_adapters()
    cls = SOURCES.get(data_params.get("source", "rxrx1"))
    params = dict(data_params.get("source_params") or {})
    accepts(cls, params, cls.name)
    source = cls(data_params["root"], rescale=data_params.get("rescale"), **params)
    if data_params.get("illumination"):
        from cellpipe.core.illumination import load

        source.illumination = load(data_params["illumination"], source.root)
    return source


def _load_adapters() -> None:
    # every module of the package registers its adapter on import (a new layout is one new file);
    # kept lazy so that `import cellpipe.sources` stays light
    import_modules(__name__, skip=("base",))


def source_names():
    _load_adapters()
    return SOURCES.names()


def source_class(name: str):
    """The adapter class registered as ``name`` (for what needs no data, e.g. its submission format)."""
    _load_adapters()
    return SOURCES.get(name)
