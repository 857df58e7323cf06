"""Seed 003's data preparation: class folders of large images -> small PNGs in split folders.

    <in_dir>/<class>/<image>  ->  <out_dir>/{training,validation,test}/<class>/<name>.png
                                  (or <out_dir>/<class>/<name>.png with split="none", for cross-validation)

Every image is read with ``core.images.read_image`` (PNG, JPEG, TIFF; 8 or 16 bit),
brought to 8-bit units (a deeper image needs an explicit ``rescale`` rule), resized
and written as a grey or RGB PNG. The work runs as a job list on a process pool.

Unreadable images are skipped and listed in skipped.csv; the split is drawn afterwards
from the images that were written, per class, so the fractions hold for what is on
disk and every class reaches every split once it has an image per split. Each class is
shuffled by its own generator seeded with (seed, crc32 of the class name): adding a
class does not reshuffle the others.

The whole tree is built in a hidden folder beside ``out_dir`` and renamed into place
at the end (``core.fsutil.staged_dir``), so a failed run leaves nothing behind and a replaced
output never mixes files of two runs. Also written: split.csv (source, dest, class,
split), skipped.csv (path, reason) and prep.json (settings and counts).

``image_problem`` is shared with ``prep.merge``; the staged tree and the process pool are
``core.fsutil.staged_dir`` and ``core.parallel.run_jobs``.
"""
import json
import logging
import os
import shutil
import zlib
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
import pandas as pd

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError, UserError
from cellpipe.core.fsutil import staged_dir
from cellpipe.core.images import check_rescale, read_image, to_8bit_units
from cellpipe.core.parallel import run_jobs
from cellpipe.sources.folder import EXTENSIONS, SPLIT_FOLDERS

log = logging.getLogger(__name__)

FILTERS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
           "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
SPLITS = ("training", "validation", "test")  # folder names FolderSource reads as train / valid / test
NO_SPLIT = "none"
DEFAULT_SIZE = 256
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
FRACTION_TOLERANCE = 1e-6  # fractions typed as decimals need not sum to 1 exactly
JPEG_TAIL_BYTES = 1024  # a complete JPEG has its end marker here (some cameras append a few padding bytes)
PREP_JSON, SPLIT_CSV, SKIPPED_CSV = "prep.json", "split.csv", "skipped.csv"
WORK_DIR = ".work"  # inside the staged tree: PNGs land here before the split is drawn
PNG_CHANNELS = (1, 3)
SPLIT_RULE = ("per class, the images written are shuffled by numpy default_rng([seed, crc32(class name)]) and cut by "
              "the fractions (largest remainder; a split with a positive fraction gets at least one image when the "
              "class has one per such split)")


class ResizeJob(NamedTuple):
    """One image to convert; plain values so that it pickles to a pool worker."""
    src: str
    dest: str
    size: Tuple[int, int]  # (width, height), cv2's order
    interpolation: int
    rescale: Optional[dict]


def image_problem(path) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """``(image, None)`` for a readable image file, ``(None, reason)`` for a missing, corrupt or truncated one.

    OpenCV decodes a truncated JPEG without error (the missing rows come out grey), so a JPEG
    must also hold its end-of-image marker near its end.
    """
    try:
        img = read_image(path)
    except DataError as e:
        return None, str(e)
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - JPEG_TAIL_BYTES))
            if b"\xff\xd9" not in f.read():
                return None, f"truncated JPEG (no end-of-image marker): {path}"
    return img, None


def list_images(folder: Path) -> List[Path]:
    """Image files directly in ``folder`` (by extension, hidden files left out), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".") and not p.is_dir())


def class_folders(root: Path) -> List[Path]:
    """The non-hidden sub-folders of ``root``, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---------------------------------------------------------------- options

def parse_size(size) -> Tuple[int, int]:
    """``256`` -> (256, 256); ``"320,240"`` or ``(320, 240)`` -> (320, 240), i.e. (width, height)."""
    parts = str(size).replace("x", ",").split(",") if isinstance(size, (int, str)) else list(size)
    try:
        wh = [int(str(p).strip()) for p in parts]
    except ValueError:
        wh = []
    if len(wh) == 1:
        wh = wh * 2
    if len(wh) != 2 or min(wh) < 1:
        raise UserError(f"size must be a positive int or 'W,H', got {size!r}")
    return wh[0], wh[1]


