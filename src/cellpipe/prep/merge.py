"""Seed 001's data preparation: several species-folder trees merged into one tree of symbolic links.

    <source>/<Species>/<image>  ->  <out_root>/image_folder/<Species>/<image>  (a link to the absolute path)

The same species in several sources becomes one folder. A file name that occurs in more than
one source of a species is prefixed with its source folder's name (``source_a__1.png``), on
every copy, so no link hides another. Every image is decoded (``read_image``, plus the JPEG
end-marker check of ``prep.resize.image_problem``); a corrupt, truncated or empty file is left
out of the tree and listed in hidden.csv (path, reason). image_folder_counts.csv lists the
images per species. Bundling rare species into ``Other`` happens at training
(``data_params/min_samples``); here ``min_samples`` only names the species below it.

The tree is built in a hidden folder beside the old one and swapped in by rename
(``core.fsutil.staged_dir``): a half-built tree is never in place, and a re-run replaces
the tree whole.
"""
import logging
import os
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import pandas as pd

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError, UserError
from cellpipe.core.fsutil import staged_dir
from cellpipe.core.parallel import run_jobs
from cellpipe.prep.resize import class_folders, image_problem, list_images

log = logging.getLogger(__name__)

OUT_NAME = "image_folder"
HIDDEN_CSV = "hidden.csv"
PREFIX_SEP = "__"  # source name + this + file name, for a name that several sources share


class Image(NamedTuple):
    """One image file of one source: ``source`` is the index in the source list."""
    source: int
    species: str
    path: Path


def check_sources(sources: Sequence, target: Path) -> List[Path]:
    """Source folders as Paths; each must exist, and none may overlap the tree that will be replaced."""
    if not sources:
        raise UserError("give at least one source folder (OUT_ROOT SOURCE [SOURCE ...])")
    paths = [Path(str(s)) for s in sources]  # fire turns a folder named 2019 into an int
    t, seen = target.resolve(), set()
    for p in paths:
        if not p.is_dir():
            raise DataError(f"source folder not found: {p}")
        r = p.resolve()
        if r == t or t in r.parents or r in t.parents:
            raise DataError(f"source folder {p} and the output tree {target} must not contain each other")
        if r in seen:
            raise DataError(f"source folder {p} is given twice")
        seen.add(r)
    return paths


def check_replaceable(target: Path) -> None:
    """Refuse to replace a ``target`` that holds real files: only a link tree made here may be swapped out."""
    if not target.exists():
        return
    if not target.is_dir():
        raise DataError(f"{target} exists and is not a folder")
    for folder, _dirs, files in os.walk(target):
        real = [f for f in files if not os.path.islink(os.path.join(folder, f))]
        if real:
            raise DataError(f"{target} holds real files (e.g. {os.path.join(folder, real[0])}), not only links "
                            f"made by merge_folders; refusing to replace it")


def find_images(sources: Sequence[Path]) -> List[Image]:
    """Every image of ``<source>/<Species>/``, in source order then species and file name."""
    found = []
    for i, source in enumerate(sources):
        mine = [Image(i, folder.name, path) for folder in class_folders(source) for path in list_images(folder)]
        if not mine:
            raise DataError(f"source folder {source} has no images in species sub-folders "
                            f"(expected <source>/<Species>/<image>)")
        found += mine
    return found


def check_one(path: str) -> Optional[str]:
    """None for a readable image, else the reason (runs in a pool worker)."""
    return image_problem(path)[1]


def prefixes(sources: Sequence[Path]) -> List[str]:
    """Each source's folder name; a name shared by several sources gets ``-2``, ``-3``... on its repeats."""
    out = []
    for s in sources:
        name, k = s.name, 2
        while name in out:
            name, k = f"{s.name}-{k}", k + 1
        out.append(name)
    return out


def link_names(images: Sequence[Image], prefix: Sequence[str]) -> Dict[Image, str]:
    """The link name of each image: its own file name, or ``<source>__<name>`` where sources clash."""
    names: Dict[Image, str] = {}
    by_species: Dict[str, List[Image]] = {}
    for im in images:
        by_species.setdefault(im.species, []).append(im)
    for group in by_species.values():
        count = pd.Series([im.path.name for im in group]).value_counts()
        taken = {im.path.name for im in group if count[im.path.name] == 1}  # kept names first: no prefix steals one
        for im in group:
            name = im.path.name
            if count[name] > 1:
                name, k = f"{prefix[im.source]}{PREFIX_SEP}{im.path.name}", 2
                while name in taken:  # only if such a prefixed name already exists as a file
                    name, k = f"{prefix[im.source]}{PREFIX_SEP}{k}{PREFIX_SEP}{im.path.name}", k + 1
            taken.add(name)
            names[im] = name
    return names


def build_tree(stage: Path, names: Dict[Image, str]) -> None:
    """One symbolic link per image, ``stage/<Species>/<name>`` -> the image's absolute path."""
    for im, name in names.items():
        (stage / im.species).mkdir(exist_ok=True)
        os.symlink(os.path.abspath(im.path), stage / im.species / name)


def species_counts(images: Sequence[Image], linked: Sequence[Image]) -> pd.DataFrame:
    """species, n_images (linked), sorted by species; a species whose every image is hidden counts 0."""
    n = pd.Series([im.species for im in linked], dtype=object).value_counts()
    species = sorted({im.species for im in images})
    return pd.DataFrame({"species": species, "n_images": [int(n.get(s, 0)) for s in species]})


def merge_folders(out_root, sources: Sequence, out_name: str = OUT_NAME, min_samples: int = 0,
                  workers: Optional[int] = None) -> dict:
    """Build ``out_root/out_name`` from ``sources`` (see the module doc); returns the summary.

    Summary keys: tree, linked, hidden, species, renamed (prefixed links), below_min_samples.
    """
    out_root = Path(str(out_root))
    target = out_root / str(out_name)
    paths = check_sources(sources, target)
    check_replaceable(target)
    images = find_images(paths)
    problems = run_jobs(check_one, [str(im.path) for im in images], workers, desc="check")
    linked = [im for im, problem in zip(images, problems) if problem is None]
    hidden = pd.DataFrame({"path": [os.path.abspath(im.path) for im, p in zip(images, problems) if p],
                           "reason": [p for p in problems if p]})
    names = link_names(linked, prefixes(paths))
    with staged_dir(target) as stage:
        build_tree(stage, names)
    counts = species_counts(images, linked)
    fsutil.write_csv(hidden, out_root / HIDDEN_CSV)
    fsutil.write_csv(counts, out_root / f"{out_name}_counts.csv")
    below = counts[counts["n_images"] < int(min_samples)]["species"].tolist()
    if len(hidden):
        log.warning("hid %d unreadable image(s); see %s", len(hidden), out_root / HIDDEN_CSV)
    return {"tree": str(target), "linked": len(linked), "hidden": len(hidden), "species": len(counts),
            "renamed": sum(name != im.path.name for im, name in names.items()), "below_min_samples": below}


def summary_text(summary: dict, min_samples: int) -> str:
    """The summary as lines a person reads."""
    lines = [f"linked {summary['linked']} image(s) of {summary['species']} species into {summary['tree']} "
             f"({summary['renamed']} prefixed for a name clash); hid {summary['hidden']} unreadable"]
    if min_samples:
        below = summary["below_min_samples"]
        lines.append(f"{len(below)} species below min_samples={min_samples} (bundled into Other at training)"
                     + (f": {', '.join(below)}" if below else ""))
    return "\n".join(lines)
