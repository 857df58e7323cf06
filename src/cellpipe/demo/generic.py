"""Tiny generated data sets in each adapter's own format (manifest, folder, phenix, rxrx1_2020).

Each class has a fixed per-channel brightness profile and blob size; every image
draws a few Gaussian blobs at random places on a noisy background, with a random
per-group gain (a batch effect), so a model must learn the profile, not the
position. ``hard`` (0..1) shrinks the class differences towards each other. The ``hard``
preset of the manifest (the per-kind benchmark's single-label set) has 10 classes at 0.8.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from cellpipe.core import fsutil
from cellpipe.core.tables import write_table

KINDS = ("manifest", "folder", "phenix", "rxrx1_2020")
PRESETS = {"hard": {"n_classes": 10, "per_class": 400, "size": 32, "hard": 0.8}}


def class_profiles(rng, n_classes: int, n_channels: int, hard: float) -> dict:
    base = rng.uniform(60, 160, n_channels)
    amp = base + (1 - hard) * rng.uniform(-50, 80, (n_classes, n_channels))
    return {"amp": np.clip(amp, 10, 230), "sigma": 1.5 + (1 - hard) * rng.uniform(0, 2.5, n_classes)}


def render(rng, label: int, profiles: dict, size: int, gain: float, noise: float = 8.0) -> np.ndarray:
    """One H x W x C float image in 0..255 units."""
    n_ch = profiles["amp"].shape[1]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.full((size, size, n_ch), 12.0, np.float32)
    sigma = profiles["sigma"][label] * size / 32
    for _ in range(rng.integers(3, 7)):
        cy, cx = rng.uniform(0, size, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        img += blob[..., None] * profiles["amp"][label] * rng.lognormal(0, 0.15, n_ch)
    img = img * gain + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255)


def samples(seed: int, n_classes: int, per_class: int, n_channels: int, size: int, n_groups: int, hard: float):
    """(images, labels, groups) with labels as class names c0, c1, ..."""
    rng = np.random.default_rng(seed)
    profiles = class_profiles(rng, n_classes, n_channels, hard)
    gains = rng.lognormal(0, 0.2, n_groups)
    labels = np.repeat(np.arange(n_classes), per_class)
    rng.shuffle(labels)
    groups = np.arange(len(labels)) % n_groups
    images = [render(rng, int(lab), profiles, size, gains[g]) for lab, g in zip(labels, groups)]
    return images, [f"c{int(lab)}" for lab in labels], groups


def _png(img: np.ndarray, path: Path) -> None:
    out = np.rint(img).astype(np.uint8)
    if out.shape[-1] == 3:
        out = out[..., ::-1]  # OpenCV writes BGR
    fsutil.write_png(out if out.shape[-1] in (3, 1) else out[..., 0], path)


def _splits(n: int, rng) -> np.ndarray:
    """70 / 15 / 15 percent train / valid / test, shuffled."""
    s = np.array(["train"] * n, dtype=object)
    idx = rng.permutation(n)
    s[idx[: int(0.15 * n)]] = "valid"
    s[idx[int(0.15 * n): int(0.3 * n)]] = "test"
    return s


def write_manifest(out: Path, seed=0, n_classes=4, per_class=24, size=32, hard=0.3, parquet=True) -> Path:
    """Seed 000's manifest: RGB PNGs + manifest.parquet (img_path, split_set, label, is_gt, group)."""
    images, labels, groups = samples(seed, n_classes, per_class, 3, size, 4, hard)
    split = _splits(len(images), np.random.default_rng(seed + 1))
    names = {"train": "TRAIN", "valid": "VAL", "test": "TEST"}
    rows = []
    for i, (img, lab, g, s) in enumerate(zip(images, labels, groups, split)):
        rel = f"images/{lab}_{i:04d}.png"
        _png(img, out / rel)
        rows.append({"img_path": rel, "split_set": names[s], "label": lab, "is_gt": True, "group": f"g{g}"})
    path = out / ("manifest.parquet" if parquet else "manifest.csv")
    write_table(pd.DataFrame(rows), path)
    return path


def write_folder(out: Path, seed=0, n_classes=4, per_class=24, size=32, hard=0.3, split_folders=True) -> Path:
    """Class sub-folders (seed 001), or training/validation/test/<class>/ split folders (seed 003)."""
    images, labels, _ = samples(seed, n_classes, per_class, 3, size, 4, hard)
    split = _splits(len(images), np.random.default_rng(seed + 1))
    folders = {"train": "training", "valid": "validation", "test": "test"}
    for i, (img, lab, s) in enumerate(zip(images, labels, split)):
        sub = Path(folders[s]) / lab if split_folders else Path(lab)
        _png(img, out / sub / f"{i:04d}.png")
    return out


