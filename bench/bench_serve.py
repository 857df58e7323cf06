"""The model service under a bounded load on 127.0.0.1, against a bare forward pass (issue 18).

    python bench/bench_serve.py [--out_dir bench_out/serve] [--clients 8] [--requests 32]   # also a row of make bench

A package of the default classify recipe's model (configs/model/compact.yml, freshly initialised:
speed does not depend on the weights; TTA off so that one sample is one forward) serves generated
RGB images. Then, every step bounded by its request count (nothing runs on a timer):

1. ``clients`` threads each send ``requests`` single-image requests at once: throughput (samples/s)
   as a ratio to a bare ``model(x)`` at the service's batch size ``max_batch``; p50 / p95 latency as
   ratios to a bare forward of one sample; the mean batch the micro-batcher formed.
2. one client sends ``batch_requests`` requests of ``max_batch`` images: throughput / bare forward.
3. every answer is compared with the offline ``classify`` of the same image: lost or mixed-up
   answers (target 0).
4. the same bare forward through the package's ONNX weights on onnxruntime: time ratio and the
   largest logit difference; the load of step 1 on a ``--runtime onnx`` server.
5. three clients disconnect mid-upload, then a burst of ``burst`` concurrent requests hits a server
   whose queue holds ``burst_queue``: every request must be answered (200 or 503; target 0
   unanswered), and the server must still answer afterwards.

Prints the table and writes {out_dir}/bench_serve.csv.
"""
import sys
import threading
import time
from pathlib import Path

import fire
import httpx
import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cellpipe.core import config as cfglib  # noqa: E402
from cellpipe.core.fsutil import write_csv  # noqa: E402
from cellpipe.demo.generic import write_manifest  # noqa: E402
from cellpipe.inference.classify import classify  # noqa: E402
from cellpipe.inference.package import export  # noqa: E402
from cellpipe.inference.predictor import Predictor  # noqa: E402
from cellpipe.serve.process import partial_uploads, running_server  # noqa: E402
from cellpipe.training.fresh import fresh_run  # noqa: E402


