"""Pictures of results: confusion matrix, per-class F1, plate heatmaps, accuracy before/after assignment.

Every function reads a table (a CSV path or a DataFrame), draws one matplotlib figure
(Agg backend: files only) and writes it atomically as a PNG. The helpers that compute
what is drawn (``confusion_counts``, ``parse_well``, ``plate_shape``, ``plate_grid``)
are public so that the numbers can be checked without looking at pixels.
"""
import math
import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from cellpipe.core import layout  # noqa: E402
from cellpipe.core.errors import DataError  # noqa: E402
from cellpipe.core.fsutil import atomic_path  # noqa: E402
from cellpipe.core.tables import natural_sort  # noqa: E402

DPI = 100
PREDICTION_COLUMNS = ("id", "pred", "truth")
PER_CLASS_COLUMNS = ("class", "precision", "recall", "f1", "support")
AVG_SUFFIX = " avg"  # per_class.csv summary rows ("macro avg", "weighted avg")
ACCURACY_COLUMNS = ("experiment", "acc_argmax", "acc_assigned")
ALL_ROW = "ALL"  # the accuracy table's overall row; the bar chart shows experiments only

# confusion matrix
ANNOTATE_MAX_CLASSES = 20  # write the count in every cell up to this many classes
OTHER_CLASSES = "(other)"  # the column of predictions outside the shown classes, when classes are cut
CM_CELL_INCHES = 0.3
CM_MIN_INCHES = 4.0
CM_MARGIN_INCHES = 2.0  # room for the tick labels
MAX_FIGURE_INCHES = 24.0  # ~2400 px at DPI: bigger figures are slow and no easier to read
SMALL_FONT = 6
NORMAL_FONT = 8
DARK_CELL = 0.5  # annotate in white above this fraction of the colour scale

# per-class F1
F1_BAR_INCHES = 0.25
F1_MIN_WIDTH_INCHES = 6.0
F1_HEIGHT_INCHES = 4.0
MAX_TICK_LABELS = 80  # more class names than this on one axis are unreadable: leave them off
AVG_LINE_STYLES = ("--", ":", "-.")

# plate heatmaps
PLATE_FORMATS = ((8, 12), (16, 24), (32, 48))  # 96-, 384- and 1536-well (rows, columns)
MAX_PLATES = 24
MAX_PLATE_COLUMNS = 6  # subplots per figure row
PLATE_INCHES = (3.0, 2.2)  # width, height of one plate's subplot
MAX_PLATE_TICKS = 12  # per axis; larger plates label every n-th row / column
PLATE_KEY_JOIN = " / "  # plate title: the plate columns' values joined
WELL_RE = re.compile(r"^([A-Za-z]{1,2})0*(\d+)$")
N_LETTERS = 26

# accuracy bars
BAR_WIDTH = 0.4
ACC_MIN_WIDTH_INCHES = 6.0
ACC_INCHES_PER_EXPERIMENT = 0.6
ACC_MARGIN_INCHES = 2.0
ACC_HEIGHT_INCHES = 4.0
ACC_YMAX = 1.05  # a little headroom above 100 %


# ---------------------------------------------------------------- shared


def _save(fig, out_png) -> Path:
    """Write ``fig`` atomically (the temporary name keeps .png, which savefig uses to pick the format)."""
    out_png = Path(out_png)
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, dpi=DPI)
    finally:
        plt.close(fig)
    return out_png


def _read_text_table(path, required: Sequence[str], text_columns: Sequence[str]) -> pd.DataFrame:
    """A CSV whose ``text_columns`` stay text ('01' stays '01'; only empty cells are missing)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    try:
        df = pd.read_csv(path, dtype={c: str for c in text_columns}, keep_default_na=False, na_values={
            c: [""] for c in text_columns})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        raise DataError(f"cannot parse table {path}: {e}") from None
    _require(df, required, str(path))
    for c in text_columns:
        df[c] = df[c].str.strip().replace("", np.nan)
    return df


def _require(df: pd.DataFrame, required: Iterable[str], where: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{where} lacks required column(s) {missing}; it has {list(df.columns)}")


def _numeric(df: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """``column`` as floats; a non-number (other than empty) is a DataError naming it."""
    values = pd.to_numeric(df[column], errors="coerce")
    # text-safe reads keep blank cells as '' rather than NaN: blank means missing too
    blank = df[column].isna() | (df[column].astype(str).str.strip() == "")
    bad = values.isna() & ~blank
    if bad.any():
        raise DataError(f"{where}: column '{column}' has non-numeric value {df.loc[bad, column].iloc[0]!r}")
    return values.to_numpy(dtype=np.float64)


def _thin_ticks(n: int, most: int) -> List[int]:
    """Tick positions 0..n-1, every k-th so that at most ``most`` remain."""
    step = max(1, math.ceil(n / most))
    return list(range(0, n, step))


# ---------------------------------------------------------------- confusion matrix


def confusion_counts(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts[i, j] = samples of true class ``classes[i]`` predicted as ``classes[j]``.

    Samples whose truth or prediction is not in ``classes`` are not counted.
    """
    return confusion_matrix(list(truth), list(pred), labels=list(classes)).astype(np.int64)