def parse_fractions(fractions) -> Tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` or a 3-sequence -> (training, validation, test) fractions, each >= 0, summing to 1."""
    parts = fractions.split(",") if isinstance(fractions, str) else list(fractions)
    try:
        values = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        values = ()
    if len(values) != len(SPLITS) or min(values) < 0 or abs(sum(values) - 1) > FRACTION_TOLERANCE:
        raise UserError(f"fractions must be {len(SPLITS)} numbers >= 0 summing to 1 ({', '.join(SPLITS)}), "
                        f"got {fractions!r}")
    return values


def parse_rescale(rescale) -> Optional[dict]:
    """A rescale rule as a dict, or as YAML/JSON text (``"{mode: full}"``); checked by ``check_rescale``."""
    if isinstance(rescale, str):
        import yaml

        try:
            rescale = yaml.safe_load(rescale)
        except yaml.YAMLError as e:
            raise UserError(f"rescale: cannot parse {rescale!r}: {e}") from None
    check_rescale(rescale, key="rescale")
    return rescale


def parse_split(split) -> str:
    """``"random"`` (training/validation/test folders) or ``"none"`` (class folders only)."""
    mode = NO_SPLIT if split is None else str(split).lower()
    if mode not in ("random", NO_SPLIT):
        raise UserError(f"split must be 'random' or '{NO_SPLIT}', got {split!r}")
    return mode


# ---------------------------------------------------------------- inputs and outputs

def find_images(in_dir: Path) -> Dict[str, List[Path]]:
    """``{class: [image paths]}`` of ``in_dir/<class>/<image>``; a folder without images is an error."""
    if not in_dir.is_dir():
        raise DataError(f"input folder not found: {in_dir}")
    classes = class_folders(in_dir)
    if not classes:
        raise DataError(f"input folder {in_dir} has no class sub-folders (expected <in_dir>/<class>/<image>)")
    found = {}
    for folder in classes:
        images = list_images(folder)
        if not images:
            hint = " (it looks like an already split layout)" if folder.name.lower() in SPLIT_FOLDERS else ""
            raise DataError(f"class folder {folder} holds no images ({', '.join(EXTENSIONS)}){hint}")
        found[folder.name] = images
    return found


def png_names(images: Sequence[Path]) -> List[str]:
    """Output names of one class's images: ``<stem>.png``, or ``<stem>_<ext>.png`` where stems repeat."""
    stems = [p.stem for p in images]
    names = [f"{p.stem}.png" if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix[1:]}.png" for p in images]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{images[0].parent}: several images map to the output name(s) {repeated}; rename them")
    return names


def check_out_dir(out_dir: Path, in_dir: Path, overwrite: bool) -> None:
    """Refuse an out_dir that overlaps in_dir, or one that is not empty (unless it is an earlier prep output)."""
    a, b = out_dir.resolve(), in_dir.resolve()
    if a == b or b in a.parents or a in b.parents:
        raise DataError(f"out_dir {out_dir} and in_dir {in_dir} must not contain each other")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"out_dir {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise DataError(f"out_dir {out_dir} is not empty; pass overwrite=True (--overwrite) to replace it")
        if not (out_dir / PREP_JSON).is_file():
            raise DataError(f"out_dir {out_dir} is not empty and has no {PREP_JSON}: not an earlier prep output, "
                            f"refusing to replace it")


def split_counts(n: int, fractions: Sequence[float]) -> List[int]:
    """``n`` images cut by ``fractions``: largest-remainder rounding, then every split with a positive
    fraction gets at least one image when ``n`` allows it (taken from the largest split)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r + FRACTION_TOLERANCE)) for r in raw]  # 0.29 * 100 = 28.999...: still 29
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[:n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def draw_split(names: Sequence[str], fractions: Sequence[float], seed: int, cls: str) -> List[str]:
    """The split name of each of one class's images, shuffled by (seed, crc32 of the class name)."""
    rng = np.random.default_rng([seed, zlib.crc32(cls.encode())])
    order = rng.permutation(len(names))
    labels = np.repeat(np.arange(len(SPLITS)), split_counts(len(names), fractions))
    split = [""] * len(names)
    for position, i in enumerate(order):
        split[i] = SPLITS[labels[position]]
    return split


def to_png(img: np.ndarray, job: ResizeJob) -> np.ndarray:
    """H x W x C image (RGB order) -> resized uint8 array ready for cv2 (grey, or BGR)."""
    if img.shape[-1] not in PNG_CHANNELS:
        raise DataError(f"{job.src}: {img.shape[-1]} channels; prep writes grey (1) or RGB (3) PNGs")
    if img.dtype == np.uint8:
        small = cv2.resize(img, job.size, interpolation=job.interpolation)
    else:  # resize in float so that the 8-bit rounding happens once; cubic/lanczos overshoot, hence the clip
        units = to_8bit_units(img, job.rescale, job.src)
        small = np.clip(np.rint(cv2.resize(units, job.size, interpolation=job.interpolation)), 0, 255)
        small = small.astype(np.uint8)
    if small.ndim == 3 and small.shape[-1] == 1:
        small = small[..., 0]
    return cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if small.ndim == 3 else small  # cv2 writes BGR


def resize_one(job: ResizeJob) -> Optional[str]:
    """Convert one image (runs in a pool worker): None when written, the reason when unreadable.

    An unreadable file is skipped; a readable image that cannot be converted (16-bit without a
    rescale rule, 2 or 4 channels) raises DataError and stops the run.
    """
    img, problem = image_problem(job.src)
    if problem:
        return problem
    fsutil.write_png(to_png(img, job), job.dest)
    return None


# ---------------------------------------------------------------- the tool

def make_jobs(images: Dict[str, List[Path]], stage: Path, size, interpolation: int,
              rescale) -> Tuple[list, pd.DataFrame]:
    """The job list (PNGs into ``stage/.work/<class>/``) and a table of source, class and name per job."""
    jobs, rows = [], []
    for cls, paths in images.items():
        for path, name in zip(paths, png_names(paths)):
            src = str(path.absolute())
            jobs.append(ResizeJob(src, str(stage / WORK_DIR / cls / name), size, interpolation, rescale))
            rows.append({"source": src, "class": cls, "name": name})
    return jobs, pd.DataFrame(rows)


def assign_dest(done: pd.DataFrame, mode: str, fractions, seed: int) -> pd.DataFrame:
    """Add ``split`` and ``dest`` (relative to out_dir) to the table of written images."""
    done = done.copy()
    done["split"] = NO_SPLIT
    if mode != NO_SPLIT:
        for cls, group in done.groupby("class", sort=True):
            done.loc[group.index, "split"] = draw_split(group["name"].tolist(), fractions, seed, cls)
    done["dest"] = [(Path(cls) if s == NO_SPLIT else Path(s, cls)).joinpath(n).as_posix()
                    for cls, s, n in zip(done["class"], done["split"], done["name"])]
    return done


def move_into_place(done: pd.DataFrame, stage: Path) -> None:
    """Rename each written PNG from the work folder to its split folder, then drop the work folder."""
    for name, cls, dest in zip(done["name"], done["class"], done["dest"]):
        (stage / dest).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / WORK_DIR / cls / name, stage / dest)
    shutil.rmtree(stage / WORK_DIR)


def prepare_images(in_dir, out_dir, size=DEFAULT_SIZE, interpolation="bicubic", split="random",
                   fractions=DEFAULT_FRACTIONS, seed=0, workers=None, rescale=None, overwrite=False) -> dict:
    """Resize every image of ``in_dir/<class>/`` into ``out_dir`` (see the module doc); returns the summary.

    The summary (also prep.json) holds the settings, ``written``, ``skipped`` and the count per class and split.
    """
    in_dir, out_dir = Path(str(in_dir)), Path(str(out_dir))  # fire turns a folder named 2019 into an int
    wh = parse_size(size)
    if interpolation not in FILTERS:
        raise UserError(f"filter must be one of {list(FILTERS)}, got {interpolation!r}")
    mode, fractions, rescale = parse_split(split), parse_fractions(fractions), parse_rescale(rescale)
    check_out_dir(out_dir, in_dir, overwrite)  # before listing: a refusal should not wait for a large input
    images = find_images(in_dir)

    with staged_dir(out_dir) as stage:
        jobs, table = make_jobs(images, stage, wh, FILTERS[interpolation], rescale)
        table["problem"] = run_jobs(resize_one, jobs, workers, desc="resize")
        skipped = table[table["problem"].notna()].rename(columns={"source": "path", "problem": "reason"})
        for cls in images:
            if (skipped["class"] == cls).sum() == len(images[cls]):
                raise DataError(f"class folder {in_dir / cls}: none of its images could be read "
                                f"(first: {skipped[skipped['class'] == cls]['reason'].iloc[0]})")
        done = assign_dest(table[table["problem"].isna()], mode, fractions, seed)
        move_into_place(done, stage)
        names = SPLITS if mode != NO_SPLIT else (NO_SPLIT,)
        summary = {
            "in_dir": str(in_dir.absolute()), "size": list(wh), "filter": interpolation, "split": mode,
            "fractions": list(fractions) if mode != NO_SPLIT else None, "seed": seed, "rescale": rescale,
            "split_rule": SPLIT_RULE if mode != NO_SPLIT else None,
            "written": len(done), "skipped": len(skipped),
            "counts": {cls: {s: int(((done["class"] == cls) & (done["split"] == s)).sum()) for s in names}
                       for cls in images},
        }
        fsutil.write_csv(done[["source", "dest", "class", "split"]], stage / SPLIT_CSV)
        fsutil.write_csv(skipped[["path", "reason"]], stage / SKIPPED_CSV)
        fsutil.write_text(json.dumps(summary, indent=2) + "\n", stage / PREP_JSON)
    if len(skipped):
        log.warning("skipped %d unreadable image(s); see %s", len(skipped), out_dir / SKIPPED_CSV)
    return summary
