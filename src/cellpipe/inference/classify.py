"""Classify new, unlabelled images with one or more finished runs (seed 001's "inference", seed 000's
search-engine sorting, seed 003's new slides).

Inputs are image files, folders (searched recursively), glob patterns, or a table (.csv / .parquet)
with a ``path`` column; there are no labels and no split. Each run applies what it was trained
with: its channels and their order, rescale rule, image size, the normalisation statistics kept in
its checkpoint, its TTA views and reducer, its fitted thresholds (multi-label) and its joint
hierarchy decoding. Several runs (the folds of a run tree, or a list) are averaged as the ensemble
averages them. Files that cannot be read are listed in the output with the reason; the rest are
classified. A sample is one file (RGB, grey or a multi-page TIFF stack), or, with a ``pattern`` such
as ``{sample}_w{channel}.png`` (RxRx1), ``{sample}_{channel}.png`` (HPA stains) or
``{sample}-ch{channel}sk1fk1fl1.tiff`` (Opera Phenix), one single-channel file per channel, grouped by
the ``{sample}`` part (and the folder); other ``{fields}`` match anything.
"""
import glob
import logging
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from cellpipe.core import config as cfglib
from cellpipe.core import layout
from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import file_sha256, write_csv
from cellpipe.core.images import read_image
from cellpipe.core.tables import read_table, write_table
from cellpipe.data.build import context_spec, make_eval_dataset
from cellpipe.data.normalize import make_normalizer
from cellpipe.data.tta import tta_views
from cellpipe.inference.predict import _data_params, load_run, resolve_device, tta_settings
from cellpipe.sources.base import Source
from cellpipe.training.evaluate import predict_logits

log = logging.getLogger("inference")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageFiles(Source):
    """The listed samples as a test split: ``samples`` maps a sample id to its one file (``n_channels``
    channels) or to its list of single-channel files, one per channel in order."""

    name = "files"

    def __init__(self, samples: dict, n_channels: int, rescale: Optional[dict] = None):
        super().__init__("/", rescale=rescale)  # the run's rule for deeper-than-8-bit files
        self.samples, self._n = dict(samples), int(n_channels)
        self.per_channel_files = any(isinstance(v, (list, tuple)) for v in self.samples.values())

    def build_catalog(self) -> pd.DataFrame:
        return pd.DataFrame({"id": list(self.samples), "split": "test", "label": None})

    def describe(self) -> str:
        return f"{len(self.samples)} image sample(s)"

    @property
    def channel_names(self) -> List[str]:
        return [f"channel {c}" for c in range(1, self._n + 1)]

    def image_files(self, row, site: int, channels) -> List[Path]:
        files = self.samples[row["id"]]
        return [Path(files[c - 1]) for c in channels] if self.per_channel_files else [Path(files)]


def pattern_regex(pattern: str) -> "re.Pattern":
    """``{sample}`` and ``{channel}`` become named groups of the file name; other fields match anything."""
    if "{sample}" not in pattern or "{channel}" not in pattern:
        raise DataError(f"--pattern {pattern!r} must name {{sample}} and {{channel}}")
    parts = re.split(r"(\{\w+\})", pattern)
    out = "".join("(?P<sample>.+?)" if p == "{sample}" else "(?P<channel>[^/]+?)" if p == "{channel}"
                  else ".+?" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts)
    return re.compile(out + "$")


def group_channels(paths: Sequence[str], pattern: str, channel_names: Sequence[str]):
    """({sample id: [file per channel 1..n]}, [(path or sample, reason)]): files grouped by the pattern's
    {sample}; {channel} is a 1-based number or one of ``channel_names`` (e.g. HPA's stains)."""
    rx, groups, bad = pattern_regex(pattern), {}, []
    names = {str(n): i + 1 for i, n in enumerate(channel_names)}
    for path in paths:
        m = rx.match(Path(path).name)
        if not m:
            bad.append((path, f"file name does not match --pattern {pattern!r}"))
            continue
        ch = m["channel"]
        number = int(ch) if ch.isdigit() else names.get(ch)
        if number is None:
            bad.append((path, f"channel {ch!r} is neither a number nor one of {list(channel_names)}"))
            continue
        groups.setdefault(str(Path(path).parent / m["sample"]), {})[number] = path
    return groups, bad



