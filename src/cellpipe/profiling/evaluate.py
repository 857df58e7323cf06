"""How good a set of well profiles is: mean average precision (copairs) and treatment accuracy.

- **activity** (copairs' phenotypic activity): per treatment well, the average precision of
  ranking its replicate wells (same label) above the negative-control wells, by cosine
  similarity; per treatment the mean, with a permutation p-value (FDR-corrected); the table
  gives the mean over treatments and the share of treatments retrieved at p < 0.05.
- **consistency** (replicate retrieval among treatments): the same, ranked against the other
  treatments' wells, replicates on other plates only (a replicate on the same plate shares its
  batch effect and proves nothing).
- **accuracy**: nearest-centroid (cosine) and logistic-regression classification of the
  treatment wells, out of fold by ``Metadata_group`` (RxRx1: the experiment; for cells, their
  well's group, ``Metadata_well_group``), so every well is scored by a model that never saw its
  experiment.
"""
import logging
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from cellpipe.core.errors import DataError
from cellpipe.profiling.embed import BATCH, CONTROL, LABEL, PLATE, feature_columns

log = logging.getLogger(__name__)
logging.getLogger("copairs").setLevel(logging.WARNING)  # a line per step of every call otherwise
REFERENCE = "Metadata_reference_index"
WELL_GROUP = "Metadata_well_group"  # a cell's well's group in its original source (prep_crops keeps it)


def _map(meta: pd.DataFrame, feats: np.ndarray, pos_sameby, pos_diffby, neg_sameby, neg_diffby, null_size: int,
         seed: int) -> Optional[pd.DataFrame]:
    from copairs.map import average_precision, mean_average_precision

    try:
        ap = average_precision(meta, feats, pos_sameby, pos_diffby, neg_sameby, neg_diffby, progress_bar=False)
    except Exception as e:  # copairs' UnpairedException and friends: no pairs of that kind in the data
        log.warning("no %s pairs: %s", pos_sameby, e)
        return None
    ap = ap[ap["n_pos_pairs"] > 0]
    if ap.empty:
        return None
    return mean_average_precision(ap, [LABEL], null_size=null_size, threshold=0.05, seed=seed, progress_bar=False)


def activity(wells: pd.DataFrame, null_size: int = 1000, seed: int = 0) -> Optional[pd.DataFrame]:
    """Per treatment: mAP of its replicates against the negative controls (copairs)."""
    from copairs.matching import assign_reference_index

    df = wells[wells[LABEL].notna() | wells[CONTROL]].reset_index(drop=True)
    df = assign_reference_index(df, df.index[df[CONTROL]], reference_col=REFERENCE, default_value=-1)
    meta = df[[LABEL, PLATE, REFERENCE]].astype({LABEL: str})
    return _map(meta, df[feature_columns(df)].to_numpy(np.float64), [LABEL, REFERENCE], [], [],
                [LABEL, REFERENCE], null_size, seed)


def consistency(wells: pd.DataFrame, null_size: int = 1000, seed: int = 0) -> Optional[pd.DataFrame]:
    """Per treatment: mAP of its replicates on other plates against the other treatments' wells."""
    df = wells[wells[LABEL].notna() & ~wells[CONTROL]].reset_index(drop=True)
    meta = df[[LABEL, PLATE]].astype({LABEL: str})
    return _map(meta, df[feature_columns(df)].to_numpy(np.float64), [LABEL], [PLATE], [], [LABEL], null_size, seed)


def oof_groups(wells: pd.DataFrame) -> np.ndarray:
    """What out-of-fold holds out: a cell's original well group (source cells), else Metadata_group."""
    column = WELL_GROUP if WELL_GROUP in wells.columns else BATCH
    return wells[column].astype(str).to_numpy()


def nearest_centroid(x_train, y_train, x_test) -> np.ndarray:
    """Labels of the closest class mean by cosine (rows L2-normalised)."""
    classes = np.unique(y_train)
    centres = np.stack([x_train[y_train == c].mean(axis=0) for c in classes])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return classes[np.argmax(x_test @ centres.T, axis=1)]


