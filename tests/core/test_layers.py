"""The package's layers (cellpipe/__init__.py): every module imports only its own layer and the ones below."""
import re
from pathlib import Path

import cellpipe

PACKAGE = Path(cellpipe.__file__).parent
# bottom first; a layer may import itself and everything before it
ORDER = ["core", "sources", "tasks", "data", "models", "training", "inference", "postprocess", "rxrx",
         "prep", "reports", "demo", "profiling", "engine", "tune", "serve"]
SAME_LEVEL = [{"postprocess", "rxrx"}, {"prep", "reports", "demo"}]


def level(layer: str) -> int:
    return ORDER.index(layer)


def allowed(importer: str, imported: str) -> bool:
    return level(imported) <= level(importer) or any({importer, imported} <= group for group in SAME_LEVEL)


def test_every_package_is_a_known_layer():
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(ORDER)


def test_imports_point_down_only():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0]
        if layer == "__init__.py":
            continue
        for imported in re.findall(r"^\s*(?:from|import) cellpipe\.(\w+)", path.read_text(), flags=re.M):
            if not allowed(layer, imported):
                wrong.append(f"{path.relative_to(PACKAGE)} imports cellpipe.{imported}")
    assert wrong == []