def gather(inputs: Sequence[str]) -> List[str]:
    """Image paths from files, folders (recursive), glob patterns and tables with a ``path`` column,
    in the order given, each once."""
    out = []
    for item in inputs:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix.lower() in (".csv", ".parquet") and p.is_file():
            table = read_table(p, ["path"])
            out += [str(p.parent / v) if not Path(str(v)).is_absolute() else str(v) for v in table["path"]]
        elif any(ch in item for ch in "*?["):
            out += sorted(glob.glob(item, recursive=True))
        else:
            out.append(item)  # a file (missing ones are reported with the unreadable)
    if not out:
        raise DataError(f"no images found in {list(inputs)}")
    return list(dict.fromkeys(out))


def complete(groups: dict, channels: Sequence[int]):
    """(samples with a readable single-channel file for every channel up to the model's last, [(sample,
    reason)])."""
    need = list(range(1, max(channels) + 1))
    ok, bad = {}, []
    for sample, files in tqdm(groups.items(), desc="check samples", unit="sample", leave=False):
        missing = [c for c in need if c not in files]
        if missing:
            bad.append((sample, f"no file for channel(s) {missing}"))
            continue
        try:
            planes = [read_image(files[c]) for c in need]
        except DataError as e:
            bad.append((sample, str(e)))
            continue
        deep = [files[c] for c, p in zip(need, planes) if p.ndim == 3 and p.shape[-1] != 1]
        if deep:
            bad.append((sample, f"{deep[0]} has several channels; --pattern needs one channel per file"))
        else:
            ok[sample] = [files[c] for c in need]
    return ok, bad


def readable(paths: Sequence[str], channels: Sequence[int]) -> Tuple[List[str], List[Tuple[str, str]], int]:
    """(paths that decode and hold the run's ``channels``, [(path, reason)] of the others, their channel
    count: that of the first readable file, which every other must share)."""
    ok, bad, count = [], [], None
    for path in tqdm(paths, desc="check images", unit="file", leave=False):
        try:
            img = read_image(path)
        except DataError as e:
            bad.append((path, str(e)))
            continue
        got = 1 if img.ndim == 2 else img.shape[-1]
        if got < max(channels):
            bad.append((path, f"{got} channel(s); the model reads channels {list(channels)}"))
        elif count is not None and got != count:
            bad.append((path, f"{got} channel(s) where the other files have {count}"))
        else:
            ok.append(path)
            count = got
    return ok, bad, count or max(channels)


def model_id(run_dir: Path) -> str:
    """The run's backbone name and the first 12 hex digits of its checkpoint's SHA-256: the same for
    a run and its copy in a model package."""
    digest = file_sha256(run_dir / layout.FINAL_CHECKPOINT)[:12]
    return f"{cfglib.read_run_config(run_dir / layout.CONFIG_FILE)['model_params']['model_name']}@{digest}"


def run_dirs(models: Sequence[str]) -> List[Path]:
    """Run folders: each item a finished run (DONE.json), a model package (checked against its hashes)
    or a run tree searched for them."""
    from cellpipe.inference.package import PACKAGE_FILE, verify

    out = []
    for m in models:
        m = Path(m)
        if (m / PACKAGE_FILE).is_file():
            verify(m)
        if (m / layout.DONE_FILE).is_file():
            out.append(m)
        else:
            found = sorted(p.parent for p in m.rglob(layout.DONE_FILE)) if m.is_dir() else []
            if not found:
                raise DataError(f"--model {m}: neither a finished run (no {layout.DONE_FILE}) nor a tree of them")
            out += found
    return out