def package(out: Path, n_images: int, image_size: int, onnx: bool) -> tuple:
    root = write_manifest(out / "data", n_classes=4, per_class=max(4, n_images // 4), size=image_size).parent
    cfg = cfglib.load_config(str(REPO / "configs/classify.yml"),
                             [str(REPO / "configs/model/compact.yml"), str(REPO / "configs/data/manifest.yml")],
                             [f"--data_params/root={root}", f"--data_params/image_size={image_size}",
                              "--predict_params/tta=none"])
    run = fresh_run(cfg, out / "run")
    pkg = export([run], out / "package", onnx=onnx)
    return pkg, sorted((root / "images").glob("*.png"))


def bare_seconds(predictor: Predictor, batch: int, image_size: int, repeats: int) -> float:
    """Best time of ``model(x)`` on a ``batch`` x C x S x S tensor (no decoding, no HTTP), with the
    predictor's runtime (PyTorch, or onnxruntime behind the same call)."""
    model = predictor.members[0].model
    x = torch.randn(batch, predictor.n_channels, image_size, image_size)
    best = float("inf")
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best


def _files(paths):
    return [("image", (p.name, p.read_bytes(), "image/png")) for p in paths]


def load(url: str, images, clients: int, requests: int):
    """(wall seconds, per-request latencies, answers [(path, status, json)])."""
    answers, latencies, lock = [], [], threading.Lock()

    def client(c):
        with httpx.Client(timeout=300) as http:
            for r in range(requests):
                path = images[(c * requests + r) % len(images)]
                start = time.perf_counter()
                a = http.post(url + "/predict", files=_files([path]))
                with lock:
                    latencies.append(time.perf_counter() - start)
                    answers.append((path, a.status_code, a.json()))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, np.asarray(latencies), answers


def wrong(answers, reference: pd.DataFrame) -> int:
    """Answers lost (not 200) or not those of their own image (pred / prob differ from offline)."""
    bad = 0
    for paths, status, body in answers:
        paths = paths if isinstance(paths, list) else [paths]
        rows = body.get("predictions", []) if status == 200 else []
        if len(rows) != len(paths):
            bad += len(paths)
            continue
        for path, row in zip(paths, rows):
            ref = reference.loc[str(path)]
            bad += int(row["path"] != path.name or row["pred"] != ref["pred"] or abs(row["prob"] - ref["prob"]) > 1e-5)
    return bad


def run(out_dir: str = "bench_out/serve", n_images: int = 256, image_size: int = 64, clients: int = 8,
         requests: int = 32, max_batch: int = 16, max_wait_ms: float = 5.0, batch_requests: int = 16,
         burst: int = 64, burst_queue: int = 4, repeats: int = 5, onnx: bool = True) -> list:
    """Run the benchmark (flags as in main); returns the rows (figure, value, goal, target), printed and
    written to {out_dir}/bench_serve.csv."""
    out = Path(out_dir)
    pkg, images = package(out, n_images, image_size, onnx)
    reference = pd.read_csv(classify([str(pkg)], [str(p) for p in images], str(out / "offline.csv")),
                            keep_default_na=False).set_index("path")
    predictor = Predictor([str(pkg)], "cpu")
    bare_batch = bare_seconds(predictor, max_batch, image_size, repeats)
    bare_one = bare_seconds(predictor, 1, image_size, repeats)
    if onnx:
        onnx_predictor = Predictor([str(pkg)], "cpu", runtime="onnx")
        onnx_batch, onnx_one = (bare_seconds(onnx_predictor, b, image_size, repeats) for b in (max_batch, 1))
        x = torch.randn(max_batch, onnx_predictor.n_channels, image_size, image_size)
        with torch.inference_mode():
            parity = float((onnx_predictor.members[0].model(x) - predictor.members[0].model(x)).abs().max())
    flags = ["--max_batch", str(max_batch), "--max_wait_ms", str(max_wait_ms), "--max_queue", str(4 * clients)]
    with running_server(pkg, *flags, log=out / "server.log") as url:
        load(url, images, 1, 4)  # warm-up: first requests pay for lazy imports and allocations
        before = httpx.get(url + "/health").json()
        wall, lat, answers = load(url, images, clients, requests)
        after = httpx.get(url + "/health").json()
        batches = (after["samples"] - before["samples"]) / max(1, after["batches"] - before["batches"])
        batch_answers, start = [], time.perf_counter()
        with httpx.Client(timeout=300) as http:
            for r in range(batch_requests):
                paths = [images[(r * max_batch + k) % len(images)] for k in range(max_batch)]
                a = http.post(url + "/predict", files=_files(paths))
                batch_answers.append((paths, a.status_code, a.json()))
        batch_wall = time.perf_counter() - start
    if onnx:
        with running_server(pkg, *flags, "--runtime", "onnx", log=out / "server_onnx.log") as url:
            load(url, images, 1, 4)
            onnx_wall, onnx_lat, onnx_answers = load(url, images, clients, requests)
    with running_server(pkg, "--max_batch", str(max_batch), "--max_queue", str(burst_queue)) as url:
        partial_uploads(url)
        _, _, burst_answers = load(url, images, burst, 1)
        alive = httpx.post(url + "/predict", files=_files(images[:1]), timeout=60).status_code == 200
    statuses = [s for _, s, _ in burst_answers]
    single_rate = clients * requests / wall
    batch_rate = batch_requests * max_batch / batch_wall
    rows = [
        (f"service, {clients} clients x {requests} single-image requests: samples/s / bare forward at batch "
         f"{max_batch}", single_rate * bare_batch / max_batch, "info", None),
        ("  samples/s, service", single_rate, "info", None),
        (f"  samples/s, bare forward at batch {max_batch}", max_batch / bare_batch, "info", None),
        ("  p50 latency / bare forward of 1 sample", float(np.percentile(lat, 50)) / bare_one, "info", None),
        ("  p95 latency / bare forward of 1 sample", float(np.percentile(lat, 95)) / bare_one, "info", None),
        ("  p50 latency, ms", 1e3 * float(np.percentile(lat, 50)), "info", None),
        ("  p95 latency, ms", 1e3 * float(np.percentile(lat, 95)), "info", None),
        ("  bare forward of 1 sample, ms", 1e3 * bare_one, "info", None),
        ("  mean samples per forward pass (micro-batching)", batches, "info", None),
        (f"service, requests of {max_batch} images: samples/s / bare forward at batch {max_batch}",
         batch_rate * bare_batch / max_batch, "info", None),
        ("service answers lost or not their image's (count, vs offline classify)",
         wrong(answers, reference) + wrong(batch_answers, reference) + (wrong(onnx_answers, reference) if onnx else 0),
         "<=", 0),
        (f"burst of {burst} beyond a queue of {burst_queue} after 3 broken uploads: unanswered (count)",
         sum(s not in (200, 503) for s in statuses) + (0 if alive else 1), "<=", 0),
        ("  served (200)", statuses.count(200), "info", None),
        ("  shed (503)", statuses.count(503), "info", None),
    ]
    if onnx:
        rows += [("service --runtime onnx, the same load: samples/s / PyTorch service's", wall / onnx_wall, "info", None),
                 ("  p50 latency, ms (onnx)", 1e3 * float(np.percentile(onnx_lat, 50)), "info", None),
                 (f"bare forward, onnxruntime / PyTorch time at batch {max_batch}", onnx_batch / bare_batch, "info",
                  None),
                 ("bare forward, onnxruntime / PyTorch time at batch 1", onnx_one / bare_one, "info", None),
                 ("ONNX vs PyTorch logits, max abs difference", parity, "info", None)]
    table = pd.DataFrame(rows, columns=["figure", "value", "goal", "target"])
    write_csv(table, out / "bench_serve.csv")
    with pd.option_context("display.max_colwidth", 120, "display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return rows


def main(out_dir: str = "bench_out/serve", n_images: int = 256, image_size: int = 64, clients: int = 8,
         requests: int = 32, max_batch: int = 16, max_wait_ms: float = 5.0, batch_requests: int = 16,
         burst: int = 64, burst_queue: int = 4, repeats: int = 5, onnx: bool = True) -> None:
    """The service's load benchmark.

    Args:
        out_dir: data, package, server log and bench_serve.csv.
        n_images: generated RGB images (the requests cycle through them).
        image_size: their side and the model's input size.
        clients: concurrent clients of the load step.
        requests: single-image requests per client.
        max_batch: the service's micro-batch (and the batch of the bare forward it is compared with).
        max_wait_ms: how long a batch waits for more requests.
        batch_requests: requests of max_batch images sent one after another.
        burst: concurrent requests of the burst step.
        burst_queue: the queue of the burst step's server (requests beyond it are shed with 503).
        repeats: timings of the bare forward (the best is kept).
        onnx: also export ONNX weights and measure onnxruntime (bare forward and a server).
    """
    run(out_dir, n_images, image_size, clients, requests, max_batch, max_wait_ms, batch_requests, burst,
        burst_queue, repeats, onnx)


if __name__ == "__main__":
    fire.Fire(main)
