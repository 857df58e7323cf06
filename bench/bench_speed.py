"""The project's speed as ratios to its targets (issue 10), in one run on this machine.

    make bench        # python bench/bench_speed.py [--out_dir bench_out/speed] [--image_size 512]

1. data path (generated six-stain RxRx1 sites at real size, 512 px; files warm in the page cache):
   - the dataset's samples/s (PNG path: decode, normalise, C x H x W float32) against raw OpenCV
     decoding of the same PNGs                                                target >= 0.9
   - the packed cache's pixel reads against the PNG path's (decode + resize)  target >= 20x
     (whole dataset samples/s with and without the cache are printed beside it)
2. training: one finetune stage through Catalyst (our callbacks: whole-loader metrics, history,
   checkpoints + resume state, CSV and TensorBoard logs) against a plain PyTorch loop (forward,
   loss, backward, step, scheduler, validation forward) on the same model, loaders, batch size and
   initial weights                                                            target <= 1.05
3. prediction: src/inference.py predict-all (run discovery, checkpoint, tables, normalisation,
   both splits, the output files) against a bare forward pass over the same samples  target <= 1.1
4. the full-size ensemble (bench_ensemble.py: 19,897 wells x 1,108 classes x 6 models) and its
   peak memory.
5. the model service (bench_serve.py): throughput and p50/p95 latency under concurrent clients as
   ratios to a bare forward pass, answers lost or mixed up (target 0), a burst beyond the queue and
   broken uploads (target 0 unanswered).
6. a hyperparameter study (bench_sweep.py): the driver's scheduling/storage/results time and the
   trials' pruning reports as ratios to the sum of the trials' durations (target <= 0.05, <= 0.01).

Every figure is the best of ``repeats`` timings. Ratios above 1 for "<=" targets (below 1 for ">=")
miss. The table is also written to {out_dir}/bench_speed.csv.
"""
import copy
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import fire
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import bench_serve  # noqa: E402
import bench_sweep  # noqa: E402

from cellpipe.core import config as cfglib  # noqa: E402
from cellpipe.core import layout  # noqa: E402
from cellpipe.core.fsutil import write_csv  # noqa: E402
from cellpipe.core.images import resize_planes  # noqa: E402
from cellpipe.data.build import make_eval_dataset, prepare_training, split_table  # noqa: E402
from cellpipe.data.cache import PackedImages, pack  # noqa: E402
from cellpipe.data.dataset import SampleDataset  # noqa: E402
from cellpipe.data.normalize import make_normalizer  # noqa: E402
from cellpipe.inference.predict import load_run, predict_all  # noqa: E402
from cellpipe.models import create_model  # noqa: E402
from cellpipe.sources import make_source  # noqa: E402
from cellpipe.training.optim import create_optimizer, create_scheduler  # noqa: E402
from cellpipe.training.runner import (  # noqa: E402
                                      forward_sites,
                                      make_criteria,
                                      make_engine,
                                      make_loaders,
                                      run_stage,
                                      train,
)

CHANNELS = [1, 2, 3, 4, 5, 6]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def generate(out: Path, image_size: int, **kwargs) -> Path:
    """A generated RxRx1 set (and its 3 folds) under ``out``, made once."""
    data, csv = out / "data", out / "csv"
    if not (csv / "valid_0.csv").is_file():
        args = [f"--{k}={v}" for k, v in kwargs.items()]
        subprocess.run([sys.executable, "src/make_demo_data.py", "--out_dir", str(data),
                        f"--image_size={image_size}", *args], cwd=REPO, check=True, capture_output=True)
        subprocess.run([sys.executable, "src/make_folds.py", str(data), "--out_dir", str(csv), "--n_folds", "3"],
                       cwd=REPO, check=True, capture_output=True)
    return data


def config(data: Path, overrides=(), overlays=("configs/demo.yml",)) -> dict:
    csv = data.parent / "csv"
    return cfglib.load_config(REPO / "configs/config.yml", [REPO / o for o in overlays], [
        f"--data_params/root={data}", f"--data_params/train_csv={csv}/train_0.csv",
        f"--data_params/valid_csv={csv}/valid_0.csv", "--data_params/num_workers=0", *overrides])