def run_probabilities(run_dir: Path, samples: dict, n_channels: int, device, batch_size: int, num_workers: int,
                      tta=None, reduce=None):
    """(probabilities of ``samples`` by one run, its label map, its thresholds or None)."""
    model, cfg, labels, payload = load_run(run_dir, device, check_folder=False)
    dp = _data_params(cfg, None, None, None)
    dp.update(cache=None, check_files=False, valid_sites=[1])
    source = ImageFiles(samples, n_channels, dp.get("rescale"))
    table = source.catalog()
    if dp["normalization"] not in ("none", "dataset", "image"):
        raise DataError(f"{run_dir}: the run normalises per '{dp['normalization']}' (a group of its own data); "
                        "classify needs normalization none, image or dataset")
    normalizer = make_normalizer(dp, source, [table], state=payload.get("normalization"))
    if context_spec(payload["model_params"]):
        raise DataError(f"{run_dir}: the model takes a context column "
                        f"({payload['model_params']['context_column']}), which image files do not have")
    ds = make_eval_dataset(dp, source, table, labels, normalizer, source.describe())
    views = tta_settings(cfg, tta, reduce)
    logits = predict_logits(model, ds, batch_size=batch_size, num_workers=num_workers, device=device,
                            views=tta_views(views["tta"], views["crop"]), reduce=views["reduce"],
                            desc=f"classify {run_dir.name}")
    return labels.probabilities(logits), labels, labels.read_thresholds(run_dir / layout.THRESHOLDS)


def run_channel_names(cfg: dict) -> List[str]:
    """The run's source's channel names when the adapter knows them without data (HPA's stains), else []."""
    from cellpipe.sources import make_source

    try:
        return list(make_source(dict(cfg["data_params"], root="/")).channel_names)
    except Exception:  # noqa: BLE001 - adapters that name channels from their files: numbers only
        return []


def classify(models: Sequence[str], inputs: Sequence[str], out: str, batch_size: int = 32, num_workers: int = 0,
             device: str = "auto", tta: Optional[str] = None, reduce: Optional[str] = None, top_k: int = 3,
             parquet: bool = False, pattern: Optional[str] = None) -> Path:
    """Classify ``inputs`` with the runs of ``models`` and write ``out`` (CSV; + .parquet beside it)."""
    runs = run_dirs(models)
    device = resolve_device(device)
    paths = gather(inputs)
    first_cfg = cfglib.read_run_config(runs[0] / layout.CONFIG_FILE)  # channels, before any model is built
    channels = first_cfg["data_params"]["channels"]
    if pattern:
        groups, bad = group_channels(paths, pattern, run_channel_names(first_cfg))
        samples, missing = complete(groups, channels)
        bad, n_channels = bad + missing, max(channels)
    else:
        ok, bad, n_channels = readable(paths, channels)
        samples = {p: p for p in ok}
    ok = list(samples)
    parts = []
    if ok:
        probs, labels, thresholds = None, None, []
        for r in runs:
            p, lab, th = run_probabilities(r, samples, n_channels, device, batch_size, num_workers, tta, reduce)
            if labels is not None and list(lab.classes) != list(labels.classes):
                raise DataError(f"{r}: its classes differ from {runs[0]}'s; classify averages runs of one label map")
            probs = p if probs is None else probs + p
            labels = lab
            if th is not None:
                thresholds.append(th)
        probs = probs / len(runs)
        th = np.mean(thresholds, axis=0) if thresholds else None
        decoded = labels.decode(probs, th)
        order = np.argsort(-probs[:, :len(labels.classes)], axis=1)[:, :top_k]
        top = {f"top{k + 1}": [labels.classes[i] for i in order[:, k]] for k in range(min(top_k, order.shape[1]))}
        where = pd.DataFrame({"path": ok})
        if pattern:  # the sample's files, channel 1 first
            where["files"] = [";".join(samples[s]) for s in ok]
        parts.append(pd.concat([where, decoded, pd.DataFrame(top),
                                pd.DataFrame(probs, columns=labels.prob_columns())], axis=1).assign(error=""))
    if bad:
        parts.append(pd.DataFrame({"path": [b[0] for b in bad], "error": [b[1] for b in bad]}))
    result = pd.concat(parts, ignore_index=True).assign(model=";".join(model_id(r) for r in runs))
    out = Path(out)
    write_csv(result, out)
    if parquet:
        write_table(result, out.with_suffix(".parquet"))
    log.info("classified %d image(s) with %d run(s) into %s; %d unreadable", len(ok), len(runs), out, len(bad))
    return out