def top_classes(truth: Sequence[str], most: int) -> List[str]:
    """The ``most`` most frequent true classes (ties in natural order), in natural order."""
    counts = pd.Series(list(truth)).value_counts()
    order = natural_sort(counts.index)
    ranked = sorted(order, key=lambda c: -counts[c])  # stable: ties keep natural order
    return natural_sort(ranked[:most])


def confusion_matrix_png(predictions_csv, out_png, normalize: bool = True, max_classes: int = 60,
                         pred_column: str = "pred", truth_column: str = "truth") -> Optional[Path]:
    """Confusion matrix (rows truth, columns predicted) of a per-sample predictions CSV (id, pred, truth).

    Rows with an empty truth are ignored; with none labelled nothing is written and None
    returned. With more than ``max_classes`` classes only the most frequent true ones are
    shown, plus an ``(other)`` column for predictions outside them, so rows still sum to
    their full support. ``normalize`` divides each row by its support (the diagonal is recall).
    ``pred_column`` / ``truth_column`` pick another pair (a hierarchy level: pred_genus, truth_genus).
    """
    df = _read_text_table(predictions_csv, ("id", pred_column, truth_column), (pred_column, truth_column))
    df = df[["id", pred_column, truth_column]].set_axis(["id", "pred", "truth"], axis=1)
    df = df[df["truth"].notna()]
    if df.empty:
        return None
    if df["pred"].isna().any():
        raise DataError(f"{predictions_csv}: sample {df.loc[df['pred'].isna(), 'id'].iloc[0]!r} has no prediction")
    truth, pred = df["truth"].tolist(), df["pred"].tolist()
    accuracy = float(np.mean(np.asarray(truth) == np.asarray(pred)))
    all_classes = natural_sort(set(truth) | set(pred))
    title = f"accuracy {accuracy:.3f} (n={len(df)})"
    if len(all_classes) > max_classes:
        rows = top_classes(truth, max_classes)
        keep = set(rows)
        pick = np.isin(np.asarray(truth), rows)
        truth = [t for t, ok in zip(truth, pick) if ok]
        pred = [p if p in keep else OTHER_CLASSES for p, ok in zip(pred, pick) if ok]
        cols = rows + [OTHER_CLASSES]
        title += f"\n{len(rows)} most frequent of {len(set(df['truth']))} true classes shown"
    else:
        rows = cols = all_classes
    counts = confusion_counts(truth, pred, cols)[:len(rows)]
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts.astype(np.float64)
    return _draw_confusion(counts, shown, rows, cols, title, normalize, out_png)


def _draw_confusion(counts, shown, rows, cols, title, normalize, out_png) -> Path:
    side = min(MAX_FIGURE_INCHES, max(CM_MIN_INCHES, CM_CELL_INCHES * len(cols) + CM_MARGIN_INCHES))
    fig, ax = plt.subplots(figsize=(side, side))
    vmax = 1.0 if normalize else max(1.0, float(shown.max()))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    font = NORMAL_FONT if len(cols) <= ANNOTATE_MAX_CLASSES else SMALL_FONT
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=font)
    ax.set_yticks(range(len(rows)), rows, fontsize=font)
    if len(cols) <= ANNOTATE_MAX_CLASSES:
        for (i, j), n in np.ndenumerate(counts):
            if n:
                colour = "white" if shown[i, j] > DARK_CELL * vmax else "black"
                ax.text(j, i, str(n), ha="center", va="center", fontsize=font, color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=NORMAL_FONT + 2)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "samples")
    fig.tight_layout()
    return _save(fig, out_png)