# ------------------------------------------------------------------ 1. data path
def data_figures(out: Path, image_size: int, repeats: int) -> list:
    data = generate(out / f"data{image_size}", image_size, n_sirnas=8, n_controls=1, cell_types=1,
                    train_experiments_per_type=3, test_experiments_per_type=1)
    cfg = config(data, [f"--data_params/image_size={image_size}", f"--data_params/channels={CHANNELS}"])
    dp = cfg["data_params"]
    source = make_source(dp)
    table = source.catalog()
    normalizer = make_normalizer(dp, source, [table])
    rows = table.to_dict("records")
    files = [source.image_files(r, s, CHANNELS) for r in rows for s in source.sites]

    def raw():
        for fs in files:
            planes = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in fs]
            cv2.merge(planes)

    sites = list(source.sites)
    png = SampleDataset(table, source, CHANNELS, sites, image_size, normalizer, None, train=False)
    folder = pack(source, out / "cache", image_size)
    cache = PackedImages(folder)
    cached = SampleDataset(table, source, CHANNELS, sites, image_size, normalizer, None, train=False, cache=cache)

    def whole(ds):
        def read():
            for i in range(len(ds)):
                ds[i]
        return read

    def pixels_png():  # decoded and resized, one plane per channel, as the loader gets them
        for r in rows:
            for s in sites:
                resize_planes(source.load_planes(r, s, CHANNELS), image_size)

    def pixels_cache():  # the loader reads the memmap in place; the copy here makes the pages count
        for r in rows:
            for s in sites:
                [np.array(p) for p in cache.read(source, r, s, CHANNELS)]

    n = len(files)
    t_raw, t_png, t_cached = (best_of(f, repeats) for f in (raw, whole(png), whole(cached)))
    t_px_png, t_px_cache = best_of(pixels_png, repeats), best_of(pixels_cache, repeats)
    assert cache.misses == 0, "sites missing from the cache"

    def loader_rate(ds, workers):
        loader = DataLoader(ds, batch_size=8, num_workers=workers)
        return n / best_of(lambda: [None for _ in loader], 1)

    print(f"data: {n} sites of {len(CHANNELS)} x {image_size} px; per site: raw decode {1e3 * t_raw / n:.1f} ms, "
          f"dataset {1e3 * t_png / n:.1f} ms, cached dataset {1e3 * t_cached / n:.1f} ms, "
          f"pixels from PNG {1e3 * t_px_png / n:.1f} ms, from the cache {1e3 * t_px_cache / n:.2f} ms")
    print(f"DataLoader (batch 8 wells x {len(sites)} sites) sites/s: PNG 0 workers {loader_rate(png, 0):.0f}, 2 workers "
          f"{loader_rate(png, 2):.0f}; cache 0 workers {loader_rate(cached, 0):.0f}, 2 workers "
          f"{loader_rate(cached, 2):.0f}")
    return [
        ("dataset samples/s vs raw OpenCV decode", t_raw / t_png, ">=", 0.9),
        ("packed cache vs PNG: pixel reads", t_px_png / t_px_cache, ">=", 20.0),
        ("packed cache vs PNG: whole samples (info)", t_png / t_cached, "info", None),
    ]


