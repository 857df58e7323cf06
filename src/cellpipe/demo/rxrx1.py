"""Generate a small synthetic data set in the exact RxRx1 Kaggle layout.

The demo lets the whole pipeline (folds, training, pseudo-labels, per-plate
assignment) run end to end in minutes on a CPU. It copies the structure that
matters: 4 disjoint siRNA groups, one group plus every control per plate,
plates with a dropped well, labelled test controls, and batch effects per
experiment (channel gain), plate (channel offset) and cell type, so that
per-plate normalisation pays off as on the real data.

Each siRNA (treatment or control) has a fixed 6-channel brightness profile
and a cell shape (count, size, elongation, orientation); a site shows that
many Gaussian "cells" on a dark, noisy background. Channels 1 and 4 draw the
nucleus, the others the larger cell body, so every channel carries the class
and any one of them can be dropped.

Besides the Kaggle files it writes ``test_labels.csv``: the test siRNAs the
real data set hides, so demo predictions can be scored.
"""
import inspect
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cellpipe.core import fsutil
from cellpipe.sources import rxrx1 as rxrx

log = logging.getLogger(__name__)

CELL_TYPES = ("HEPG2", "HUVEC", "RPE", "U2OS")
N_GROUPS = 4  # siRNA groups = plates per experiment
PLATE_ROWS = "BCDEFGHIJKLMNO"  # the 384-well wells the real data uses
PLATE_COLS = range(2, 24)
WELL_NAMES = [f"{r}{c:02d}" for r in PLATE_ROWS for c in PLATE_COLS]
NUCLEAR_CHANNELS = (1, 4)  # Hoechst and Syto14 stain the nucleus
CHUNK_CELL_PIXELS = 2 ** 21  # cells x pixels rendered per vectorised batch (bounds memory)


def cell_type_names(n: int):
    return list(CELL_TYPES[:n]) + [f"CT{i + 1}" for i in range(len(CELL_TYPES), n)]


# the hard benchmark (issue 8): many classes, weak class signal under well-to-well noise, strong
# experiment / plate batch effects and cell-type-specific responses; flags left at their defaults take these
PRESETS = {
    "hard": {"n_sirnas": 64, "signal": 0.3, "well_noise": 0.3, "response": 0.25, "exp_gain": 0.45,
             "plate_offset": 35.0, "train_experiments_per_type": 3},
}


def class_params(rng, n_classes: int, scale: float, signal: float = 1.0) -> dict:
    """Fixed look of every siRNA; lengths in pixels at the output size. ``signal`` < 1 pulls every
    class towards the mean look (weaker class differences; the draws themselves are unchanged)."""
    params = {
        "amp": rng.uniform(25, 170, size=(n_classes, len(rxrx.CHANNELS))),
        "count": rng.integers(3, 11, size=n_classes),
        "sigma": rng.uniform(1.2, 2.8, size=n_classes) * scale,
        "body": rng.uniform(1.6, 2.8, size=n_classes),  # body sigma / nucleus sigma
        "elong": rng.uniform(1.0, 2.2, size=n_classes),
        "angle": rng.uniform(0, np.pi, size=n_classes),
    }
    if signal != 1.0:
        for key in ("amp", "sigma", "body", "elong"):
            mean = params[key].mean(axis=0)
            params[key] = mean + signal * (params[key] - mean)
        params["count"] = np.rint(params["count"].mean() + signal * (params["count"] - params["count"].mean()))
        params["count"] = params["count"].astype(np.int64)
    return params


