"""A model package: one self-contained folder from a run or an ensemble of runs, for ``classify``.

    {package}/package.json            kind, classes, channels (numbers, names, montage colours), image size, rescale
                                      rule, normalisation, TTA, members, the SHA-256 of every file and
                                      of the whole package
    {package}/members/{k}_{name}/     per run: config.yml (resolved), DONE.json, checkpoints/best.pth
                                      (weights, model params, label map incl. hierarchy, normalisation
                                      statistics), checkpoints/labels.json, checkpoints/thresholds.json,
                                      with --onnx checkpoints/model.onnx

It needs no training config, data root or run tree: ``classify --model PACKAGE`` reads it like a run
tree and first checks every file against its recorded hash, so a damaged or edited package fails
with the file named. Written to a staged folder and renamed into place.
"""
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import file_sha256, staged_dir, write_text

PACKAGE_FILE = "package.json"
MEMBER_FILES = (layout.CONFIG_FILE, layout.DONE_FILE, layout.FINAL_CHECKPOINT, layout.LABELS_CHECKPOINT,
                layout.THRESHOLDS)


def source_channels(cfg: dict):
    """(names, colours) of every channel of the run's source when the adapter knows them without data
    (HPA's stains, RxRx1's dyes, three-channel RGB), else ([], [])."""
    from cellpipe.sources import make_source

    with tempfile.TemporaryDirectory() as empty:  # an empty root: adapters must not scan the host's files
        try:
            source = make_source(dict(cfg["data_params"], root=empty))
            return list(source.channel_names), list(source.colours())
        except Exception:  # noqa: BLE001 - adapters that learn their channels from their files
            return [], []


def channel_info(cfg: dict, channels: Sequence[int]):
    """(names, colours) of ``channels`` of the run's source: the adapter's (source_channels), else
    "channel k" and the default palette at an 8-bit window."""
    from cellpipe.sources.base import PALETTE, RGB

    names, colours = source_channels(cfg)
    if len(names) < max(channels) or len(colours) < max(channels):
        names = [f"channel {c}" for c in range(1, max(channels) + 1)]
        palette = RGB if max(channels) == 3 else PALETTE  # as Source.colours: three channels are RGB
        colours = [(palette[(c - 1) % len(palette)], 255.0) for c in range(1, max(channels) + 1)]
    return [names[c - 1] for c in channels], [[list(colours[c - 1][0]), float(colours[c - 1][1])] for c in channels]


def model_card(runs: Sequence[Path]) -> dict:
    """What a user of the runs needs to know without opening them: kind, classes (and hierarchy
    levels), channels with names and montage colours, image size, rescale rule, normalisation, TTA."""
    run = Path(runs[0])
    from cellpipe.tasks import from_dict

    labels = from_dict(json.loads((run / layout.LABELS_CHECKPOINT).read_text()))
    cfg = cfglib.read_run_config(run / layout.CONFIG_FILE)
    dp, pp = cfg["data_params"], cfg.get("predict_params") or {}
    # every channel some run reads (RxRx1 ensembles combine runs of different channel combinations)
    channels = sorted({c for r in runs for c in cfglib.read_run_config(Path(r) / layout.CONFIG_FILE)
                       ["data_params"]["channels"]})
    names, colours = channel_info(cfg, channels)
    levels = getattr(labels, "levels", None)
    return {"kind": labels.kind, "classes": list(labels.classes), "levels": levels,
            "level_classes": {lvl: list(c) for lvl, c in zip(levels, labels.level_classes)} if levels else None,
            "channels": channels, "channel_names": names, "colours": colours, "image_size": dp["image_size"],
            "rescale": dp.get("rescale"), "normalization": dp["normalization"], "tta": pp.get("tta") or "none",
            "reduce": pp.get("reduce") or "mean", "source": dp["source"], "n_members": len(runs)}


def export(runs: Sequence[Path], out: Path, onnx: bool = False) -> Path:
    """Write the package of ``runs`` (finished run folders of one label map) to ``out``; ``onnx`` adds
    each member's weights as ONNX (inference.onnx) for ``--runtime onnx``."""
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
        if first is not None and labels != first[1]:
            raise DataError(f"{run}: its classes differ from {runs[0]}'s; a package holds runs of one label map")
        first = first or (run, labels)
        members.append((f"members/{k}_{run.name}", run))
    with staged_dir(out) as staged:
        files = {}
        for folder, run in members:
            for name in MEMBER_FILES:
                if (run / name).is_file():
                    dest = staged / folder / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(run / name, dest)
                    files[f"{folder}/{name}"] = file_sha256(dest)
            if onnx:
                from cellpipe.inference.onnx import export_onnx
                from cellpipe.inference.predict import load_run

                model, cfg, _, _ = load_run(run, "cpu", check_folder=False)
                dp = cfg["data_params"]
                dest = export_onnx(model, len(dp["channels"]), dp["image_size"], staged / folder / layout.ONNX_MODEL)
                files[f"{folder}/{layout.ONNX_MODEL}"] = file_sha256(dest)
        meta = {"format": 1, **model_card(runs), "runtimes": ["torch", "onnx"] if onnx else ["torch"], "members": [{"folder": f, "run": str(r)} for f, r in members],
                "files": files}
        meta["sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        write_text(json.dumps(meta, indent=2) + "\n", staged / PACKAGE_FILE)
    return out


def verify(package: Path) -> dict:
    """package.json of ``package`` after checking every listed file's hash and that nothing unlisted
    sits among the members (DataError naming the first bad file)."""
    package = Path(package)
    meta = json.loads((package / PACKAGE_FILE).read_text())
    unlisted = sorted(str(f.relative_to(package)) for f in (package / "members").rglob("*")
                      if f.is_file() and str(f.relative_to(package)) not in meta["files"])
    if unlisted:
        raise DataError(f"model package {package}: {unlisted[0]} is not one of its recorded files (added after export?)")
    for name, digest in meta["files"].items():
        path = package / name
        if not path.is_file():
            raise DataError(f"model package {package}: {name} is missing")
        if file_sha256(path) != digest:
            raise DataError(f"model package {package}: {name} does not match its recorded SHA-256 (damaged or edited)")
    return meta