# ------------------------------------------------------------------ 2. training
def plain_stage(model, loaders, criterion, stage: dict, epochs: int) -> None:
    """The same work as one Catalyst stage, written as a bare loop."""
    optimizer = create_optimizer(model.parameters(), **stage["optimizer_params"])
    scheduler = create_scheduler(optimizer, stage.get("scheduler_params"), epochs, len(loaders["train"]))
    for _ in range(epochs):
        model.train()
        for batch in loaders["train"]:
            loss = criterion(model(batch["features"]), batch["targets"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for batch in loaders["valid"]:
                correct += (forward_sites(model, batch["features"]).argmax(1) == batch["targets"]).sum().item()


def training_figures(out: Path, repeats: int, epochs: int, model_name: str, image_size: int):
    data = generate(out / f"data_train{image_size}", image_size, train_experiments_per_type=6,
                    test_experiments_per_type=3)
    overrides = [f"--model_params/model_name={model_name}", f"--data_params/image_size={image_size}",
                 f"--data_params/cache={out / 'cache'}", "--data_params/batch_size=32",
                 "--stages/warmup/num_epochs=1", f"--stages/finetune/num_epochs={epochs}"]
    cfg = config(data, overrides)
    prepared = prepare_training(cfg)
    loaders = make_loaders(cfg, prepared)
    engine = make_engine(cfg["engine_params"])
    criteria = make_criteria(cfg, prepared)
    torch.manual_seed(0)
    start = create_model(**cfg["model_params"])
    stage = cfglib.stage_settings(cfg, "finetune")
    n_batches = len(loaders["train"])

    calls = iter(range(1000))

    def catalyst_run():  # a fresh stage folder each time (no resume state to pick up)
        logdir = out / f"catalyst_stage_{next(calls)}"
        shutil.rmtree(logdir, ignore_errors=True)
        run_stage(cfg, "finetune", copy.deepcopy(start), loaders, logdir, engine, criteria, prepared.labels)

    def plain_run():
        plain_stage(copy.deepcopy(start), loaders, criteria["train"], stage, epochs)

    plain_stage(copy.deepcopy(start), loaders, criteria["train"], stage, 1)  # warm-up (threads, allocator)
    t_catalyst, t_plain = best_of(catalyst_run, repeats), best_of(plain_run, repeats)
    print(f"training: {model_name} at {image_size} px, batch 32, {n_batches} training batches x {epochs} epochs; "
          f"Catalyst stage {t_catalyst:.1f} s, plain loop {t_plain:.1f} s")

    # a finished run for the prediction figure (the seed's tree: <channels>/fold_0/<model_name>)
    root = out / f"runs_{model_name}_{image_size}px"
    run_dir = root / layout.channels_tag(cfg["data_params"]["channels"]) / "fold_0" / model_name
    train(cfg, run_dir)
    return [("Catalyst epoch vs plain PyTorch loop", t_catalyst / t_plain, "<=", 1.05)], (cfg, root, run_dir, data)


# ------------------------------------------------------------------ 3. prediction
def predict_figures(out: Path, run, repeats: int) -> list:
    cfg, root, run_dir, data = run
    batch = cfg["data_params"]["batch_size"]
    model_name = run_dir.name

    def predict():
        predict_all(str(data), str(root), model_name, str(out / "predictions"), batch_size=batch, overwrite=True)

    model, rcfg, labels, payload = load_run(run_dir, torch.device("cpu"))
    dp = dict(rcfg["data_params"])
    source = make_source(dp)
    tables = [split_table(source, dp, "test"), split_table(source, dp, "valid")]
    normalizer = make_normalizer(dp, source, tables)
    datasets = [make_eval_dataset(dp, source, t, labels, normalizer, "bench") for t in tables]

    @torch.inference_mode()
    def bare():
        for ds in datasets:
            for b in DataLoader(ds, batch_size=batch):
                forward_sites(model, b["features"])

    predict()  # warm-up
    t_predict, t_bare = best_of(predict, repeats), best_of(bare, repeats)
    n = sum(len(d) for d in datasets)
    print(f"prediction: {n} samples x {len(datasets[0].sites)} sites; predict-all {t_predict:.2f} s, "
          f"bare forward {t_bare:.2f} s; the difference ({t_predict - t_bare:.2f} s) is mostly per-run start-up "
          f"(checkpoint, model, tables, normalisation) and the output files")
    return [("predict-all vs bare forward pass", t_predict / t_bare, "<=", 1.1)]


# ------------------------------------------------------------------ 4. ensemble
def ensemble_figures(n_classes: int) -> list:
    # RxRx1's test set: 19,897 wells of 1,108 siRNAs; a smaller problem keeps its shape (wells per class)
    n_wells = round(19897 * n_classes / 1108)
    proc = subprocess.run([sys.executable, str(REPO / "bench/bench_ensemble.py"), f"--n_wells={n_wells}",
                           f"--n_classes={n_classes}"], cwd=REPO, check=True,
                          capture_output=True, text=True)
    print(proc.stdout.strip())
    seconds = float(re.search(r"ensemble\+assignment: ([\d.]+) s", proc.stdout).group(1))
    target = float(re.search(r"target ([\d.]+) s", proc.stdout).group(1))
    peak = float(re.search(r"peak memory ([\d.]+) GiB", proc.stdout).group(1))
    return [("full-size ensemble + assignment (s / target s)", seconds / target, "<=", 1.0),
            ("full-size ensemble peak memory, GiB (info)", peak, "info", None)]


def main(out_dir: str = "bench_out/speed", image_size: int = 512, repeats: int = 2, epochs: int = 2,
         model_name: str = "resnet18", train_image_size: int = 128, ensemble_classes: int = 1108,
         serve_image_size: int = 64, serve_clients: int = 8, serve_requests: int = 32, serve_burst: int = 64,
         serve_onnx: bool = True, sweep_trials: int = 4, sweep_epochs: int = 3):
    """Args:
        out_dir: where the generated data, cache, runs and bench_speed.csv go.
        image_size: side of the generated sites for the data-path figures (512: RxRx1's).
        repeats: timings per figure (the best is kept).
        epochs: finetune epochs of the training figure.
        model_name: timm backbone of the training and prediction figures (random weights).
        train_image_size: image side of the training and prediction figures.
        ensemble_classes: classes of the ensemble figure (1108: RxRx1's full size, 19,897 wells; the 5 s target
            is for that size, smaller problems keep the wells per class).
        serve_image_size: image side of the service figures (bench_serve.py).
        serve_clients: concurrent clients of the service's load step (0: no service figures).
        serve_requests: single-image requests per client.
        serve_burst: concurrent requests of the service's burst step.
        serve_onnx: also measure the service's ONNX runtime.
        sweep_trials: trials of the study figures (bench_sweep.py; 0: none).
        sweep_epochs: finetune epochs of each trial.
    """
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = data_figures(out, image_size, repeats)
    train_rows, run = training_figures(out, repeats, epochs, model_name, train_image_size)
    rows += train_rows
    rows += predict_figures(out, run, repeats)
    rows += ensemble_figures(ensemble_classes)
    if serve_clients:  # 0: no service figures
        rows += bench_serve.run(str(out / "serve"), image_size=serve_image_size, clients=serve_clients,
                                requests=serve_requests, burst=serve_burst, onnx=serve_onnx)
    if sweep_trials:
        rows += bench_sweep.run(str(out / "sweep"), n_trials=sweep_trials, epochs=sweep_epochs)
    table = pd.DataFrame(rows, columns=["figure", "value", "goal", "target"])
    table["ratio_to_target"] = [v / t if t else None for v, t in zip(table.value, table.target)]
    table["met"] = ["" if pd.isna(t) else ("yes" if (v >= t if g == ">=" else v <= t) else "NO")
                    for v, g, t in zip(table.value, table.goal, table.target)]
    write_csv(table, out / "bench_speed.csv")
    print()
    print(f"{'figure':50s} {'value':>8s} {'target':>10s} {'value/target':>12s}  met")
    for r in table.itertuples():
        target = "" if r.target is None or pd.isna(r.target) else f"{r.goal} {r.target:g}"
        ratio = "" if pd.isna(r.ratio_to_target) else f"{r.ratio_to_target:.2f}"
        print(f"{r.figure:50s} {r.value:8.2f} {target:>10s} {ratio:>12s}  {r.met}")
    print(f"bench finished in {time.time() - started:.0f} s; table in {out / 'bench_speed.csv'}")


if __name__ == "__main__":
    fire.Fire(main)