def plate_layout(rng, n_sirnas, n_controls, cell_types, train_per_type, test_per_type, drop_wells,
                 negative_wells: int = 1):
    """Table of every well: dataset, experiment, cell_type, plate, well, sirna, well_type. The
    negative control fills ``negative_wells`` wells of every plate (the replicates that profile
    corrections are fitted on); every other control one."""
    groups = rng.permutation(n_sirnas).reshape(N_GROUPS, -1)
    controls = np.concatenate([np.arange(n_sirnas, n_sirnas + n_controls - 1),
                               np.full(negative_wells, n_sirnas + n_controls - 1)])
    rows = []
    for dataset, first, count in (("train", 1, train_per_type), ("test", train_per_type + 1, test_per_type)):
        for ct in cell_type_names(cell_types):
            for num in range(first, first + count):
                experiment = f"{ct}-{num:02d}"
                for plate, g in enumerate(rng.permutation(N_GROUPS), start=1):
                    sirnas = np.concatenate([groups[g], controls])
                    wells = rng.choice(len(WELL_NAMES), size=len(sirnas), replace=False)
                    for s, w in zip(sirnas, wells):
                        rows.append((dataset, experiment, ct, plate, WELL_NAMES[w], int(s)))
    df = pd.DataFrame(rows, columns=["dataset", "experiment", "cell_type", "plate", "well", "sirna"])
    df["well_type"] = "treatment"
    # the last control plays the untreated negative control, as 1138 does in RxRx1
    df.loc[df.sirna >= n_sirnas, "well_type"] = "positive_control"
    df.loc[df.sirna == n_sirnas + n_controls - 1, "well_type"] = "negative_control"
    if drop_wells:
        # real plates hold 276-277 of their group's 277 siRNAs
        plates = df[["dataset", "experiment", "plate"]].drop_duplicates()
        train_plates = plates[plates.dataset == "train"]
        targets = [plates[plates.dataset == "test"].iloc[0],
                   train_plates.iloc[rng.integers(len(train_plates))]]
        for t in targets:
            on_plate = df[(df.experiment == t.experiment) & (df.plate == t.plate) & (df.well_type == "treatment")]
            df = df.drop(rng.choice(on_plate.index, size=drop_wells, replace=False))
    return df.sort_values(["dataset", "experiment", "plate", "well"]).reset_index(drop=True)


def batch_effects(rng, df, cell_types, n_classes: int, seed: int, exp_gain: float = 0.25,
                  plate_offset: float = 20.0, response: float = 0.0) -> dict:
    """Per cell type and experiment channel gains, per plate channel offsets, and (``response`` > 0)
    per cell type and class brightness factors: a siRNA looks different in each cell type."""
    n_ch = len(rxrx.CHANNELS)
    types = cell_type_names(cell_types)
    plates = df[["experiment", "plate"]].drop_duplicates().itertuples(index=False)
    effects = {
        "type_gain": {t: rng.lognormal(0, 0.15, n_ch) for t in types},
        "type_size": {t: rng.uniform(0.85, 1.15) for t in types},
        "exp_gain": {e: rng.lognormal(0, exp_gain, n_ch) for e in df.experiment.unique()},
        "plate_offset": {(p.experiment, p.plate): rng.uniform(0, plate_offset, n_ch) for p in plates},
    }
    # its own generator: the default (response 0) data stay what they were before this knob
    extra = np.random.default_rng([seed, 2])
    effects["type_response"] = {t: extra.lognormal(0, response, (n_classes, n_ch)) if response else None
                                for t in types}
    return effects


def vignette_map(rng, image_size: int, strength: float) -> np.ndarray:
    """A plate's illumination field (H x W, 1 at its brightest): a radial fall-off to 1 - strength at
    the field's corners, centred slightly off the image centre, as a microscope's optics give."""
    centre = image_size / 2 + rng.uniform(-0.1, 0.1, 2) * image_size
    yy, xx = np.mgrid[:image_size, :image_size].astype(np.float64)
    r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * (image_size / 2) ** 2)
    return 1.0 - strength * np.clip(r2, 0, 1)


