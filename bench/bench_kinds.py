"""Per target kind: the project's default recipe against a plain PyTorch CNN, measured in one run.

    make bench-accuracy-kinds                                  # every row of configs/bench/kinds.yml
    python bench/bench_kinds.py --rows multilabel --out_dir bench_out/kinds
    python bench/bench_kinds.py --rows multilabel --candidates_dir bench_out/kinds_select   # choose on validation

Per row: generate the kind's hard set (src/make_demo_data.py --kind K --preset hard), make folds when
the layout has no validation split (src/dedup.py, src/make_folds.py), then, timed, the project's
commands (bin/train_classify.sh with the model recipe, src/inference.py predict-all, src/ensemble.py
--truth) and, timed, the plain CNN of bench/plain_cnn.py in this process on the same training,
validation and test samples, the run's own targets (labels.json) and the same number of epochs.
Scores are on the held-out test split, which nothing is chosen on. ``--candidates_dir`` trains each of a
row's ``candidates`` (override sets) and ranks them on the validation split only: that is how the
defaults in configs/ were chosen. A finished row is reused (delete its folder to redo it).
"""
import json
import sys
import time
from pathlib import Path

import fire
import numpy as np
import pandas as pd
from rows import REPO, load_rows, sh

sys.path.insert(0, str(REPO / "src"))


def prepare_data(row: dict, out: Path, python: str):
    """The row's data set, its fold files (or None: the layout's own splits) and a truth CSV of the test split."""
    out.mkdir(parents=True, exist_ok=True)
    data, log = out / "data", out / "data.log"
    if not data.is_dir():  # = src/make_demo_data.py --kind K --preset hard, with the row's `data` overrides
        from cellpipe.demo.generic import WRITERS, presets

        WRITERS[row["kind"]](data, seed=0, **{**presets(row["kind"])["hard"], **(row.get("data") or {})})
    csv = None
    if row.get("folds"):
        csv = out / "csv"
        if row["folds"].get("dedup") and not (csv / "duplicates.csv").is_file():
            sh([python, "src/dedup.py", data, "--source", row["source"], "--out", csv / "duplicates.csv"], log=log)
        if not (csv / "folds.json").is_file():
            dup = ["--duplicates", csv / "duplicates.csv"] if row["folds"].get("dedup") else []
            sh([python, "src/make_folds.py", data, "--out_dir", csv, "--n_folds", row["folds"]["n_folds"],
                "--source", row["source"], *row["folds"].get("extra", []), *dup], log=log)
    truth = data / row["truth"] if row.get("truth") else out / "test_truth.csv"
    if not truth.is_file():  # a labelled test split: its labels, for src/ensemble.py --truth
        from cellpipe.sources import make_source

        test = make_source({"source": row["source"], "root": str(data)}).split("test")
        test[["id", "label"]].to_csv(truth, index=False)
    return data, csv, truth


def project(row, cfg, data, csv, truth, out: Path, python, extra=(), predict=()) -> dict:
    """bin/train_classify.sh (fold 0), predict-all, ensemble: validation (out-of-fold) scores, test
    scores (without ``truth``: none) and seconds."""
    log = out / "log.txt"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = {"PYTHON": python, "SOURCE": row["source"], "DATA_DIR": str(data), "LOG_DIR": str(out / "logs"),
           "CSV_DIR": str(csv or ""), "FOLDS": "0", "MODEL_CONFIG": cfg["model_config"],
           "DATA_CONFIG": row["data_config"], "MODEL": "", "MODEL_NAME": "", "OVERLAY": ""}
    timings = {}
    sh(["bash", "bin/train_classify.sh", *row.get("train", []), *extra], env, log, timings)
    run = next((out / "logs").rglob("DONE.json")).parent
    done = json.loads((run / "DONE.json").read_text())
    history = pd.read_csv(run / "history.csv")
    result = {"valid": done["valid"], "run": str(run), "epochs": len(history),
              "epoch_seconds": float(history["seconds"].median())}
    sh([python, "src/inference.py", "predict-all", "--data_root", data, "--model_root",
        out / "logs" / row["source"], "--model_name", run.name, "--out_dir", out / "predictions",
        "--overwrite", *row.get("predict", []), *predict], log=log, timings=timings)
    sh([python, "src/ensemble.py", "--pred_dirs", out / "predictions", "--out_dir", out / "ensemble",
        *(["--truth", truth] if truth else [])], log=log, timings=timings)
    scores = json.loads((out / "ensemble" / "oof_scores.json").read_text())
    for split in ("oof", "test"):
        result[split] = {k[len(split) + 1:]: v for k, v in scores.items() if k.startswith(f"{split}_")}
    result["seconds"] = time.perf_counter() - started
    result["timings"] = {**timings, "epochs": round(float(history["seconds"].sum()), 1)}
    return result


def load_split(source, dp, name, csv, labels, size, truth=None):
    """Images (N x C x H x W uint8, resized as the run resizes) and the run's targets of one split
    (labels from ``truth``, a CSV of id, label, when given)."""
    from cellpipe.data.build import split_table
    from cellpipe.data.cache import uint8_planes

    table = split_table(source, dp, name, csv)
    if truth is not None:
        known = pd.read_csv(truth, dtype=str).set_index("id")["label"]
        table = table.assign(label=table["id"].astype(str).map(known).to_numpy())
    # the run's own reader and resize (any channel count), rounded to uint8 as its image cache is
    x = np.stack([np.stack(uint8_planes(source, r, 1, dp["channels"], size)) for r in table.to_dict("records")])
    return x, labels.encode(table, f"{name} split")


