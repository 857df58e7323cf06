"""Embeddings of a finished run over a whole screen, one plate at a time.

Each site's penultimate-layer features (the encoder's pooled output; every TTA view averaged)
with its metadata is written as ``{out}/sites/{plate}/{plate}.parquet``; the sites of a well are
averaged into ``{out}/wells.parquet`` (pycytominer's aggregate) and the wells of a treatment
into ``{out}/treatments.parquet``. Columns follow the profiling convention: ``Metadata_*`` for
metadata, ``emb_NNNN`` for features. Only one plate's images and embeddings are in memory at a
time (plus the well means: wells x features float32), so the peak grows with the largest plate,
not with the screen.
"""
import logging
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError
from cellpipe.core.illumination import plate_key
from cellpipe.core.tables import write_table
from cellpipe.data.build import make_eval_dataset
from cellpipe.data.normalize import make_normalizer
from cellpipe.inference.predict import _data_params, load_run, resolve_device, tta_settings
from cellpipe.sources import make_source
from cellpipe.training.evaluate import predict_logits

log = logging.getLogger(__name__)
SITES_DIR, WELLS, TREATMENTS = "sites", "wells.parquet", "treatments.parquet"
FEATURE_PREFIX = "emb_"
# the columns every profile table has (the source's own columns follow, Metadata_-prefixed)
PLATE, WELL, SITE, SAMPLE = "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_id"
LABEL, BATCH, CONTROL = "Metadata_label", "Metadata_group", "Metadata_control"


def feature_columns(df: pd.DataFrame) -> List[str]:
    return [c for c in df.columns if c.startswith(FEATURE_PREFIX)]


def meta_columns(df: pd.DataFrame) -> List[str]:
    return [c for c in df.columns if c.startswith("Metadata_")]


def metadata(table: pd.DataFrame, source, controls: pd.Series, plates: pd.Series) -> pd.DataFrame:
    """The sample table as Metadata_* columns: plate (the plate key), well, id, label, group, control."""
    well_col = source.well_column
    out = pd.DataFrame({
        PLATE: plates.to_numpy(),
        WELL: table[well_col].astype(str).to_numpy() if well_col else table["id"].to_numpy(),
        SAMPLE: table["id"].to_numpy(), LABEL: table["label"].to_numpy(),
        BATCH: table["group"].astype(str).to_numpy(), CONTROL: controls.to_numpy(bool)})
    for c in table.columns:  # the rest of the source's columns, for the user's own grouping
        name = c if c.startswith("Metadata_") else f"Metadata_{c}"
        if name not in out.columns and c not in ("id", "label", "group"):
            out[name] = table[c].astype(str).to_numpy()
    return out


def control_mask(table: pd.DataFrame, source, control_label=None, control_query: Optional[str] = None) -> pd.Series:
    """Which samples are the negative controls the corrections are fitted on: a label value, a
    pandas query over the sample table, or the source's own rule (RxRx1: well_type negative_control)."""
    if control_query:
        try:
            hit = table.eval(control_query)
        except Exception as e:  # pandas raises many types for a bad expression
            raise DataError(f"--control_query {control_query!r}: {type(e).__name__}: {e}") from None
        return pd.Series(np.asarray(hit, bool), index=table.index)
    if control_label is not None:
        return table["label"].astype(str) == str(control_label)
    rule = getattr(source, "negative_controls", None)
    if rule is None:
        raise DataError(f"source '{source.name}' does not mark its control wells: pass --control_label "
                        f"(e.g. DMSO) or --control_query")
    return rule(table)


def profile_rows(source) -> pd.DataFrame:
    """Every sample of the screen, control wells included (RxRx1's live in their own tables)."""
    from cellpipe.data.cache import cache_rows

    rows = cache_rows(source)
    return rows.drop_duplicates("id").reset_index(drop=True)


def check_controls(plates: pd.Series, controls: pd.Series, needed: int, unit: str = "sample",
                   where: str = "", hint: str = "") -> None:
    """Every plate has ``needed`` control samples (the export checks before hours of embedding)."""
    counts = controls.astype(bool).groupby(plates.to_numpy()).sum()
    few = counts[counts < needed]
    if len(few):
        raise DataError(f"{where}plate {few.index[0]!r} has {int(few.iloc[0])} control {unit}(s); the corrections "
                        f"need {needed} per plate ({len(few)} plate(s) short{hint})")


