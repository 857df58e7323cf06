"""Accuracy ablation on the hard benchmark: one row per trick, each through the project's own commands.

    make bench-accuracy                       # every row of configs/bench/accuracy.yml
    python bench/bench_accuracy.py --rows baseline,adabn --out_dir bench_out/accuracy

Generates the hard data once (src/make_demo_data.py --preset hard), makes 3 folds grouped by
experiment (src/make_folds.py), then per row: bin/train.sh (Part II, no Part I weights) on the
configured folds, src/inference.py predict-all, src/ensemble.py (per-plate assignment). Prints one
table: out-of-fold top-1 before / after the assignment, held-out test top-1 before / after (the
generator's test_labels.csv: reported, never used to choose), and wall time. Rows are chosen on
out-of-fold scores. A finished row is reused (delete its folder to redo it).
"""
import json
import sys
import time
from pathlib import Path

import fire
import pandas as pd
from rows import load_rows, sh


def heldout_accuracy(ens_dir: Path, data: Path) -> dict:
    assigned = pd.read_csv(ens_dir / "test_assigned.csv")
    truth = pd.read_csv(data / "test_labels.csv")
    m = assigned.merge(truth, on="id_code", suffixes=("", "_true"))
    return {"test_argmax": float((m["sirna_argmax"] == m["sirna_true"]).mean()),
            "test_assigned": float((m["sirna"] == m["sirna_true"]).mean())}


def run_row(name, row, cfg, data, csv, out: Path, python) -> dict:
    done = out / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    started = time.time()
    log = out / "log.txt"
    out.mkdir(parents=True, exist_ok=True)
    env = {"PYTHON": python, "DATA_DIR": str(data), "LOG_DIR": str(out / "logs"), "CSV_DIR": str(csv),
           "PRETRAINED_CONTROL": "", "MODEL": "timm", "MODEL_NAME": "test_resnet", "CHANNELS": cfg["channels"],
           "FOLDS": " ".join(str(f) for f in cfg["folds"]), "OVERLAY": cfg["overlay"]}
    sh(["bash", "bin/train.sh", *cfg.get("train", []), *row.get("train", [])], env, log)
    sh([python, "src/inference.py", "predict-all", "--data_root", data, "--model_root", out / "logs" / "non_pseudo",
        "--model_name", "test_resnet", "--out_dir", out / "predictions", *row.get("predict", [])], log=log)
    sh([python, "src/ensemble.py", "--data_root", data, "--pred_dirs", out / "predictions",
        "--out_dir", out / "ensemble"], log=log)
    final = out / "ensemble"
    rounds = row.get("pseudo_rounds")
    if rounds:  # progressive pseudo-labelling on top of this row's Part II ensemble
        sh(["bash", "bin/train_pseudo_rounds.sh", *cfg.get("train", []), *row.get("train", [])],
           {**env, "PRED_DIR": str(out / "predictions_pseudo"), "ENS_DIR": str(out / "ensembles"),
            "ENSEMBLE_DIR": str(final), "PSEUDO_CSV_ROOT": str(out / "csv"), "ROUNDS": str(rounds["rounds"]),
            "TOP_STEP": str(rounds["top_step"]),
            "UNIT": rounds.get("unit", "plate"), "PREDICT_ARGS": " ".join(row.get("predict", []))}, log)
        final = out / "ensembles" / f"pseudo_r{rounds['rounds']}"
    oof = pd.read_csv(final / "oof_accuracy.csv").set_index("experiment").loc["ALL"]
    result = {"row": name, "oof_argmax": float(oof["acc_argmax"]), "oof_assigned": float(oof["acc_assigned"]),
              **heldout_accuracy(final, data), "minutes": round((time.time() - started) / 60, 1)}
    done.write_text(json.dumps(result, indent=2))
    return result


def main(config="configs/bench/accuracy.yml", out_dir="bench_out/accuracy", rows=None, python=sys.executable):
    """Run the rows (all, or a comma-separated subset) and print the ablation table.

    Args:
        config: the ablation's YAML (data flags, folds, overlay, common and per-row overrides).
        out_dir: data, folds and one folder per row (finished rows are reused).
        rows: comma-separated row names (default: every row of the config).
        python: the interpreter the commands run with.
    """
    cfg, names = load_rows(config, rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data, csv = out / "data", out / "csv"
    if not (data / "test_labels.csv").is_file():
        flags = [f"--{k}={v}" for k, v in cfg["data"].items()]
        sh([python, "src/make_demo_data.py", "--out_dir", data, "--pixel_stats", "false", *flags], log=out / "data.log")
    if not (csv / "folds.json").is_file():
        sh([python, "src/make_folds.py", "--data_root", data, "--out_dir", csv, "--n_folds", "3"], log=out / "data.log")
    table = []
    for name in names:
        print(f"row {name} ...", flush=True)
        table.append(run_row(name, cfg["rows"][name] or {}, cfg, data, csv, out / name.replace("+", "_"), python))
    df = pd.DataFrame(table)
    base = df[df["row"] == "baseline"]
    if len(base):
        df["oof_gain"] = df["oof_argmax"] - float(base["oof_argmax"].iloc[0])
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    df.to_csv(out / "ablation.csv", index=False)
    return None


if __name__ == "__main__":
    fire.Fire(main)