def write_phenix(out: Path, seed=0, n_classes=4, per_class=12, size=32, hard=0.3, fields=2, channels=3) -> Path:
    """Opera Phenix files (16-bit TIFF per well/field/channel) + platemap.csv (well, label, split)."""
    import tifffile

    images, labels, _ = samples(seed, n_classes, per_class * fields, channels, size, 1, hard)
    n_wells = n_classes * per_class
    rng = np.random.default_rng(seed + 1)
    split = _splits(n_wells, rng)
    rows = []
    for w in range(n_wells):
        r, c = 1 + w // 12, 1 + w % 12
        well = f"{chr(ord('A') + r - 1)}{c:02d}"
        label = labels[w * fields]
        for f in range(1, fields + 1):
            # each field of a well draws its own image of the well's class
            img = images[[i for i, lab in enumerate(labels) if lab == label][(w * fields + f) % per_class]]
            for ch in range(1, channels + 1):
                deep = (img[..., ch - 1] * 200 + 1000).astype(np.uint16)  # 16-bit camera range
                path = out / "Images" / f"r{r:02d}c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff"
                with fsutil.atomic_path(path) as tmp:
                    tifffile.imwrite(tmp, deep)
        rows.append({"well": well, "label": label, "split": split[w]})
    fsutil.write_csv(pd.DataFrame(rows), out / "platemap.csv")
    return out


def write_rxrx1_2020(out: Path, seed=0, n_classes=4, per_class=24, size=32, hard=0.3) -> Path:
    """The 2020 RxRx1 release: metadata.csv + images/{experiment}/Plate{p}/{well}_s{site}_w{ch}.png.
    Experiment HUVEC-04 is the test set; each experiment has its own channel gain (a batch effect)."""
    images, labels, _ = samples(seed, n_classes, per_class * 2, 6, size, 1, hard)
    exp_gain = np.random.default_rng(seed + 2).lognormal(0, 0.2, (4, 6))
    rows = []
    n_wells = n_classes * per_class
    for w in range(n_wells):
        exp_num = w % 4
        experiment = f"HUVEC-{exp_num + 1:02d}"
        plate, well = 1, f"{chr(ord('B') + w // 22)}{2 + w % 22:02d}"
        label = int(labels[2 * w][1:])
        for site in (1, 2):
            img = images[2 * w + site - 1]
            img_label = int(labels[2 * w + site - 1][1:])
            if img_label != label:  # both sites must show the well's class
                idx = [i for i, lab in enumerate(labels) if lab == labels[2 * w]][site]
                img = images[idx]
            img = np.clip(img * exp_gain[exp_num], 0, 255)
            for ch in range(1, 7):
                path = out / "images" / experiment / f"Plate{plate}" / f"{well}_s{site}_w{ch}.png"
                fsutil.write_png(np.rint(img[..., ch - 1]).astype(np.uint8), path)
            rows.append({"site_id": f"{experiment}_{plate}_{well}_{site}", "well_id": f"{experiment}_{plate}_{well}",
                         "cell_type": "HUVEC", "dataset": "test" if exp_num == 3 else "train",
                         "experiment": experiment, "plate": plate, "well": well, "site": site,
                         "well_type": "treatment", "sirna": f"s{1000 + label}", "sirna_id": label})
    fsutil.write_csv(pd.DataFrame(rows), out / "metadata.csv")
    return out


WRITERS = {"manifest": write_manifest, "folder": write_folder, "phenix": write_phenix, "rxrx1_2020": write_rxrx1_2020}


def _more_writers():
    # the multi-label and hierarchy sets live in their own modules
    from cellpipe.demo.hpa import write_hpa
    from cellpipe.demo.moths import write_moths

    return {"hpa": write_hpa, "moths": write_moths}


WRITERS.update(_more_writers())
KINDS = tuple(WRITERS)


def presets(kind: str) -> dict:
    """The writer's named presets (``make_demo_data --kind K --preset hard``)."""
    from cellpipe.demo import hpa, moths

    return {"manifest": PRESETS, "folder": PRESETS, "hpa": hpa.PRESETS, "moths": moths.PRESETS}.get(kind, {})