def plate_normalizer(dp: dict, source, rows: pd.DataFrame, payload: dict):
    """None when the input normalisation can be fitted plate by plate (none, image, dataset from the
    checkpoint, a level within the plate); else the one normaliser of every row (an experiment level)."""
    mode = dp["normalization"]
    if mode in ("none", "image", "dataset") or set(source.levels.get(mode, [])) <= set(source.plate_columns):
        return None
    return make_normalizer(dp, source, [rows], state=payload.get("normalization"), workers=0)


def export(model: str, out_dir, data_root=None, tta: Optional[str] = None, batch_size: int = 32, num_workers: int = 0,
           device: str = "auto", control_label=None, control_query: Optional[str] = None, aggregate: str = "mean",
           illumination: Optional[str] = None, source: Optional[str] = None, source_params: Optional[dict] = None,
           rescale: Optional[dict] = None, overwrite: bool = False, min_controls: int = 0) -> dict:
    """Site, well and treatment profiles of every sample the run's source (at ``data_root``) holds;
    ``source`` (+ ``source_params``, ``rescale``) reads another layout with the run's channels.
    ``min_controls``: every plate must have that many control samples (checked first)."""
    from pycytominer import aggregate as pcm_aggregate

    from cellpipe.data.build import context_spec
    from cellpipe.data.tta import tta_views
    from cellpipe.inference.predictor import run_dirs

    runs = run_dirs([model])
    if len(runs) != 1:
        raise DataError(f"--model {model}: profiles come from one run; it holds {len(runs)} "
                        f"({', '.join(str(r) for r in runs[:3])}...)")
    run_dir, out_dir = runs[0], fsutil.check_replaceable(out_dir, overwrite)
    if aggregate not in ("mean", "median"):
        raise DataError(f"--aggregate must be mean or median, got {aggregate!r}")
    device = resolve_device(device)
    net, cfg, labels, payload = load_run(run_dir, device, check_folder=False)
    views = tta_settings(cfg, tta)
    dp = _data_params(cfg, data_root, None, None)
    dp["cache"] = None  # each site is read once: a cache would only grow with the screen
    if source is not None:  # another layout: the run's flat fields were for its own images
        dp.update(source=source, source_params=dict(source_params or {}), illumination=None)
    if illumination is not None:
        dp["illumination"] = illumination or None
    if rescale is not None:
        dp["rescale"] = rescale
    source = make_source(dp)
    dp["channels"] = source.check_channels(dp["channels"])  # the run's channels must exist in these images
    rows = profile_rows(source)
    controls = control_mask(rows, source, control_label, control_query)
    plates = rows.apply(lambda r: plate_key(r, source.plate_columns), axis=1) if len(rows) else pd.Series([], dtype=str)
    if min_controls:
        check_controls(plates, controls, min_controls,
                       hint=": check --control_label / --control_query, or --corrections none")
    shared = plate_normalizer(dp, source, rows, payload)
    context = context_spec(payload["model_params"])
    channels = list(range(1, source.n_channels + 1))

    wells, n_sites, peak, total = [], 0, 0, 0
    with fsutil.staged_dir(out_dir) as staged:
        for plate, idx in tqdm(plates.groupby(plates, sort=True).groups.items(), desc="plates", unit="plate"):
            table = rows.loc[idx].reset_index(drop=True)
            plate_meta = metadata(table, source, controls.loc[idx].reset_index(drop=True),
                                  plates.loc[idx].reset_index(drop=True))
            normalizer = shared or make_normalizer(dp, source, [table], state=payload.get("normalization"),
                                                   workers=0)
            # wells that lack a site (a failed acquisition) are embedded from the sites they have
            present = [tuple(source.present_sites(r, source.sites)) for r in table.to_dict("records")]
            missing = [table["id"][i] for i, p in enumerate(present) if not p]
            if missing:
                raise DataError(f"plate {plate}: sample {missing[0]!r} has no image files "
                                f"(e.g. {source.image_files(table.iloc[0], source.sites[0], channels)[0]})")
            parts = []
            for site_set in dict.fromkeys(present):
                pick = [i for i, p in enumerate(present) if p == site_set]
                sub = table.iloc[pick].reset_index(drop=True)
                ds = make_eval_dataset(dict(dp, valid_sites=list(site_set)), source, sub.assign(label=None), labels,
                                       normalizer, f"plate {plate}", context)
                emb = predict_logits(net, ds, batch_size=batch_size, num_workers=num_workers, device=device,
                                     views=tta_views(views["tta"], views["crop"]), reduce=views["reduce"],
                                     desc=f"profile {plate}", features=True, per_site=True)
                names = [f"{FEATURE_PREFIX}{i:04d}" for i in range(emb.shape[-1])]
                meta = plate_meta.iloc[pick].reset_index(drop=True)
                sites = pd.concat([meta.loc[meta.index.repeat(len(site_set))].reset_index(drop=True),
                                   pd.DataFrame({SITE: np.tile(list(site_set), len(sub))})], axis=1)
                parts.append(pd.concat([sites, pd.DataFrame(emb.reshape(-1, emb.shape[-1]), columns=names)], axis=1))
            site_df = pd.concat(parts, ignore_index=True)
            write_table(site_df, site_file(staged, plate))
            wells.append(pcm_aggregate(site_df, strata=[PLATE, WELL], features=names, operation=aggregate)
                         .merge(well_metadata(plate_meta), on=[PLATE, WELL], how="left"))
            n_sites += len(site_df)
            size = int(site_df.memory_usage(deep=True).sum())
            peak, total = max(peak, size), total + size
            del site_df, parts
        wells = order(pd.concat(wells, ignore_index=True))
        write_table(wells, staged / WELLS)
        treatments = aggregate_treatments(wells, aggregate)
        write_table(treatments, staged / TREATMENTS)
        summary = {"run": str(run_dir), "source": dp["source"], "root": dp["root"], "plates": int(wells[PLATE].nunique()),
                   "wells": len(wells), "sites": n_sites, "features": len(feature_columns(wells)),
                   "controls": int(wells[CONTROL].sum()), "tta": views["tta"], "aggregate": aggregate,
                   "largest_plate_bytes": peak, "all_plates_bytes": total,
                   "peak_rss_mb": round(peak_rss_mb(), 1),
                   "illumination": dp.get("illumination")}
        fsutil.write_text(pd.Series(summary).to_json(indent=2), staged / "profile.json")
    torch.cuda.empty_cache() if device.type == "cuda" else None
    log.info("profiles: %s", summary)
    return summary