def accuracy(wells: pd.DataFrame, seed: int = 0) -> Dict[str, float]:
    """Out-of-fold accuracy of the treatment label, leaving one group (experiment) out at a time."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.preprocessing import normalize

    df = wells[wells[LABEL].notna() & ~wells[CONTROL]].reset_index(drop=True)
    groups = oof_groups(df)
    if len(set(groups)) < 2:
        return {"nearest_centroid": float("nan"), "logistic": float("nan"), "chance": float("nan")}
    x = normalize(df[feature_columns(df)].to_numpy(np.float64))  # cosine geometry for both
    y = df[LABEL].astype(str).to_numpy()
    hits = {"nearest_centroid": np.zeros(len(df), bool), "logistic": np.zeros(len(df), bool)}
    for train, test in LeaveOneGroupOut().split(x, y, groups):
        if len(set(y[train])) < 2:
            continue
        hits["nearest_centroid"][test] = nearest_centroid(x[train], y[train], x[test]) == y[test]
        clf = LogisticRegression(max_iter=2000, C=1.0, random_state=seed).fit(x[train], y[train])
        hits["logistic"][test] = clf.predict(x[test]) == y[test]
    out = {k: float(v.mean()) for k, v in hits.items()}
    out["chance"] = float(pd.Series(y).value_counts(normalize=True).iloc[0])  # the majority label's share
    return out


def per_treatment(act: Optional[pd.DataFrame], con: Optional[pd.DataFrame], name: str) -> pd.DataFrame:
    """One row per treatment: its activity mAP and corrected p-value, its consistency mAP."""
    parts = []
    for df, kind in ((act, "activity"), (con, "consistency")):
        if df is not None:
            parts.append(df.set_index(LABEL)[["mean_average_precision", "corrected_p_value"]].rename(
                columns={"mean_average_precision": f"map_{kind}", "corrected_p_value": f"p_{kind}"}))
    if not parts:
        return pd.DataFrame(columns=["correction", LABEL])
    out = pd.concat(parts, axis=1).reset_index()
    out.insert(0, "correction", name)
    return out


def evaluate(wells: pd.DataFrame, name: str, null_size: int = 1000, seed: int = 0,
             treatments: Optional[list] = None) -> Dict[str, float]:
    """One row of the table: mAP (activity, consistency), share of active treatments, accuracies;
    ``treatments`` (a list) gets the per-treatment rows appended."""
    if not feature_columns(wells):
        raise DataError(f"profiles {name}: no feature columns")
    row = {"correction": name}
    act, con = activity(wells, null_size, seed), consistency(wells, null_size, seed)
    if treatments is not None:
        treatments.append(per_treatment(act, con, name))
    row["map_activity"] = float(act["mean_average_precision"].mean()) if act is not None else float("nan")
    row["active_share"] = float(act["below_corrected_p"].mean()) if act is not None else float("nan")
    row["map_consistency"] = float(con["mean_average_precision"].mean()) if con is not None else float("nan")
    acc = accuracy(wells, seed)
    row.update({"acc_nearest_centroid": acc["nearest_centroid"], "acc_logistic": acc["logistic"],
                "acc_majority": acc["chance"]})
    return row


def pca_png(tables: Dict[str, pd.DataFrame], out_png, colour: str = PLATE, max_legend: int = 12):
    """PCA scatter of the wells of each table, coloured by ``colour`` (the plate): batch effects show as
    plate clusters before correction and should be gone after it."""
    from sklearn.decomposition import PCA

    from cellpipe.reports.plots import _save, plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4.2), squeeze=False)
    for ax, (name, df) in zip(axes[0], tables.items()):
        xy = PCA(n_components=2, random_state=0).fit_transform(df[feature_columns(df)].to_numpy(np.float64))
        values = df[colour].astype(str)
        cats = sorted(values.unique())
        cmap = plt.get_cmap("tab20")
        for i, cat in enumerate(cats):
            hit = (values == cat).to_numpy()
            ax.scatter(xy[hit, 0], xy[hit, 1], s=9, color=cmap(i % 20), label=cat if i < max_legend else None,
                       alpha=0.8, linewidths=0)
        ctrl = df[CONTROL].to_numpy(bool)
        ax.scatter(xy[ctrl, 0], xy[ctrl, 1], s=22, facecolors="none", edgecolors="black", linewidths=0.6,
                   label="controls")
        ax.set_title(f"{name}: wells, PCA 1-2", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=6, loc="best", title=colour.replace("Metadata_", ""), title_fontsize=7)
    fig.tight_layout()
    return _save(fig, out_png)


def table_text(rows: List[Dict[str, float]]) -> str:
    df = pd.DataFrame(rows).set_index("correction")
    return df.to_string(float_format=lambda v: f"{v:.3f}")