# ---------------------------------------------------------------- per-class F1


def per_class_f1_png(per_class_csv, out_png) -> Path:
    """Bar per class of its F1 (file order); the ``... avg`` summary rows are horizontal lines."""
    df = _read_text_table(per_class_csv, PER_CLASS_COLUMNS, ("class",))
    df = df[df["class"].notna()]
    f1 = _numeric(df, "f1", str(per_class_csv))
    is_avg = df["class"].str.endswith(AVG_SUFFIX).to_numpy()
    names = df["class"].to_numpy()[~is_avg]
    width = min(MAX_FIGURE_INCHES, max(F1_MIN_WIDTH_INCHES, F1_BAR_INCHES * len(names) + CM_MARGIN_INCHES))
    fig, ax = plt.subplots(figsize=(width, F1_HEIGHT_INCHES))
    ax.bar(range(len(names)), f1[~is_avg], color="tab:blue")
    if len(names) <= MAX_TICK_LABELS:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=NORMAL_FONT)
    else:
        ax.set_xlabel(f"{len(names)} classes (names left off)")
    for k, (name, value) in enumerate(zip(df["class"].to_numpy()[is_avg], f1[is_avg])):
        ax.axhline(value, color="tab:red", linestyle=AVG_LINE_STYLES[k % len(AVG_LINE_STYLES)],
                   label=f"{name} {value:.3f}")
    if is_avg.any():
        ax.legend(loc="lower right", fontsize=NORMAL_FONT)
    ax.set_ylim(0, ACC_YMAX)
    ax.set_ylabel("F1")
    ax.set_title(f"per-class F1 ({len(names)} classes)")
    fig.tight_layout()
    return _save(fig, out_png)


# ---------------------------------------------------------------- plate heatmaps


def parse_well(well) -> Tuple[int, int]:
    """``B03`` -> (1, 2): 0-based row (A..Z, then AA, AB, ...) and column; anything else is a DataError."""
    m = WELL_RE.match(str(well).strip())
    if not m or int(m.group(2)) < 1:
        raise DataError(f"cannot parse well name {well!r}: expected row letter(s) and column number, e.g. B03")
    letters = m.group(1).upper()
    row = ord(letters[-1]) - ord("A")
    if len(letters) == 2:  # AA follows Z
        row += N_LETTERS * (ord(letters[0]) - ord("A") + 1)
    return row, int(m.group(2)) - 1


