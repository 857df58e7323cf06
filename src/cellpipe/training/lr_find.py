"""The learning-rate range test (seed 004's LR finder; Smith 2015, fastai's lr_find): from a fresh
model, train one batch at a time while the learning rate grows exponentially from ``min_lr`` to
``max_lr``; record the loss (exponentially smoothed), stop when it passes ``diverge`` x its minimum.
The suggestion is the learning rate of the steepest descent of the smoothed loss, capped at a tenth
of the rate of its minimum (fastai's two rules; report both)."""
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cellpipe.core.fsutil import write_csv, write_text
from cellpipe.data.build import prepare_training
from cellpipe.models import create_model
from cellpipe.training.optim import create_optimizer
from cellpipe.training.runner import make_criteria, make_loaders

log = logging.getLogger("lr_find")


def range_test(cfg: dict, stage: str, min_lr: float, max_lr: float, steps: int, smooth: float,
               diverge: float) -> pd.DataFrame:
    """lr, loss, smoothed loss per step of the range test on ``stage``'s optimizer settings."""
    prepared = prepare_training(cfg, workers=0)
    loaders = make_loaders(cfg, prepared)
    torch.manual_seed(cfg["seed"])
    model = create_model(**cfg["model_params"]).train()
    st = cfg["stages"][stage]
    model.freeze_backbone(bool(st.get("freeze_backbone")))
    params = dict(st.get("optimizer_params") or {}, **{"lr": min_lr})
    base = dict(cfg.get("optimizer_params") or {})
    optimizer = create_optimizer((p for p in model.parameters() if p.requires_grad), **{**base, **params})
    criterion = make_criteria(cfg, prepared)["train"]
    factor = (max_lr / min_lr) ** (1.0 / max(1, steps - 1))
    rows, avg, best = [], 0.0, float("inf")
    batches = iter(loaders["train"])
    for step in range(steps):
        lr = min_lr * factor ** step
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loaders["train"])
            batch = next(batches)
        loss = criterion(model(batch["features"]), batch["targets"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        avg = smooth * avg + (1 - smooth) * value
        smoothed = avg / (1 - smooth ** (step + 1))  # bias-corrected, as fastai's
        rows.append({"step": step, "lr": lr, "loss": value, "smoothed": smoothed})
        best = min(best, smoothed)
        if not np.isfinite(value) or smoothed > diverge * best:
            log.info("the loss diverged at lr %.3g (step %d): stopping", lr, step)
            break
    return pd.DataFrame(rows)


def suggest(table: pd.DataFrame) -> dict:
    """The steepest descent of the smoothed loss (in log lr) and a tenth of the lr at its minimum."""
    t = table[np.isfinite(table["smoothed"])]
    if len(t) < 3:
        return {"steepest": None, "min_over_10": None, "suggested": None}
    grad = np.gradient(t["smoothed"].to_numpy(), np.log10(t["lr"].to_numpy()))
    steepest = float(t["lr"].iloc[int(np.argmin(grad))])
    minimum = float(t["lr"].iloc[int(t["smoothed"].to_numpy().argmin())]) / 10
    return {"steepest": steepest, "min_over_10": minimum, "suggested": min(steepest, minimum)}


def plot(table: pd.DataFrame, advice: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(table["lr"], table["loss"], color="0.75", lw=1, label="loss")
    ax.plot(table["lr"], table["smoothed"], color="C0", lw=2, label="smoothed")
    if advice["suggested"]:
        ax.axvline(advice["suggested"], color="C3", ls="--", label=f"suggested {advice['suggested']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def lr_find(cfg: dict, out_dir, stage: str = "finetune", min_lr: float = 1e-6, max_lr: float = 1.0,
            steps: int = 100, smooth: float = 0.9, diverge: float = 4.0) -> dict:
    """Run the test and write lr_find.csv, lr_find.png and lr_find.json into ``out_dir``."""
    import json

    out = Path(out_dir)
    table = range_test(cfg, stage, min_lr, max_lr, steps, smooth, diverge)
    advice = suggest(table)
    write_csv(table, out / "lr_find.csv")
    plot(table, advice, out / "lr_find.png")
    result = {"stage": stage, "steps": len(table), **advice}
    write_text(json.dumps(result, indent=2) + "\n", out / "lr_find.json")
    return result
