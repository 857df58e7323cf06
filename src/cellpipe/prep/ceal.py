"""CEAL (Wang et al. 2016, seed 000): confident predictions of unlabelled samples become pseudo labels.

From a prediction CSV (``pred_test.csv``: id, pred, prob_<class>...) keep the samples whose
predicted distribution has low entropy (below ``max_entropy``, and/or the ``top_fraction``
lowest-entropy samples of each predicted class) and write a new manifest version in which
they are TRAIN rows labelled by the prediction with ``is_gt=False``. Training on it needs
``source_params/use_pseudo: true``. Ground-truth rows are never relabelled.
"""
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.core.tables import read_table, write_table


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of probabilities."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def select(preds: pd.DataFrame, max_entropy: Optional[float] = None, top_fraction: Optional[float] = None) -> pd.DataFrame:
    """Rows of ``preds`` (with an ``entropy`` column) kept as pseudo labels."""
    if max_entropy is None and top_fraction is None:
        raise DataError("CEAL needs max_entropy and/or top_fraction")
    keep = pd.Series(True, index=preds.index)
    if max_entropy is not None:
        keep &= preds["entropy"] <= float(max_entropy)
    if top_fraction is not None:
        if not 0 < float(top_fraction) <= 1:
            raise DataError(f"top_fraction must be in (0, 1], got {top_fraction}")
        rank = preds.groupby("pred")["entropy"].rank(method="first", pct=True)
        keep &= rank <= float(top_fraction)
    return preds[keep]


def pseudo_manifest(manifest, predictions, out, max_entropy=None, top_fraction=None, path_column="img_path",
                    split_column="split_set", label_column="label", id_column=None) -> dict:
    """Write manifest version ``out`` with the selected samples as TRAIN pseudo labels; returns counts."""
    man = read_table(manifest, [path_column, split_column, label_column])
    preds = read_table(predictions, ["id", "pred"])
    prob_cols = [c for c in preds.columns if c.startswith("prob_")]
    if not prob_cols:
        raise DataError(f"{predictions} has no prob_<class> columns (write it with src/inference.py predict)")
    probs = preds[prob_cols].to_numpy(np.float64)
    if not np.isfinite(probs).all():
        raise DataError(f"{predictions} holds NaN or infinite probabilities")
    preds = preds.assign(id=preds["id"].astype(str), pred=preds["pred"].astype(str), entropy=entropy(probs))
    ids = (man[id_column] if id_column else man[path_column]).astype(str)
    pos = pd.Index(ids).get_indexer(preds["id"])
    if (pos < 0).any():
        raise DataError(f"{predictions}: id {preds['id'][pos < 0].iloc[0]!r} is not in {manifest}")
    is_gt = man["is_gt"].astype(str).str.lower().isin(["true", "1", "1.0"]) if "is_gt" in man else \
        pd.Series(True, index=man.index)
    unlabelled = ~(is_gt.to_numpy()[pos] & (man[split_column].astype(str).str.upper().to_numpy()[pos] != "TEST"))
    chosen = select(preds[unlabelled], max_entropy, top_fraction)
    out_df = man.copy()
    out_df["is_gt"] = is_gt
    rows = pd.Index(ids).get_indexer(chosen["id"])
    out_df.loc[out_df.index[rows], split_column] = "TRAIN"
    out_df.loc[out_df.index[rows], label_column] = chosen["pred"].to_numpy()
    out_df.loc[out_df.index[rows], "is_gt"] = False
    write_table(out_df, Path(out))
    return {"out": str(out), "candidates": int(unlabelled.sum()), "pseudo_labelled": len(chosen),
            "per_class": chosen["pred"].value_counts().sort_index().to_dict(),
            "max_entropy_kept": float(chosen["entropy"].max()) if len(chosen) else None}
