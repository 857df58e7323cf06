"""src/profile.py's flow: export embeddings, correct them against the controls, evaluate, report.

    {out}/sites/{plate}/{plate}.parquet   per-site embeddings (embed.py)
    {out}/wells.parquet           per-well, uncorrected
    {out}/treatments.parquet      per-treatment, uncorrected
    {out}/corrected/{method}/wells.parquet, treatments.parquet   per correction
    {out}/transforms/{method}.json (+ .joblib)                   fitted transforms, for new plates
    {out}/evaluation.csv, evaluation.png                          the mAP / accuracy table, PCA plot
    {out}/evaluation_per_treatment.csv                            mAP and p-values per treatment
"""
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError
from cellpipe.core.tables import write_table
from cellpipe.profiling import embed
from cellpipe.profiling.correct import METHODS, Correction
from cellpipe.profiling.evaluate import evaluate, pca_png, table_text

log = logging.getLogger(__name__)
CORRECTED, TRANSFORMS, TABLE, PLOT = "corrected", "transforms", "evaluation.csv", "evaluation.png"
PER_TREATMENT = "evaluation_per_treatment.csv"


def parse_methods(corrections) -> list:
    if corrections in (None, "", "none"):
        return []
    names = [c.strip() for c in corrections.split(",")] if isinstance(corrections, str) else list(corrections)
    for n in names:
        METHODS.get(n)
    return names


def correct_and_evaluate(out_dir, corrections: Sequence[str], transforms: Optional[str] = None,
                         aggregate: str = "mean", evaluate_profiles: bool = True, null_size: int = 1000,
                         seed: int = 0, n_components: Optional[int] = None, shrink: float = 0.5,
                         min_std_ratio: float = 0.5) -> pd.DataFrame:
    """Correct ``{out}/wells.parquet`` by each method (fitted here, or loaded from ``transforms``),
    write the corrected wells and treatments, and the evaluation table and plot."""
    out_dir = Path(out_dir)
    wells = embed.read_profiles(out_dir / embed.WELLS)
    tables, rows = {"none": wells}, []
    for method in corrections:
        if transforms:
            c = Correction.load(transforms, method)
        else:
            c = Correction(method, n_components=n_components, shrink=shrink, min_std_ratio=min_std_ratio).fit(wells)
            c.save(out_dir / TRANSFORMS)
        fixed = c.apply(wells)
        folder = out_dir / CORRECTED / method
        write_table(fixed, folder / embed.WELLS)
        write_table(embed.aggregate_treatments(fixed, aggregate), folder / embed.TREATMENTS)
        tables[method] = fixed
    if evaluate_profiles:
        per = []
        rows = [evaluate(t, name, null_size, seed, per) for name, t in tables.items()]
        table = pd.DataFrame(rows)
        fsutil.write_csv(table, out_dir / TABLE)
        fsutil.write_csv(pd.concat(per, ignore_index=True), out_dir / PER_TREATMENT)
        pca_png(tables, out_dir / PLOT)
        print(table_text(rows))
        return table
    return pd.DataFrame()


def run(model: str, out_dir, data_root=None, corrections="center_scale,pca_whiten,tvn", transforms=None,
        control_label=None, control_query=None, aggregate="mean", tta=None, batch_size=32, num_workers=0,
        device="auto", illumination=None, evaluate_profiles=True, null_size=1000, seed=0, n_components=None,
        shrink=0.5, min_std_ratio=0.5, source=None, source_params=None, rescale=None, overwrite=False,
        export_profiles=True) -> dict:
    """The whole flow; ``export_profiles`` False corrects and evaluates the profiles ``out_dir`` holds."""
    from cellpipe.profiling.correct import MIN_CONTROLS

    methods = parse_methods(corrections)
    if transforms and not Path(transforms).is_dir():
        raise DataError(f"--transforms {transforms}: not a folder of saved corrections")
    if export_profiles:
        summary = embed.export(model, out_dir, data_root=data_root, tta=tta, batch_size=batch_size,
                               num_workers=num_workers, device=device, control_label=control_label,
                               control_query=control_query, aggregate=aggregate, illumination=illumination,
                               source=source, source_params=source_params, rescale=rescale, overwrite=overwrite,
                               min_controls=MIN_CONTROLS if methods else 0)
    else:
        made = Path(out_dir) / "profile.json"
        if not made.is_file():
            raise DataError(f"--export false: {out_dir} holds no profiles ({made.name} missing); export them first")
        summary = json.loads(made.read_text())
    table = correct_and_evaluate(out_dir, methods, transforms, aggregate, evaluate_profiles, null_size, seed,
                                 n_components, shrink, min_std_ratio)
    summary["evaluation"] = table.to_dict("records")
    return summary
