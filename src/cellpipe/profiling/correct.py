"""Batch correction of profiles, fitted on the negative-control wells only.

    center_scale  per plate: minus the plate's control mean, divided by its control std, floored
                  at ``min_std_ratio`` x the feature's pooled within-plate control std (a plate's
                  few controls can all but agree on a feature, and pycytominer's standardize then
                  multiplies its noise a thousandfold: on the demo it halved the mAP)
    pca_whiten    PCA whitening fitted on every plate's controls (scikit-learn's PCA, whiten; the
                  components with variance above ``min_variance`` x the first's, at most
                  ``n_components``: pycytominer's Spherize refuses the rank-deficient controls a
                  ReLU network's features give), then center_scale
    tvn           typical variation normalisation as EFAAR / OpenPhenom describe it: pca_whiten,
                  then per plate the controls' covariance is whitened away (x @ C^-1/2, C the
                  plate's control covariance + ``shrink`` I: CORAL's alignment to the identity)

The screen-wide part (the PCA) is fitted once and saved (``transforms.joblib`` + ``.json``);
the per-plate parts are fitted on each plate's own controls wherever the transform is applied,
so a new plate is corrected exactly as the screen's plates were (``apply``).
"""
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from cellpipe.core import fsutil
from cellpipe.core.errors import DataError
from cellpipe.core.registry import Registry
from cellpipe.profiling.embed import CONTROL, PLATE, check_controls, feature_columns

METHODS = Registry("profile correction")
MIN_CONTROLS = 2  # a plate's std / covariance needs at least two control wells


def _check_controls(df: pd.DataFrame, where: str) -> None:
    check_controls(df[PLATE], df[CONTROL], MIN_CONTROLS, unit="well", where=f"{where}: ")


def pooled_control_std(df: pd.DataFrame, features: List[str]) -> np.ndarray:
    """Per feature, the square root of the mean over plates of the controls' variance on each plate."""
    x, ctrl = df[features].to_numpy(np.float64), df[CONTROL].to_numpy(bool)
    plates = df[PLATE].to_numpy()
    return np.sqrt(np.mean([x[(plates == p) & ctrl].var(axis=0, ddof=1) for p in pd.unique(plates)], axis=0))


def center_scale(df: pd.DataFrame, features: List[str], floor: np.ndarray) -> pd.DataFrame:
    """Per plate, standardised against that plate's control wells, the std floored at ``floor``."""
    x = df[features].to_numpy(np.float64)
    ctrl, plates = df[CONTROL].to_numpy(bool), df[PLATE].to_numpy()
    cols = [df.columns.get_loc(f) for f in features]
    out = df.copy()
    for p in pd.unique(plates):
        g = np.flatnonzero(plates == p)
        sd = np.maximum(x[g[ctrl[g]]].std(axis=0, ddof=1), floor)
        sd[sd <= 1e-12] = 1.0  # a feature constant on every plate's controls: centred only
        out.iloc[g, cols] = (x[g] - x[g[ctrl[g]]].mean(axis=0)) / sd
    return out


def coral(df: pd.DataFrame, features: List[str], shrink: float) -> pd.DataFrame:
    """Per plate: x @ (C + shrink I)^-1/2 with C the plate's control covariance."""
    out = df.copy()
    for _, plate in df.groupby(PLATE, sort=False):
        ctrl = plate.loc[plate[CONTROL], features].to_numpy(np.float64)
        cov = np.cov(ctrl, rowvar=False, ddof=1) + shrink * np.eye(len(features))
        w, v = np.linalg.eigh(cov)
        inv_sqrt = (v / np.sqrt(np.maximum(w, 1e-12))) @ v.T
        out.loc[plate.index, features] = plate[features].to_numpy(np.float64) @ inv_sqrt
    return out