def plain(run_dir: Path, epochs: int, params: dict, truth: Path) -> dict:
    """The plain CNN on the run's splits and targets: test (and validation) scores, seconds."""
    from plain_cnn import fit_predict

    from cellpipe import tasks
    from cellpipe.core import config as cfglib
    from cellpipe.sources import make_source

    started = time.perf_counter()
    run_cfg = cfglib.read_run_config(run_dir / "config.yml")
    dp = run_cfg["data_params"]
    labels = tasks.load(run_dir / "checkpoints" / "labels.json")
    source = make_source(dp)
    splits = {"train": dp["train_csv"], "valid": dp["valid_csv"], "test": None}
    data = {k: load_split(source, dp, k, v, labels, dp["image_size"], truth if k == "test" else None)
            for k, v in splits.items()}
    multilabel = labels.kind == "multilabel"

    def first(y):  # a hierarchy's targets: one column per level, the finest first
        return y if multilabel or y.ndim == 1 else y[:, 0]

    x, y = data["train"]
    fit_started = time.perf_counter()
    probs = fit_predict(x, first(y), [data["valid"][0], data["test"][0]], len(labels.classes), multilabel,
                        epochs, **params)
    fit_seconds = time.perf_counter() - fit_started
    scores = {}
    for (name, (_, targets)), p in zip(list(data.items())[1:], probs):
        if multilabel:
            thresholds = labels.fit_thresholds(probs[0], data["valid"][1], None)
            s = labels.score(p, targets, thresholds)
        else:
            s = {"accuracy01": float((p.argmax(1) == first(targets)).mean())}
        scores[name] = s
    return {"test": scores["test"], "valid": scores["valid"], "seconds": time.perf_counter() - started,
            "epoch_seconds": fit_seconds / epochs}


def total_epochs(run_dir: Path) -> int:
    from cellpipe.core import config as cfglib

    return sum(int(s["num_epochs"]) for s in cfglib.read_run_config(run_dir / "config.yml")["stages"].values())


def run_row(name, row, cfg, out: Path, python) -> dict:
    done = out / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    data, csv, truth = prepare_data(row, out, python)
    proj = project(row, cfg, data, csv, truth, out / "project", python)
    run = Path(proj["run"])
    base = plain(run, total_epochs(run), cfg["plain"], truth)
    metric = row["metric"]
    result = {"row": name, "kind": json.loads((run / "DONE.json").read_text())["target"], "metric": metric,
              "project": proj["test"][metric], "plain": base["test"][metric],
              "project_s": round(proj["seconds"], 1), "plain_s": round(base["seconds"], 1),
              "wall_ratio": round(proj["seconds"] / base["seconds"], 2),
              "epoch_ratio": round(proj["epoch_seconds"] / base["epoch_seconds"], 2),
              "project_test": proj["test"], "plain_test": base["test"], "plain_valid": base["valid"],
              "project_valid": proj["valid"], "project_timings": proj["timings"],
              "plain_epoch_s": round(base["epoch_seconds"], 2), "project_epoch_s": round(proj["epoch_seconds"], 2)}
    done.write_text(json.dumps(result, indent=2))
    return result


def candidates(name, row, cfg, out: Path, python) -> pd.DataFrame:
    """Each of the row's candidates ({train: [flags], predict: [flags]}), scored on the validation
    fold by the ensemble's out-of-fold score of the row's metric; the test split is never scored."""
    data, csv, _ = prepare_data(row, out, python)
    table = []
    for cand, spec in (row.get("candidates") or {"default": {}}).items():
        spec = spec or {}
        folder = out / cand.replace("+", "_")
        res = folder / "candidate.json"
        if not res.is_file():
            r = project(row, cfg, data, csv, None, folder, python, spec.get("train", []), spec.get("predict", []))
            res.write_text(json.dumps(r, indent=2))
        r = json.loads(res.read_text())
        table.append({"row": name, "candidate": cand, f"valid_{row['metric']}": r["oof"].get(row["metric"]),
                      "epoch_s": round(r["epoch_seconds"], 2), "seconds": round(r["seconds"], 1)})
    return pd.DataFrame(table).sort_values(f"valid_{row['metric']}", ascending=False)


def main(config="configs/bench/kinds.yml", out_dir="bench_out/kinds", rows=None, python=sys.executable,
         candidates_dir=None):
    """Run the rows (all, or a comma-separated subset) and print one table.

    Args:
        config: the benchmark's YAML (recipe overlay, plain CNN settings, one entry per kind).
        out_dir: one folder per row (data, folds, runs, predictions; finished rows are reused).
        rows: comma-separated row names (default: every row of the config).
        python: the interpreter the project's commands run with.
        candidates_dir: instead of the table, train each row's ``candidates`` there and rank them
            on validation (the test split is not predicted).
    """
    cfg, names = load_rows(config, rows)
    if candidates_dir:
        df = pd.concat([candidates(n, cfg["rows"][n], cfg, Path(candidates_dir) / n, python) for n in names])
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        df.to_csv(Path(candidates_dir) / "candidates.csv", index=False)
        return None
    out = Path(out_dir)
    table = []
    for name in names:
        print(f"row {name} ...", flush=True)
        table.append(run_row(name, cfg["rows"][name], cfg, out / name, python))
    df = pd.DataFrame(table)[["row", "kind", "metric", "project", "plain", "project_s", "plain_s", "wall_ratio",
                              "epoch_ratio"]]
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "kinds.csv", index=False)
    return None


if __name__ == "__main__":
    fire.Fire(main)
