"""Serve a model package over HTTP (FastAPI on uvicorn): a web page, /predict, /health, /model.

    python src/inference.py export --model /logs/manifest --out /models/manifest_v1
    python src/serve.py --model /models/manifest_v1 [--host 127.0.0.1 --port 8000]
    curl -F image=@figure.png http://127.0.0.1:8000/predict
    curl -F channel=@s1_w1.png -F channel=@s1_w2.png ... http://127.0.0.1:8000/predict

See docs/serving.md for the API, its errors and limits, and cellpipe/serve/app.py.
"""
from typing import Optional

from cellpipe.core import cli


def main(model=None, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu", max_batch: int = 16,
         max_wait_ms: float = 5.0, max_queue: int = 64, max_upload_mb: float = 64.0, max_pixels: int = 4096 * 4096,
         max_planes: int = 64, max_samples: int = 64, max_connections: int = 256, top_k: int = 3, min_prob: Optional[float] = None, tta=None, reduce=None, runtime: str = "torch",
         log_level: str = "info"):
    """Load ``model`` once and answer requests until stopped (Ctrl-C or SIGTERM).

    Args:
        model: a model package (inference.py export), a finished run folder or a run tree; "a,b" for several.
        host: the address to listen on (0.0.0.0 to accept other machines, e.g. in Docker).
        port: the TCP port.
        device: cpu | cuda | cuda:N | auto.
        max_batch: samples merged into one forward pass (micro-batching of concurrent requests).
        max_wait_ms: how long the first request of a batch waits for others to join it.
        max_queue: requests waiting for the model; a request beyond it is shed with 503.
        max_upload_mb: the largest request body (413 above it).
        max_pixels: the largest image (height x width; 413 above it, read from the file's header before
            decoding).
        max_planes: the most channels or pages in one file (413 above it, from the header).
        max_samples: the most samples in one request (413 above it).
        max_connections: concurrent connections uvicorn accepts; beyond them it answers 503 at once.
        top_k: how many top classes each answer lists.
        min_prob: single-label / hierarchy: a prediction below this probability becomes Other (classify's flag).
        tta: none | flip | d4 | five_crop | five_crop_flip (default: each run's predict_params/tta).
        reduce: mean | max over the TTA views (default: each run's).
        runtime: torch | onnx (a package exported with --onnx, through onnxruntime on the CPU).
        log_level: uvicorn's log level (info, warning, ...).
    """
    import uvicorn

    from cellpipe.inference.predictor import Predictor
    from cellpipe.serve.app import create_app

    if not model:
        raise SystemExit("serve: --model PACKAGE is required")
    models = model.split(",") if isinstance(model, str) else list(model)
    app = create_app(Predictor(models, device, tta, reduce, runtime), max_batch, max_wait_ms, max_queue,
                     int(max_upload_mb * 2 ** 20), max_pixels, max_planes, max_samples, top_k, min_prob)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, limit_concurrency=int(max_connections))


if __name__ == "__main__":
    cli.run(main)