class Correction:
    """A method's screen-wide fitted part (``fit``) and its application to any plates (``apply``)."""

    def __init__(self, method: str, n_components: Optional[int] = None, shrink: float = 0.5,
                 min_variance: float = 1e-4, min_std_ratio: float = 0.5):
        METHODS.get(method)  # an unknown name lists the known ones
        self.method, self.n_components, self.shrink = method, n_components, float(shrink)
        self.min_variance, self.min_std_ratio = float(min_variance), float(min_std_ratio)
        self.pca, self.features, self.kept, self.floor = None, None, None, None

    def fit(self, df: pd.DataFrame) -> "Correction":
        self.features = feature_columns(df)
        _check_controls(df, f"correction {self.method}")
        if self.method in ("pca_whiten", "tvn"):
            from sklearn.decomposition import PCA

            ctrl = df.loc[df[CONTROL], self.features].to_numpy(np.float64)
            self.pca = PCA(whiten=True, svd_solver="full").fit(ctrl)
            var = self.pca.explained_variance_
            kept = int((var > self.min_variance * var[0]).sum())
            self.kept = min(kept, self.n_components) if self.n_components else kept
        space, names = self._project(df)
        # the std floor is the screen's: a new plate alone is floored as the screen's plates were
        self.floor = self.min_std_ratio * pooled_control_std(space, names)
        return self

    def _project(self, df: pd.DataFrame):
        """(``df`` with its features in the method's space: the PCA's, or as they are; the feature names)."""
        meta = [c for c in df.columns if c not in feature_columns(df)]
        if self.pca is None:
            names = list(self.features)
            return df[meta + names].reset_index(drop=True), names
        z = self.pca.transform(df[self.features].to_numpy(np.float64))[:, : self.kept]
        names = [f"emb_{i:04d}" for i in range(z.shape[1])]
        return pd.concat([df[meta].reset_index(drop=True), pd.DataFrame(z, columns=names)], axis=1), names

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in df.columns]
        if missing:
            raise DataError(f"correction {self.method}: the profiles lack feature {missing[0]!r} the transform "
                            f"was fitted with ({len(self.features)} features)")
        _check_controls(df, f"correction {self.method}")
        df, names = self._project(df)
        return METHODS.get(self.method)(self, df, names)

    # ------------------------------------------------------------- saved transforms
    def save(self, folder) -> Path:
        import joblib

        folder = Path(folder)
        spec = {"method": self.method, "n_components": self.n_components, "shrink": self.shrink,
                "min_variance": self.min_variance, "min_std_ratio": self.min_std_ratio, "kept": self.kept,
                "floor": [float(v) for v in self.floor], "features": self.features}
        fsutil.write_text(json.dumps(spec, indent=2), folder / f"{self.method}.json")
        if self.pca is not None:
            with fsutil.atomic_path(folder / f"{self.method}.joblib") as tmp:
                joblib.dump(self.pca, tmp)
        return folder

    @classmethod
    def load(cls, folder, method: str) -> "Correction":
        import joblib

        spec_file = Path(folder) / f"{method}.json"
        if not spec_file.is_file():
            raise DataError(f"no saved correction {method!r} in {folder} ({spec_file.name} missing)")
        spec = json.loads(spec_file.read_text())
        out = cls(spec["method"], spec["n_components"], spec["shrink"], spec["min_variance"], spec["min_std_ratio"])
        out.features, out.kept, out.floor = spec["features"], spec["kept"], np.asarray(spec["floor"], np.float64)
        if (Path(folder) / f"{method}.joblib").is_file():
            out.pca = joblib.load(Path(folder) / f"{method}.joblib")
        return out


@METHODS.register("center_scale")
def _center_scale(c: Correction, df: pd.DataFrame, names: List[str]) -> pd.DataFrame:
    return center_scale(df, names, c.floor)


@METHODS.register("pca_whiten")
def _pca_whiten(c: Correction, df: pd.DataFrame, names: List[str]) -> pd.DataFrame:
    return center_scale(df, names, c.floor)


@METHODS.register("tvn")
def _tvn(c: Correction, df: pd.DataFrame, names: List[str]) -> pd.DataFrame:
    return coral(center_scale(df, names, c.floor), names, c.shrink)
