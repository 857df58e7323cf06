"""The HTTP service of a model package (FastAPI on uvicorn): ``src/serve.py`` builds it.

    GET  /          a page: upload an image (or a sample's channel files), see the channel montage
                    in the model's colours and the predictions
    GET  /health    {"status": "ok", "queue", "batches", "samples", "shed"}
    GET  /model     the package's card: kind, classes, levels, channels (names, colours), image size,
                    rescale rule, TTA, thresholds, model ids, version (the package's SHA-256), limits
    POST /predict   multipart: ``image`` (one file per sample, repeatable: a batch), or ``channel``
                    (one single-channel file per channel of one sample, in channel order);
                    or JSON {"samples": [{"id": ..., "image": BASE64} | {"id": ..., "channels": [BASE64, ...]}]}
                    ?montage=true adds each sample's colour montage as a PNG data URL.
                    -> {"model": ..., "predictions": [one object per sample with the CSV's fields]}

Bad input is a 4xx JSON ``{"error": "<what is wrong>", "status": code}`` naming the field or file:
not an image (422), wrong channel count (422), a bit depth without a rescale rule (422), an unknown
field (422), too large (413); a full queue is 503 with Retry-After. Every sample is decoded and
checked before it joins a batch, a batch that still fails is retried request by request, and no
request's failure stops the process.
"""
import base64
import binascii
import itertools
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from cellpipe.core.errors import DataError
from cellpipe.core.images import ImageTooLarge, decode_image
from cellpipe.inference.predictor import ImageFiles, Predictor
from cellpipe.reports.montage import montage_tile
from cellpipe.serve.batcher import MicroBatcher, Overloaded

log = logging.getLogger("serve")
PAGE = Path(__file__).with_name("page.html")
FIELDS = ("image", "channel")
JSON_KEYS = {"samples"}
SAMPLE_KEYS = {"id", "image", "channels"}
QUERY = {"montage"}
MONTAGE_SIDE = 256  # pixels of the longer side of a montage on the page


