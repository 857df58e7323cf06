"""A model package: one self-contained folder from a run or an ensemble of runs, for ``classify``.

    {package}/package.json            kind, classes, channels (numbers and names), image size, rescale
                                      rule, normalisation, TTA, members, the SHA-256 of every file and
                                      of the whole package
    {package}/members/{k}_{name}/     per run: config.yml (resolved), DONE.json, checkpoints/best.pth
                                      (weights, model params, label map incl. hierarchy, normalisation
                                      statistics), checkpoints/labels.json, checkpoints/thresholds.json

It needs no training config, data root or run tree: ``classify --model PACKAGE`` reads it like a run
tree and first checks every file against its recorded hash, so a damaged or edited package fails
with the file named. Written to a staged folder and renamed into place.
"""
import hashlib
import json
import shutil
from pathlib import Path
from typing import List, Sequence

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import file_sha256, staged_dir, write_text

PACKAGE_FILE = "package.json"
MEMBER_FILES = (layout.CONFIG_FILE, layout.DONE_FILE, layout.FINAL_CHECKPOINT, layout.LABELS_CHECKPOINT,
                layout.THRESHOLDS)


def _channel_names(cfg: dict) -> List[str]:
    from cellpipe.inference.classify import run_channel_names

    names, channels = run_channel_names(cfg), cfg["data_params"]["channels"]
    return [names[c - 1] for c in channels] if len(names) >= max(channels) else [f"channel {c}" for c in channels]


def export(runs: Sequence[Path], out: Path) -> Path:
    """Write the package of ``runs`` (finished run folders of one label map) to ``out``."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise DataError("export: no finished runs given")
    out = Path(out)
    members, first = [], None
    for k, run in enumerate(runs):
        for name in MEMBER_FILES[:4]:
            if not (run / name).is_file():
                raise DataError(f"{run} is not a finished run: {name} is missing")
        labels = json.loads((run / layout.LABELS_CHECKPOINT).read_text())
        if first is not None and labels.get("classes") != first[1].get("classes"):
            raise DataError(f"{run}: its classes differ from {runs[0]}'s; a package holds runs of one label map")
        first = first or (run, labels)
        members.append((f"members/{k}_{run.name}", run))
    cfg = cfglib.read_run_config(first[0] / layout.CONFIG_FILE)
    dp, pp = cfg["data_params"], cfg.get("predict_params") or {}
    with staged_dir(out) as staged:
        files = {}
        for folder, run in members:
            for name in MEMBER_FILES:
                if (run / name).is_file():
                    dest = staged / folder / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(run / name, dest)
                    files[f"{folder}/{name}"] = file_sha256(dest)
        meta = {"format": 1, "kind": first[1].get("kind", "single"), "classes": first[1].get("classes"),
                "levels": first[1].get("levels"), "channels": dp["channels"], "channel_names": _channel_names(cfg),
                "image_size": dp["image_size"], "rescale": dp.get("rescale"), "normalization": dp["normalization"],
                "tta": pp.get("tta") or "none", "reduce": pp.get("reduce") or "mean",
                "source": dp["source"], "members": [{"folder": f, "run": str(r)} for f, r in members],
                "files": files}
        meta["sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        write_text(json.dumps(meta, indent=2) + "\n", staged / PACKAGE_FILE)
    return out


def verify(package: Path) -> dict:
    """package.json of ``package`` after checking every listed file's hash (DataError naming the first bad one)."""
    package = Path(package)
    meta = json.loads((package / PACKAGE_FILE).read_text())
    for name, digest in meta["files"].items():
        path = package / name
        if not path.is_file():
            raise DataError(f"model package {package}: {name} is missing")
        if file_sha256(path) != digest:
            raise DataError(f"model package {package}: {name} does not match its recorded SHA-256 (damaged or edited)")
    return meta