def render_sites(rng, sirnas, params, size_scale, gain, offset, image_size, noise=4.0, background=8.0,
                 well_factor=None, vignette=None):
    """Render one site per entry of ``sirnas`` -> (S, 6, H, W) uint8; all sites share the batch effects;
    ``well_factor`` (S x 6) scales each site's brightness (the sites of one well share theirs);
    ``vignette`` (H x W) multiplies the light (cells and background) before the camera's offset."""
    n_sites = len(sirnas)
    max_cells = int(params["count"].max()) + 1
    counts = np.maximum(params["count"][sirnas] + rng.integers(-1, 2, n_sites), 1)
    active = np.arange(max_cells)[None, :] < counts[:, None]  # (S, K)
    pos = rng.uniform(0, image_size, size=(n_sites, max_cells, 2))
    sig = params["sigma"][sirnas, None] * size_scale * rng.lognormal(0, 0.1, (n_sites, max_cells))
    ang = params["angle"][sirnas, None] + rng.normal(0, 0.2, (n_sites, max_cells))
    elong = params["elong"][sirnas, None]
    # per-cell brightness jitter, independent per channel
    bright = params["amp"][sirnas, None, :] * rng.lognormal(0, 0.2, (n_sites, max_cells, len(rxrx.CHANNELS)))
    bright *= active[..., None]
    if well_factor is not None:
        bright *= well_factor[:, None, :]

    grid = np.arange(image_size, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    dy = yy.ravel()[None, None, :] - pos[..., 0, None]  # (S, K, HW)
    dx = xx.ravel()[None, None, :] - pos[..., 1, None]
    cos, sin = np.cos(ang)[..., None], np.sin(ang)[..., None]
    u = (dx * cos + dy * sin) / elong[..., None]
    v = (-dx * sin + dy * cos) * elong[..., None]
    r2 = (u * u + v * v) / (sig[..., None] ** 2)
    body_r2 = r2 / params["body"][sirnas, None, None] ** 2
    nucleus, body = np.exp(-0.5 * r2), np.exp(-0.5 * body_r2)

    img = np.empty((n_sites, len(rxrx.CHANNELS), image_size * image_size), dtype=np.float64)
    for i, ch in enumerate(rxrx.CHANNELS):
        shape = nucleus if ch in NUCLEAR_CHANNELS else body
        img[:, i] = np.einsum("sk,skp->sp", bright[..., i], shape)
    img = img + background
    if vignette is not None:
        img *= vignette.ravel()[None, None, :]
    img = img * gain[None, :, None] + offset[None, :, None]
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(n_sites, -1, image_size, image_size)


def write_images(out_dir, df, params, effects, seed, image_size, well_noise: float = 0.0, vignette: float = 0.0):
    """Render and write every site of every well, one plate at a time. ``well_noise``: lognormal
    sigma of a per-well, per-channel brightness factor (well-to-well biological variation);
    ``vignette``: the corner fall-off of each plate's illumination (drawn in 0.5..1 x vignette)."""
    n_images = 0
    chunk_sites = max(1, CHUNK_CELL_PIXELS // ((int(params["count"].max()) + 1) * image_size ** 2))
    plates = list(df.groupby(["dataset", "experiment", "plate"], sort=True))
    with tqdm(total=len(df) * len(rxrx.SITES), desc="demo images", unit="site") as bar:
        for plate_idx, ((dataset, experiment, plate), wells) in enumerate(plates):
            # one generator per plate keeps images independent of generation order
            rng = np.random.default_rng([seed, 1, plate_idx])
            ct = wells.cell_type.iloc[0]
            gain = effects["exp_gain"][experiment] * effects["type_gain"][ct]
            offset = effects["plate_offset"][(experiment, plate)]
            jobs = [(w, s) for w in wells.itertuples(index=False) for s in rxrx.SITES]
            response = effects["type_response"][ct]
            well_rng = np.random.default_rng([seed, 3, plate_idx])  # apart from rng: defaults stay as they were
            factors = {w.well: well_rng.lognormal(0, well_noise, len(rxrx.CHANNELS)) for w in wells.itertuples()}
            vig_rng = np.random.default_rng([seed, 4, plate_idx])
            field = vignette_map(vig_rng, image_size, vignette * vig_rng.uniform(0.5, 1.0)) if vignette else None
            for start in range(0, len(jobs), chunk_sites):
                chunk = jobs[start:start + chunk_sites]
                sirnas = np.array([w.sirna for w, _ in chunk])
                factor = None
                if well_noise or response is not None:
                    factor = np.stack([factors[w.well] if well_noise else np.ones(len(rxrx.CHANNELS))
                                       for w, _ in chunk])
                    if response is not None:
                        factor = factor * response[sirnas]
                imgs = render_sites(rng, sirnas, params, effects["type_size"][ct], gain, offset, image_size,
                                    well_factor=factor, vignette=field)
                for (w, site), img in zip(chunk, imgs):
                    for i, ch in enumerate(rxrx.CHANNELS):
                        fsutil.write_png(img[i], rxrx.image_path(out_dir, dataset, experiment, plate, w.well, site, ch))
                        n_images += 1
                bar.update(len(chunk))
    return n_images


def write_tables(out_dir, df):
    """The Kaggle CSVs (plus test_labels.csv, the demo's hidden truth)."""
    df = df.copy()
    df["id_code"] = rxrx.id_codes(df)
    wells = ["id_code", "experiment", "plate", "well"]
    treat = df[df.well_type == "treatment"]
    ctrl = df[df.well_type != "treatment"]
    train, test = treat[treat.dataset == "train"], treat[treat.dataset == "test"]
    fsutil.write_csv(train[wells + ["sirna"]], out_dir / "train.csv")
    fsutil.write_csv(test[wells], out_dir / "test.csv")
    fsutil.write_csv(test[wells + ["sirna"]], out_dir / "test_labels.csv")
    for dataset in rxrx.DATASETS:
        part = ctrl[ctrl.dataset == dataset][wells + ["sirna", "well_type"]]
        fsutil.write_csv(part, out_dir / f"{dataset}_controls.csv")
    fsutil.write_csv(pd.DataFrame({"id_code": test.id_code, "sirna": 0}), out_dir / "sample_submission.csv")
    return len(train), len(test), len(ctrl)


def check_args(n_sirnas, n_controls, cell_types, train_per_type, test_per_type, image_size, drop_wells,
               negative_wells=1, vignette=0.0):
    if n_sirnas < N_GROUPS or n_sirnas % N_GROUPS:
        raise rxrx.DataError(f"n_sirnas={n_sirnas} must be a positive multiple of {N_GROUPS} (one group per plate)")
    group = n_sirnas // N_GROUPS
    for name, value in (("n_controls", n_controls), ("cell_types", cell_types),
                        ("train_experiments_per_type", train_per_type),
                        ("test_experiments_per_type", test_per_type)):
        if value < 1:
            raise rxrx.DataError(f"{name}={value} must be at least 1")
    if negative_wells < 1:
        raise rxrx.DataError(f"negative_wells={negative_wells} must be at least 1")
    if not 0 <= vignette < 1:
        raise rxrx.DataError(f"vignette={vignette} must be in [0, 1) (the corners' loss of light)")
    n_wells = group + n_controls - 1 + negative_wells
    if n_wells > len(WELL_NAMES):
        raise rxrx.DataError(f"a plate needs {n_wells} wells but has {len(WELL_NAMES)} (n_sirnas={n_sirnas}, "
                             f"n_controls={n_controls}, negative_wells={negative_wells})")
    if not 0 <= drop_wells < group:
        raise rxrx.DataError(f"drop_wells={drop_wells} must be in 0..{group - 1} (group size {group})")
    if image_size < 16:
        raise rxrx.DataError(f"image_size={image_size} is below the minimum of 16")


def main(out_dir="data/demo", kind="rxrx1", n_sirnas=32, n_controls=4, cell_types=4, train_experiments_per_type=3,
         test_experiments_per_type=1, image_size=64, seed=0, pixel_stats=True, drop_wells=1, preset=None,
         signal: float = 1.0, well_noise: float = 0.0, response: float = 0.0, exp_gain: float = 0.25,
         plate_offset: float = 20.0, negative_wells: int = 4, vignette: float = 0.3):
    """Write a synthetic data set (RxRx1 Kaggle layout, or another adapter's format); returns a summary dict.

    Args:
        out_dir: output folder (default data/demo); existing files are overwritten.
        kind: rxrx1 (default: the Kaggle layout below) | manifest | folder | phenix | rxrx1_2020 | hpa | moths
            (a small set in that adapter's own format; only --seed and --preset apply).
        n_sirnas: treatment siRNA classes 0..n_sirnas-1 (default 32); a multiple of 4.
        n_controls: control siRNAs n_sirnas..n_sirnas+n_controls-1 on every plate (default 4);
            the last one is the negative control.
        negative_wells: wells of the negative control on every plate (default 4): replicates
            for profile corrections fitted on controls (src/profile.py).
        vignette: light lost at the field's corners, per plate drawn in 0.5..1 x this (default 0.3;
            0 = flat illumination): what src/prep_illumination.py corrects.
        cell_types: number of cell types (default 4: HEPG2, HUVEC, RPE, U2OS, then CT5...).
        train_experiments_per_type: train experiments per cell type (default 3).
        test_experiments_per_type: test experiments per cell type (default 1), numbered after
            the train ones.
        image_size: image side in pixels (default 64; the real data is 512).
        seed: random seed (default 0); the output is a pure function of the arguments.
        pixel_stats: also write pixel_stats.csv (default True).
        drop_wells: treatment wells removed from the first test plate and one train plate
            (default 1), as real plates miss a well.
        preset: hard = the accuracy benchmark's difficulty (PRESETS: 64 siRNAs, weak signal, strong
            batch effects); flags left at their defaults take the preset's values. With another
            --kind (manifest, folder, hpa, moths): the per-kind benchmark's harder set.
        signal: strength of the class differences (1 = the demo's; smaller is harder).
        well_noise: per-well, per-channel brightness noise (lognormal sigma; 0 = none).
        response: per cell type and class brightness factors (lognormal sigma; 0 = a siRNA looks
            the same in every cell type).
        exp_gain: per-experiment channel gain (lognormal sigma; default 0.25).
        plate_offset: per-plate channel offsets drawn from 0..plate_offset (8-bit units; default 20).
    """
    if kind != "rxrx1":
        from cellpipe.demo.generic import WRITERS, presets

        if kind not in WRITERS:
            raise rxrx.DataError(f"unknown demo kind '{kind}'; known: rxrx1, {', '.join(WRITERS)}")
        known = presets(kind)
        if preset is not None and preset not in known:
            raise rxrx.DataError(f"unknown preset {preset!r} for --kind {kind}; known: {sorted(known) or 'none'}")
        WRITERS[kind](Path(out_dir), seed=seed, **known.get(preset, {}))
        return {"out_dir": str(out_dir), "kind": kind, "preset": preset}
    if preset is not None:
        if preset not in PRESETS:
            raise rxrx.DataError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        given = dict(locals())
        defaults = {k: v.default for k, v in inspect.signature(main).parameters.items()}
        values = {k: (v if given[k] == defaults[k] else given[k]) for k, v in PRESETS[preset].items()}
        n_sirnas, signal, well_noise = values["n_sirnas"], values["signal"], values["well_noise"]
        response, exp_gain, plate_offset = values["response"], values["exp_gain"], values["plate_offset"]
        train_experiments_per_type = values["train_experiments_per_type"]
    for name, value in (("signal", signal), ("well_noise", well_noise), ("response", response),
                        ("exp_gain", exp_gain), ("plate_offset", plate_offset)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise rxrx.DataError(f"--{name} must be a number >= 0, got {value!r}")
    check_args(n_sirnas, n_controls, cell_types, train_experiments_per_type, test_experiments_per_type,
               image_size, drop_wells, negative_wells, vignette)
    started = time.time()
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        log.warning("%s is not empty: files are overwritten, stale ones stay", out_dir)
    rng = np.random.default_rng([seed, 0])
    df = plate_layout(rng, n_sirnas, n_controls, cell_types, train_experiments_per_type,
                      test_experiments_per_type, drop_wells, negative_wells)
    params = class_params(rng, n_sirnas + n_controls, image_size / 64, signal)
    effects = batch_effects(rng, df, cell_types, n_sirnas + n_controls, seed, exp_gain, plate_offset, response)
    n_images = write_images(out_dir, df, params, effects, seed, image_size, well_noise, vignette)
    # CSVs after the images: a listed well always has its files
    n_train, n_test, n_ctrl = write_tables(out_dir, df)
    if pixel_stats:
        from cellpipe.rxrx.pixel_stats import write_pixel_stats

        write_pixel_stats(out_dir)
    summary = {
        "out_dir": str(out_dir), "experiments": int(df.experiment.nunique()), "train_wells": n_train,
        "test_wells": n_test, "control_wells": n_ctrl, "images": n_images,
        "seconds": round(time.time() - started, 1),
    }
    log.info("demo data: %s", summary)
    return summary
