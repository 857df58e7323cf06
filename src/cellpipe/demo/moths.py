"""A tiny moth set (seed 001): species image folders plus the hierarchy file ``family.csv``.

Families set the wing colour, genera the wing shape (elongation), species the number and
size of wing spots, so coarser levels are easier than species, as in real moths. One
species is rare (fewer images than the demo's min_samples) and one is missing from
family.csv: both must end up in ``Other`` at every level. family.csv is seed 001's format:
semicolon-separated, quoted, ``speciesName;nederNaam;group;family;genus``. The ``hard`` preset
(the per-kind benchmark's) has three species per genus that differ by one spot and a little
spot size, and training/validation/test split folders so that a test split is held out.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from cellpipe.core import fsutil

# family -> wing colour (RGB); genus -> (family, elongation, group); species -> (genus, spots, spot size)
FAMILIES = {"Noctuidae": (150, 110, 70), "Geometridae": (90, 130, 160)}
GENERA = {"Noctua": ("Noctuidae", 1.0, "macro"), "Agrotis": ("Noctuidae", 2.0, "macro"),
          "Idaea": ("Geometridae", 1.0, "micro"), "Eupithecia": ("Geometridae", 2.0, "micro")}
SPECIES = {"Noctua pronuba": ("Noctua", 1, 3.0), "Noctua comes": ("Noctua", 4, 1.5),
           "Agrotis exclamationis": ("Agrotis", 1, 3.0), "Agrotis segetum": ("Agrotis", 4, 1.5),
           "Idaea aversata": ("Idaea", 1, 3.0), "Idaea dimidiata": ("Idaea", 4, 1.5),
           "Eupithecia centaureata": ("Eupithecia", 1, 3.0), "Eupithecia pusillata": ("Eupithecia", 4, 1.5)}
RARE = ("Noctua fimbriata", ("Noctua", 2, 2.2))        # too few images: bundled into Other
UNLISTED = ("Mythimna albipuncta", ("Agrotis", 2, 2.2))  # not in family.csv: Other at every level
# confusable: within a genus the species differ by one spot and ~0.4 px of spot size
HARD_SPECIES = {f"{genus} {epithet}": (genus, spots, size) for genus in GENERA
                for epithet, spots, size in (("alpha", 2, 2.6), ("beta", 3, 2.2), ("gamma", 4, 1.9))}
PRESETS = {"hard": {"per_species": 160, "rare": 8, "size": 48, "noise": 22.0, "species": "hard", "split_folders": True}}
SPLIT_FOLDERS = (("training", 0.6), ("validation", 0.2), ("test", 0.2))


def render(rng, species: tuple, size: int, noise: float) -> np.ndarray:
    genus, spots, spot_size = species
    family, elong, _ = GENERA[genus]
    colour = np.asarray(FAMILIES[family], np.float32) * rng.uniform(0.8, 1.2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    scale = rng.uniform(0.28, 0.36)
    wing = np.exp(-((u / scale) ** 2 + (v * elong / scale) ** 2) * 3)
    img = 40 + wing[..., None] * colour[None, None]
    for _ in range(spots):
        t = rng.uniform(-0.6, 0.6) * scale
        cy, cx = 0.5 + t * np.sin(angle), 0.5 + t * np.cos(angle)
        d2 = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2
        img -= 90 * np.exp(-d2 / (2 * (spot_size / size * rng.uniform(0.8, 1.2)) ** 2))[..., None]
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 255)


def _folder(i: int, n: int, split_folders: bool) -> str:
    if not split_folders:
        return "image_folder"
    edges = np.cumsum([share for _, share in SPLIT_FOLDERS]) * n
    return SPLIT_FOLDERS[int(np.searchsorted(edges, i, side="right"))][0]


def write_moths(out: Path, seed=0, per_species=40, rare=4, size=48, noise=14.0, species="demo",
                split_folders=False) -> Path:
    """image_folder/<species>/<n>.png (or training|validation|test/<species>/) and family.csv; returns ``out``."""
    table = {"demo": SPECIES, "hard": HARD_SPECIES}[species]
    rng = np.random.default_rng(seed)
    out = Path(out)
    plan = [(name, sp, per_species) for name, sp in table.items()]
    plan += [(RARE[0], RARE[1], rare), (UNLISTED[0], UNLISTED[1], per_species // 2)]
    for name, sp, n in plan:
        for i in range(n):
            img = np.rint(render(rng, sp, size, noise)).astype(np.uint8)[..., ::-1]  # OpenCV writes BGR
            fsutil.write_png(img, out / _folder(i, n, split_folders) / name / f"{i:04d}.png")
    listed = list(table.items()) + [RARE]
    rows = [{"speciesName": name, "nederNaam": f"nl {name.split()[1]}", "group": GENERA[sp[0]][2],
             "family": GENERA[sp[0]][0], "genus": sp[0]} for name, sp in listed]
    with fsutil.atomic_path(out / "family.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep=";", index=False, quoting=1)  # csv.QUOTE_ALL, as seed 001's file
    return out
