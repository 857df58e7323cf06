"""The ``MODELS`` registry of backbone families, filled by importing ``cellpipe.models.families``."""
from cellpipe.core.registry import Registry, import_modules

MODELS = Registry("model")

FAMILIES = "cellpipe.models.families"


def import_families(package: str = FAMILIES) -> None:
    """Import every module of ``package``: each registers its builders with ``@MODELS.register``
    on import, so a new family is one new file and no edit elsewhere. Modules named ``_*`` are
    skipped (room for shared helpers). Importing twice registers nothing twice (modules are cached)."""
    import_modules(package)