class BadInput(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class TooLarge(Exception):
    pass


def error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body above ``max_bytes`` is refused with 413, by its Content-Length
    before anything is read, or as soon as a chunked upload passes the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error(413, f"request body of {int(length)} bytes is larger than the limit of "
                                    f"{self.max_bytes} (--max_upload_mb)")(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise TooLarge(f"request body larger than the limit of {self.max_bytes} bytes (--max_upload_mb)")
            return message

        return await self.app(scope, limited, send)


class Service:
    """The predictor, the batcher and the input checks behind the routes."""

    def __init__(self, predictor: Predictor, max_batch: int, max_wait_ms: float, max_queue: int,
                 max_pixels: int, max_planes: int, max_samples: int, top_k: int, min_prob: Optional[float] = None):
        self.predictor, self.max_pixels, self.max_planes = predictor, max_pixels, max_planes
        self.max_samples, self.top_k, self.min_prob = max_samples, top_k, min_prob
        self.batcher = MicroBatcher(self._predict, max_batch, max_wait_ms / 1000.0, max_queue)
        self.ids = itertools.count()
        self.names = predictor.info["channel_names"]

    # --------------------------------------------------------------- checks
    def channel_text(self) -> str:
        pairs = zip(self.predictor.info["channels"], self.names)
        return ", ".join(n if n == f"channel {c}" else f"{c} {n}" for c, n in pairs)

    def count(self, n: int) -> None:
        if not n:
            raise BadInput(422, "no sample given: send image (one file per sample) or channel files, "
                                "or JSON {\"samples\": [...]}")
        if n > self.max_samples:
            raise BadInput(413, f"{n} samples in one request; the limit is {self.max_samples} (--max_samples)")

    def decode(self, data: bytes, name: str) -> np.ndarray:
        try:  # the header first: a small file declaring a huge image is refused before decoding
            return decode_image(data, name, self.max_pixels, self.max_planes)
        except ImageTooLarge as e:
            raise BadInput(413, str(e)) from None
        except DataError as e:
            raise BadInput(422, f"{name} is not an image the service can read: {e}") from None

    def planes(self, files: List, per_channel: bool, label: str) -> Dict[int, np.ndarray]:
        """One sample's files [(name, bytes)] -> {channel: H x W x 1 plane} for each channel the model
        reads, in their own dtype, checked: channel count, sizes, the rescale rule of deeper data."""
        channels = self.predictor.channels
        if per_channel and len(files) != len(channels):
            raise BadInput(422, f"{label}: {len(files)} channel file(s); the model reads {len(channels)} "
                                f"({self.channel_text()}), one single-channel file each, in that order")
        arrays = [self.decode(data, name) for name, data in files]
        if per_channel:
            deep = [name for (name, _), a in zip(files, arrays) if a.shape[-1] != 1]
            if deep:
                raise BadInput(422, f"{deep[0]} has several channels; a channel field takes a single-channel file")
            planes = dict(zip(channels, arrays))
        else:
            got = arrays[0].shape[-1]
            if got < max(channels):
                raise BadInput(422, f"{files[0][0]} has {got} channel(s); the model reads channels "
                                    f"{channels} ({self.channel_text()})")
            planes = {c: arrays[0][..., c - 1:c].copy() for c in channels}  # copies: the rest is freed
        try:  # what the loader will do, so that a bad sample fails here, alone
            self.predictor.check(planes, label)
        except DataError as e:
            raise BadInput(422, str(e)) from None
        return planes

    def montage(self, planes: Dict[int, np.ndarray]) -> str:
        """The sample's colour composite in the model's channel colours, as a PNG data URL."""
        rule = self.predictor.members[0].dp.get("rescale")
        channels = self.predictor.channels
        img = ImageFiles({"m": planes}, max(channels), rule).load_planes({"id": "m"}, 1, channels)
        colours = [(tuple(c), float(v)) for c, v in self.predictor.info["colours"]]
        rgb = montage_tile(np.stack(img, -1).astype(np.float32), colours)
        scale = MONTAGE_SIDE / max(rgb.shape[:2])  # shown at a readable size, aspect kept
        if scale != 1:
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
        return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()

    # --------------------------------------------------------------- the model
    def _predict(self, samples: Dict) -> Dict:
        ids = list(samples)
        table = self.predictor.table(samples, self.top_k, min_prob=self.min_prob, progress=False)
        rows = json.loads(table.to_json(orient="records", double_precision=15))
        return dict(zip(ids, rows))

    async def predict(self, samples: List, montage: bool) -> dict:
        """samples: [(name, planes)] -> the JSON answer."""
        request = next(self.ids)
        keyed = {f"{request}/{k}": planes for k, (_, planes) in enumerate(samples)}
        answers = await self.batcher.submit(keyed)
        out = []
        for (name, planes), key in zip(samples, keyed):
            row = {"path": name, **answers[key], "error": "", "model": self.predictor.model}
            if montage:
                row["montage"] = await run_in_threadpool(self.montage, planes)
            out.append(row)
        return {"model": self.predictor.model, "predictions": out}


async def form_samples(service: Service, request: Request) -> List:
    n_files = service.max_samples * len(service.predictor.channels)
    try:
        form = await request.form(max_files=n_files + 1, max_fields=n_files + 1)
    except (MultiPartException, StarletteHTTPException) as e:  # starlette wraps parse errors in a 400
        detail = getattr(e, "detail", None) or str(e)
        raise BadInput(413 if "Too many" in detail else 422, f"multipart body: {detail}") from None
    try:
        unknown = sorted({k for k in form.keys() if k not in FIELDS})
        if unknown:
            raise BadInput(422, f"unknown field(s) {unknown}; POST /predict takes 'image' (one file per sample, "
                                "repeatable) or 'channel' (one single-channel file per channel of one sample, in order)")
        images, channels = form.getlist("image"), form.getlist("channel")
        if images and channels:
            raise BadInput(422, "send either 'image' files (one per sample) or 'channel' files (one sample), not both")
        for value in images + channels:
            if isinstance(value, str):
                raise BadInput(422, "fields 'image' and 'channel' take files (multipart file uploads), not text")
        service.count(1 if channels else len(images))
        if channels:
            files = [(f.filename or f"channel {k + 1}", await f.read()) for k, f in enumerate(channels)]
            name = files[0][0]
            return [(name, await run_in_threadpool(service.planes, files, True, name))]
        out = []
        for k, f in enumerate(images):
            name = f.filename or f"image {k + 1}"
            data = await f.read()
            out.append((name, await run_in_threadpool(service.planes, [(name, data)], False, name)))
        return out
    finally:
        await form.close()


async def json_samples(service: Service, request: Request) -> List:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(422, f"the JSON body does not parse: {e}") from None
    if not isinstance(body, dict) or not isinstance(body.get("samples"), list):
        raise BadInput(422, "the JSON body must be {\"samples\": [{\"id\": ..., \"image\": BASE64} or "
                            "{\"id\": ..., \"channels\": [BASE64, ...]}]}")
    unknown = sorted(set(body) - JSON_KEYS)
    if unknown:
        raise BadInput(422, f"unknown key(s) {unknown} in the JSON body; it takes {sorted(JSON_KEYS)}")
    service.count(len(body["samples"]))
    out = []
    for k, sample in enumerate(body["samples"]):
        where = f"samples[{k}]"
        if not isinstance(sample, dict):
            raise BadInput(422, f"{where} must be an object with image or channels")
        unknown = sorted(set(sample) - SAMPLE_KEYS)
        if unknown:
            raise BadInput(422, f"unknown key(s) {unknown} in {where}; a sample takes {sorted(SAMPLE_KEYS)}")
        if ("image" in sample) == ("channels" in sample):
            raise BadInput(422, f"{where} needs exactly one of 'image' (base64) or 'channels' (list of base64)")
        name = str(sample.get("id", where))
        encoded = [sample["image"]] if "image" in sample else sample["channels"]
        if not isinstance(encoded, list) or not all(isinstance(e, str) for e in encoded):
            raise BadInput(422, f"{where}: channels must be a list of base64 strings")
        try:
            files = [(name if len(encoded) == 1 else f"{name} channel {c + 1}", base64.b64decode(e, validate=True))
                     for c, e in enumerate(encoded)]
        except (binascii.Error, ValueError) as e:
            raise BadInput(422, f"{where}: not valid base64 ({e})") from None
        out.append((name, await run_in_threadpool(service.planes, files, "channels" in sample, name)))
    return out


def create_app(predictor: Predictor, max_batch: int = 16, max_wait_ms: float = 5.0, max_queue: int = 64,
               max_upload_bytes: int = 64 * 2 ** 20, max_pixels: int = 4096 * 4096, max_planes: int = 64,
               max_samples: int = 64, top_k: int = 3, min_prob: Optional[float] = None) -> FastAPI:
    """The FastAPI app serving ``predictor`` (limits as in src/serve.py's flags)."""
    if min_prob is not None:  # refused at start-up for a multi-label model, not at its first request
        predictor.labels.reject_unsure(pd.DataFrame(), min_prob)
    service = Service(predictor, max_batch, max_wait_ms, max_queue, max_pixels, max_planes, max_samples, top_k,
                      min_prob)

    @asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="cellpipe classifier", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    limits = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_queue": max_queue,
              "max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels, "max_planes": max_planes,
              "max_samples": max_samples, "top_k": top_k,
              "min_prob": min_prob}
    thresholds = None if predictor.thresholds is None else [float(t) for t in np.ravel(predictor.thresholds)]
    card = {**predictor.info, "version": predictor.info.get("sha256"), "thresholds": thresholds,
            "separator": predictor.labels.separator, "limits": limits}
    page = PAGE.read_text()

    @app.exception_handler(BadInput)
    async def bad_input(request, exc: BadInput):
        return error(exc.status, str(exc))

    @app.exception_handler(TooLarge)
    async def too_large(request, exc: TooLarge):
        return error(413, str(exc))

    @app.exception_handler(Overloaded)
    async def overloaded(request, exc: Overloaded):
        return error(503, f"service busy: {exc}; retry later", {"Retry-After": "1"})

    @app.exception_handler(DataError)
    async def data_error(request, exc: DataError):
        return error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        return error(422, "; ".join(f"{'/'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):  # logged; the process keeps serving
        log.exception("request failed")
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/health")
    async def health():
        b = service.batcher
        body = {"status": "ok" if b.alive else "failing", "queue": b.queue.qsize(), "batches": b.batches,
                "samples": b.samples, "shed": b.shed}
        return JSONResponse(body, status_code=200 if b.alive else 503)

    @app.get("/model")
    async def model():
        return card

    @app.post("/predict")
    async def predict(request: Request, montage: bool = False):
        unknown = sorted(set(request.query_params) - QUERY)
        if unknown:
            raise BadInput(422, f"unknown query parameter(s) {unknown}; /predict takes {sorted(QUERY)}")
        kind = request.headers.get("content-type", "")
        try:
            if kind.startswith("multipart/form-data"):
                samples = await form_samples(service, request)
            elif kind.startswith("application/json"):
                samples = await json_samples(service, request)
            else:
                raise BadInput(415, f"content type {kind or 'none'!r}; send multipart/form-data (fields image or "
                                    "channel) or application/json")
        except ClientDisconnect:  # the client left mid-upload: nobody to answer
            log.info("client disconnected during upload")
            return error(400, "client disconnected")
        # a ready JSONResponse: FastAPI's encoder would walk every float of the answer again
        return JSONResponse(await service.predict(samples, montage))

    return app
