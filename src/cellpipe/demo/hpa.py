"""A tiny Human Protein Atlas-like set (seed 004) in Kaggle's layout: 4 stains, multi-label, skewed.

Each image holds a few cells: nuclei (blue), a microtubule ring (red) and ER (yellow) around
each. The protein stain (green) is the sum of the image's classes' localisation patterns
(nucleus, nucleoli dots, microtubule ring, ER, membrane ring, cytoplasmic dots, one
aggresome, diffuse cytosol, nuclear membrane, centrosome), each at a random strength, on noise and a
per-image gain. With ``distractors`` > 0 the red and yellow stains also show one unlabelled
pattern each (a model must learn that only green carries the labels); ``margin`` is how close to
the image border cell centres may lie (0.05: objects near corners, cut by a 5-crop).
Class frequencies fall off geometrically (the rarest class in a few percent of images), and
a share of the training images get a near-duplicate copy (a slightly noisier re-scan under
another Id) for the dedup step to find. Test labels go to ``test_truth.csv`` (id, label; never
read by training or prediction) so that the demo's ensemble can report a held-out score.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from cellpipe.core import fsutil

STAINS = ("red", "green", "blue", "yellow")
N_PATTERNS = 10
# make_demo_data --kind hpa --preset hard: the per-kind benchmark's multi-label set (bench/bench_kinds.py)
PRESETS = {"hard": {"n_train": 1000, "n_test": 400, "size": 64, "n_classes": 10, "decay": 0.75, "noise": 14.0,
                    "distractors": 0.8, "margin": 0.05}}


def _cells(rng, size: int, margin: float):
    n = rng.integers(2, 5)
    return rng.uniform(margin * size, (1 - margin) * size, (n, 2))


def _blob(yy, xx, cy, cx, sigma):
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def _ring(yy, xx, cy, cx, radius, width):
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.exp(-((r - radius) ** 2) / (2 * width ** 2))


def render(rng, active, size: int, noise: float, distractors: float = 0.0, margin: float = 0.2):
    """H x W x 4 (red, green, blue, yellow) in 0..255 for the set of active classes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    s = size / 64
    cells = _cells(rng, size, margin)
    red, blue, yellow = (np.zeros((size, size), np.float32) for _ in range(3))
    patterns = np.zeros((N_PATTERNS, size, size), np.float32)
    for cy, cx in cells:
        nucleus = _blob(yy, xx, cy, cx, 4 * s)
        blue += nucleus
        red += _ring(yy, xx, cy, cx, 9 * s, 1.5 * s)
        er = _blob(yy, xx, cy, cx, 8 * s) - 0.6 * nucleus
        yellow += er
        patterns[0] += nucleus                                        # nucleoplasm
        for _ in range(2):                                            # nucleoli
            dy, dx = rng.normal(0, 1.5 * s, 2)
            patterns[1] += _blob(yy, xx, cy + dy, cx + dx, 1.0 * s)
        patterns[2] += _ring(yy, xx, cy, cx, 9 * s, 1.5 * s)          # microtubules (= red)
        patterns[3] += er                                             # endoplasmic reticulum (= yellow)
        patterns[4] += _ring(yy, xx, cy, cx, 13 * s, 1.0 * s)         # plasma membrane
        for _ in range(5):                                            # mitochondria: dots in the cytoplasm
            a, r = rng.uniform(0, 2 * np.pi), rng.uniform(6, 11) * s
            patterns[5] += _blob(yy, xx, cy + r * np.sin(a), cx + r * np.cos(a), 0.8 * s)
        patterns[7] += _blob(yy, xx, cy, cx, 12 * s)                  # cytosol, diffuse
        patterns[8] += _ring(yy, xx, cy, cx, 4.5 * s, 0.8 * s)        # nuclear membrane
        a = rng.uniform(0, 2 * np.pi)                                 # centrosome: a dot pair by the nucleus
        for d in (5.5, 6.5):
            patterns[9] += 1.5 * _blob(yy, xx, cy + d * s * np.sin(a), cx + d * s * np.cos(a), 0.9 * s)
    cy, cx = cells[rng.integers(len(cells))]
    patterns[6] += 2.5 * _blob(yy, xx, cy + 5 * s, cx + 5 * s, 1.8 * s)  # one aggresome per image
    def unit(k):
        return patterns[k] / max(patterns[k].max(), 1e-6)

    green = sum(unit(k) * rng.uniform(0.35, 1.0) for k in active)
    red, yellow = red / red.max(), np.clip(yellow, 0, None) / yellow.max()
    if distractors:  # an unlabelled pattern in each reference stain
        red = red + distractors * unit(rng.integers(N_PATTERNS))
        yellow = yellow + distractors * unit(rng.integers(N_PATTERNS))
    img = np.stack([red, green, blue / blue.max(), yellow], -1)
    img = img * rng.uniform(90, 170) * rng.lognormal(0, 0.15, 4) + 10
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 255)


def draw_labels(rng, n: int, n_classes: int, decay: float):
    """Each image: every class with its own probability (geometric fall-off), at least one class."""
    prevalence = 0.45 * decay ** np.arange(n_classes)
    out = []
    for _ in range(n):
        hits = np.flatnonzero(rng.random(n_classes) < prevalence)
        if not len(hits):
            hits = [rng.choice(n_classes, p=prevalence / prevalence.sum())]
        out.append(sorted(int(k) for k in hits))
    return out


def write_hpa(out: Path, seed=0, n_train=360, n_test=120, size=64, n_classes=8, decay=0.7,
              noise=10.0, duplicates=0.08, distractors=0.0, margin=0.2) -> Path:
    """train.csv, train/{Id}_{stain}.png, sample_submission.csv, test/, and test_truth.csv."""
    if not 1 <= n_classes <= N_PATTERNS:
        raise ValueError(f"n_classes must be 1-{N_PATTERNS}")
    rng = np.random.default_rng(seed)
    out = Path(out)

    def save(folder, sid, img):
        for k, stain in enumerate(STAINS):
            fsutil.write_png(np.rint(img[..., k]).astype(np.uint8), out / folder / f"{sid}_{stain}.png")

    rows, test_rows = [], []
    for i, active in enumerate(draw_labels(rng, n_train, n_classes, decay)):
        sid = f"tr{i:05d}"
        img = render(rng, active, size, noise, distractors, margin)
        save("train", sid, img)
        rows.append({"Id": sid, "Target": " ".join(map(str, active))})
        if rng.random() < duplicates:  # a re-scan of the same field: same content, new noise
            dup = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255)
            save("train", f"{sid}d", dup)
            rows.append({"Id": f"{sid}d", "Target": rows[-1]["Target"]})
    for i, active in enumerate(draw_labels(rng, n_test, n_classes, decay)):
        sid = f"te{i:05d}"
        save("test", sid, render(rng, active, size, noise, distractors, margin))
        test_rows.append({"id": sid, "label": " ".join(map(str, active))})
    fsutil.write_csv(pd.DataFrame(rows), out / "train.csv")
    fsutil.write_csv(pd.DataFrame({"Id": [r["id"] for r in test_rows], "Predicted": "0"}),
                     out / "sample_submission.csv")
    fsutil.write_csv(pd.DataFrame(test_rows), out / "test_truth.csv")
    return out
