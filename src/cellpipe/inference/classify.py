"""Classify new, unlabelled images with one or more finished runs (seed 001's "inference", seed 000's
search-engine sorting, seed 003's new slides).

Inputs are image files, folders (searched recursively), glob patterns, or a table (.csv / .parquet)
with a ``path`` column; there are no labels and no split. Each run applies what it was trained
with (inference.predictor); several runs (the folds of a run tree, or a list) are averaged as the
ensemble averages them. Files that cannot be read are listed in the output with the reason; the rest are
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

import pandas as pd
from tqdm import tqdm

from cellpipe.core.errors import DataError
from cellpipe.core.fsutil import write_csv
from cellpipe.core.images import read_image
from cellpipe.core.tables import read_table, write_table
from cellpipe.inference.predictor import Predictor

log = logging.getLogger("inference")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def pattern_regex(pattern: str) -> "re.Pattern":
    """``{sample}`` and ``{channel}`` become named groups of the file name; other fields match anything."""
    if "{sample}" not in pattern or "{channel}" not in pattern:
        raise DataError(f"--pattern {pattern!r} must name {{sample}} and {{channel}}")
    parts = re.split(r"(\{\w+\})", pattern)
    out = "".join("(?P<sample>.+?)" if p == "{sample}" else "(?P<channel>[^/]+?)" if p == "{channel}"
                  else ".+?" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts)
    return re.compile(out + "$")


def group_channels(paths: Sequence[str], pattern: str, names: dict):
    """({sample id: [file per channel 1..n]}, [(path or sample, reason)]): files grouped by the pattern's
    {sample}; {channel} is a 1-based number or one of ``names`` (channel name -> number, e.g. HPA's stains)."""
    rx, groups, bad = pattern_regex(pattern), {}, []
    names = {str(n): c for n, c in names.items()}
    for path in paths:
        m = rx.match(Path(path).name)
        if not m:
            bad.append((path, f"file name does not match --pattern {pattern!r}"))
            continue
        ch = m["channel"]
        number = int(ch) if ch.isdigit() else names.get(ch)
        if number is None:
            bad.append((path, f"channel {ch!r} is neither a number nor one of {list(names)}"))
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


def complete(groups: dict, channels: Sequence[int], check=None):
    """({sample: {channel: file}} for the samples with a readable single-channel file for each of the
    model's ``channels``, [(sample, reason)]); ``check(planes, name)`` raises DataError for a sample
    the model cannot take."""
    ok, bad = {}, []
    for sample, files in tqdm(groups.items(), desc="check samples", unit="sample", leave=False):
        missing = [c for c in channels if c not in files]
        if missing:
            bad.append((sample, f"no file for channel(s) {missing}"))
            continue
        try:
            planes = {c: read_image(files[c]) for c in channels}
            deep = [files[c] for c, p in planes.items() if p.shape[-1] != 1]
            if deep:
                raise DataError(f"{deep[0]} has several channels; --pattern needs one channel per file")
            if check:
                check(planes, sample)
            ok[sample] = {c: files[c] for c in channels}
        except DataError as e:
            bad.append((sample, str(e)))
    return ok, bad


def readable(paths: Sequence[str], channels: Sequence[int], check=None) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(paths that decode and hold the run's ``channels``, [(path, reason)] of the others);
    ``check(planes, name)`` raises DataError for an image the model cannot take (a bit depth without a
    rescale rule)."""
    ok, bad = [], []
    for path in tqdm(paths, desc="check images", unit="file", leave=False):
        try:
            img = read_image(path)
            if img.shape[-1] < max(channels):
                raise DataError(f"{img.shape[-1]} channel(s); the model reads channels {list(channels)}")
            if check:
                check({c: img[..., c - 1:c] for c in channels}, path)
            ok.append(path)
        except DataError as e:
            bad.append((path, str(e)))
    return ok, bad


def classify(models: Sequence[str], inputs: Sequence[str], out: str, batch_size: int = 32, num_workers: int = 0,
             device: str = "auto", tta: Optional[str] = None, reduce: Optional[str] = None, top_k: int = 3,
             parquet: bool = False, pattern: Optional[str] = None, runtime: str = "torch",
             group_stats: Optional[str] = None, min_prob: Optional[float] = None) -> Path:
    """Classify ``inputs`` with the runs of ``models`` and write ``out`` (CSV; + .parquet beside it)."""
    predictor = Predictor(models, device, tta, reduce, runtime, group_stats)
    paths = gather(inputs)
    if pattern:
        groups, bad = group_channels(paths, pattern, predictor.channel_numbers)
        samples, missing = complete(groups, predictor.channels, predictor.check)
        bad += missing
    else:
        ok, bad = readable(paths, predictor.channels, predictor.check)
        samples = {p: p for p in ok}
    ok = list(samples)
    parts = []
    if ok:
        where = pd.DataFrame({"path": ok})
        if pattern:  # the sample's files, channel 1 first
            where["files"] = [";".join(samples[s].values()) for s in ok]
        probs = predictor.probabilities(samples, batch_size, num_workers)
        parts.append(pd.concat([where, predictor.decode(probs, top_k, min_prob)], axis=1).assign(error=""))
    if bad:
        parts.append(pd.DataFrame({"path": [b[0] for b in bad], "error": [b[1] for b in bad]}))
    result = pd.concat(parts, ignore_index=True).assign(model=predictor.model)
    out = Path(out)
    write_csv(result, out)
    if parquet:
        write_table(result, out.with_suffix(".parquet"))
    log.info("classified %d image(s) with %d run(s) into %s; %d unreadable", len(ok), len(predictor.runs), out,
             len(bad))
    return out
