"""String-keyed registries: YAML names a component, the registry builds it."""
import importlib
import inspect
import pkgutil
from typing import Any, Callable, Dict

from cellpipe.core.errors import ConfigError, UnknownName


class Registry:
    """Maps names to factories; an unknown name lists the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable[..., Any]] = {}

    def register(self, name: str = None):
        def deco(fn):
            key = name or fn.__name__
            if key in self._items:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            raise UnknownName(f"unknown {self.kind} '{name}'; known: {known}")
        return self._items[name]

    def check(self, name: str, key: str = "") -> None:
        """Raise UnknownName (naming the config ``key``) unless ``name`` is registered."""
        if name not in self._items:
            where = f"config key '{key}': " if key else ""
            raise UnknownName(f"{where}unknown {self.kind} '{name}'; known: {', '.join(sorted(self._items))}")

    def build(self, name: str, **kwargs) -> Any:
        fn = self.get(name)
        try:  # a misspelt or foreign setting names itself instead of a TypeError deep inside
            inspect.signature(fn).bind(**kwargs)
        except TypeError as e:
            raise ConfigError(f"{self.kind} '{name}': {e}") from None
        return fn(**kwargs)

    def names(self):
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


def import_modules(package: str, skip=()) -> None:
    """Import every module of ``package`` but ``skip`` and those named ``_*``: each registers its
    components on import, so a new one is one new file and no edit elsewhere (cached after the first call)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