def well_metadata(meta: pd.DataFrame) -> pd.DataFrame:
    """One row per (plate, well): the metadata columns that are constant within every well (a well's
    samples are its cells when the source is ``cells``: their ids and positions differ, drop them)."""
    groups = meta.groupby([PLATE, WELL], sort=False)
    constant = [c for c in meta.columns if c in (PLATE, WELL) or bool((groups[c].nunique(dropna=False) <= 1).all())]
    out = groups[constant].first() if len(constant) > 2 else groups.size().to_frame("n")[[]]
    out = out.drop(columns=[c for c in (PLATE, WELL) if c in out.columns]).reset_index()
    if CONTROL not in out.columns:  # a well of control and non-control cells cannot happen; be explicit
        out[CONTROL] = groups[CONTROL].any().to_numpy()
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def order(df: pd.DataFrame) -> pd.DataFrame:
    """Metadata first, then the features."""
    return df[meta_columns(df) + feature_columns(df)]


def aggregate_treatments(wells: pd.DataFrame, operation: str = "mean") -> pd.DataFrame:
    """Labelled wells -> one profile per treatment (label); control and well counts kept."""
    from pycytominer import aggregate as pcm_aggregate

    labelled = wells[wells[LABEL].notna()]
    if labelled.empty:
        return pd.DataFrame(columns=[LABEL, "Metadata_wells", CONTROL])
    out = pcm_aggregate(labelled, strata=[LABEL], features=feature_columns(labelled), operation=operation)
    counts = labelled.groupby(LABEL).agg(Metadata_wells=(WELL, "size"), Metadata_control=(CONTROL, "any"))
    return order(out.merge(counts.reset_index(), on=LABEL))


def site_file(out_dir, plate: str) -> Path:
    """A plate's per-site profiles, one folder per plate as the Cell Painting Gallery lays them out."""
    from cellpipe.prep.illumination import folder_name

    return Path(out_dir) / SITES_DIR / folder_name(plate) / f"{folder_name(plate)}.parquet"


def read_profiles(path) -> pd.DataFrame:
    """A profile table (parquet or CSV) with at least one feature and the plate/well/label metadata."""
    from cellpipe.core.tables import read_table

    df = read_table(path, [PLATE, WELL, LABEL, CONTROL])
    if not feature_columns(df):
        raise DataError(f"{path} has no {FEATURE_PREFIX}* feature columns")
    return df