def row_name(row: int) -> str:
    """0-based plate row -> its letter(s), the inverse of ``parse_well``'s row."""
    if row < N_LETTERS:
        return chr(ord("A") + row)
    return chr(ord("A") + row // N_LETTERS - 1) + chr(ord("A") + row % N_LETTERS)


def plate_shape(wells: Iterable) -> Tuple[int, int]:
    """(rows, columns) of the plate: the smallest standard format holding every well, else their extent."""
    cells = [parse_well(w) for w in wells]
    if not cells:
        return PLATE_FORMATS[0]
    extent = (max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1)
    for fmt in PLATE_FORMATS:
        if extent[0] <= fmt[0] and extent[1] <= fmt[1]:
            return fmt
    return extent


def plate_grid(wells: Sequence, values: Sequence[float], shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A rows x columns array of ``values`` at their wells' positions; empty wells NaN.

    A well listed more than once gets the mean of its values (e.g. one row per site).
    ``shape`` defaults to ``plate_shape(wells)``.
    """
    if len(wells) != len(values):
        raise DataError(f"{len(wells)} wells but {len(values)} values")
    cells = [parse_well(w) for w in wells]
    shape = shape or plate_shape(wells)
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int64)
    for (r, c), w, v in zip(cells, wells, values):
        if r >= shape[0] or c >= shape[1]:
            raise DataError(f"well {w!r} lies outside a plate of {shape[0]} x {shape[1]} wells")
        if not np.isnan(v):
            total[r, c] += v
            count[r, c] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plate_heatmap_png(table: pd.DataFrame, value_column: str, out_png,
                      plate_columns: Sequence[str] = ("experiment", "plate"), well_column: str = "well",
                      title: str = "", vmin: Optional[float] = 0, vmax: Optional[float] = 1,
                      max_plates: int = MAX_PLATES) -> Path:
    """One heatmap of ``value_column`` per plate, wells on the plate grid, one shared colour scale.

    Plates are the groups of ``plate_columns`` (none: the whole table is one plate), in
    natural order; only the first ``max_plates`` are drawn and the title says so. All plates
    share one grid size (the smallest standard format holding every well). ``vmin``/``vmax``
    None: from the data.
    """
    plate_columns = list(plate_columns)
    _require(table, [*plate_columns, well_column, value_column], "plate heatmap table")
    if table.empty:
        raise DataError("plate heatmap table is empty: nothing to draw")
    values = _numeric(table, value_column, "plate heatmap table")
    shape = plate_shape(table[well_column])
    keys = _plate_keys(table, plate_columns)
    plates = natural_sort(set(keys))
    shown = plates[:max_plates]
    if len(plates) > len(shown):
        title = f"{title} (first {len(shown)} of {len(plates)} plates)".strip()
    grids = [plate_grid(table[well_column].to_numpy()[keys == p], values[keys == p], shape) for p in shown]
    return _draw_plates(grids, shown, shape, title, vmin, vmax, value_column, out_png)


def _plate_keys(table: pd.DataFrame, plate_columns: List[str]) -> np.ndarray:
    """One text key per row naming its plate ('HEPG2-01 / 1'); '' for a single-plate table."""
    if not plate_columns:
        return np.full(len(table), "", dtype=object)
    key = table[plate_columns[0]].astype(str)
    for c in plate_columns[1:]:
        key = key + PLATE_KEY_JOIN + table[c].astype(str)
    return key.to_numpy(dtype=object)


def _draw_plates(grids, names, shape, title, vmin, vmax, label, out_png) -> Path:
    n = len(grids)
    ncols = min(n, MAX_PLATE_COLUMNS)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(PLATE_INCHES[0] * ncols, PLATE_INCHES[1] * nrows + 1),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # empty wells stay blank
    rows_at, cols_at = _thin_ticks(shape[0], MAX_PLATE_TICKS), _thin_ticks(shape[1], MAX_PLATE_TICKS)
    im = None
    for ax, grid, name in zip(axes.ravel(), grids, names):
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal")
        ax.set_xticks(cols_at, [str(c + 1) for c in cols_at], fontsize=SMALL_FONT)
        ax.set_yticks(rows_at, [row_name(r) for r in rows_at], fontsize=SMALL_FONT)
        ax.set_title(name, fontsize=NORMAL_FONT)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


# ---------------------------------------------------------------- accuracy before/after assignment


def accuracy_bars_png(table: pd.DataFrame, out_png, title: str) -> Path:
    """Bar chart of per-experiment accuracy before (argmax) and after the per-plate assignment."""
    _require(table, ACCURACY_COLUMNS, "accuracy table")
    acc = table[table["experiment"] != ALL_ROW]
    fig, ax = plt.subplots(figsize=(max(ACC_MIN_WIDTH_INCHES, ACC_INCHES_PER_EXPERIMENT * len(acc)
                                        + ACC_MARGIN_INCHES), ACC_HEIGHT_INCHES))
    x = np.arange(len(acc))
    ax.bar(x - BAR_WIDTH / 2, acc["acc_argmax"], BAR_WIDTH, label="argmax")
    ax.bar(x + BAR_WIDTH / 2, acc["acc_assigned"], BAR_WIDTH, label="per-plate assignment")
    ax.set_xticks(list(x))
    ax.set_xticklabels(acc["experiment"], rotation=45, ha="right")
    ax.set_ylim(0, ACC_YMAX)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, out_png)


# ---------------------------------------------------------------- a run's figures


def run_figures(run_dir) -> List[Path]:
    """The figures of a finished run folder, as its task lists them (Task.figures): a confusion
    matrix (per level for a hierarchy) or the per-class F1 bars (multi-label)."""
    from cellpipe.tasks import load

    run_dir = Path(run_dir)
    labels_file = run_dir / layout.LABELS_CHECKPOINT
    # a folder without labels.json predates the tasks: single label
    specs = load(labels_file).figures() if labels_file.is_file() else [{"plot": "confusion", "png": layout.CONFUSION_PNG}]
    out = []
    for spec in specs:
        spec = dict(spec)
        plot, png = spec.pop("plot"), run_dir / spec.pop("png")
        if plot == "per_class_f1":
            out.append(per_class_f1_png(run_dir / spec.pop("csv"), png))
        else:
            out.append(confusion_matrix_png(run_dir / layout.VALID_PREDICTIONS, png, **spec))
    return [p for p in out if p is not None]
