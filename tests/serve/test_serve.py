"""src/serve.py: a real uvicorn server on 127.0.0.1 answering a real HTTP client (httpx), checked
against the offline ``classify`` of the same images; bad input, a client leaving mid-upload and a
burst beyond the queue; micro-batching in process."""
import asyncio
import base64
import json
import threading
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pandas as pd
import pytest
import tifffile

import inference
import make_folds
from cellpipe.demo.generic import write_manifest
from cellpipe.demo.hpa import write_hpa
from cellpipe.serve.batcher import MicroBatcher, Overloaded
from cellpipe.serve.process import partial_uploads, running_server
from conftest import untrained_run

LIMITS = ["--max_upload_mb", "0.25", "--max_pixels", str(300 * 300), "--max_samples", "8", "--max_queue", "3",
          "--max_batch", "8"]


def _package(tmp, name, overlay, root, *extra):
    run = untrained_run(["--config", "configs/classify.yml", "--overlay", overlay, "--overlay", "configs/tiny.yml",
                         "--logdir", str(tmp / f"{name}_run"), f"--data_params/root={root}", *extra])
    return Path(inference.export(model=str(run), out=str(tmp / f"{name}_pkg")))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    root = write_manifest(tmp / "data", per_class=6).parent
    package = _package(tmp, "manifest", "configs/data/manifest.yml", root)
    with running_server(package, *LIMITS, log=tmp / "server.log") as url:
        yield url, package, sorted((root / "images").glob("*.png"))


def _files(paths, field="image"):
    return [(field, (p.name, p.read_bytes(), "image/png")) for p in paths]


def _offline(package, paths, tmp_path, **kw):
    out = inference.classify(*map(str, paths), model=str(package), out=str(tmp_path / "offline.csv"), **kw)
    return pd.read_csv(out, keep_default_na=False)


def _probs(rows):
    return np.array([[r[k] for k in sorted(r) if k.startswith("prob_")] for r in rows], float)


def test_answers_match_the_offline_classify_of_the_same_images(manifest, tmp_path):
    url, package, images = manifest
    card = httpx.get(url + "/model").json()
    meta = json.loads((package / "package.json").read_text())
    assert card["classes"] == meta["classes"] and card["version"] == meta["sha256"] and card["image_size"] == 32
    assert card["channels"] == [1, 2, 3] and len(card["colours"]) == 3 and card["kind"] == "single"
    batch = images[:5]
    answer = httpx.post(url + "/predict", files=_files(batch), timeout=60)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    offline = _offline(package, batch, tmp_path)
    assert [r["path"] for r in rows] == [p.name for p in batch]
    assert set(offline.columns) - {"path"} <= set(rows[0]) and {r["error"] for r in rows} == {""}
    assert [r["pred"] for r in rows] == list(offline["pred"])
    assert [r["model"] for r in rows] == list(offline["model"])
    prob = sorted(c for c in offline.columns if c.startswith("prob_"))
    assert np.allclose(_probs(rows), offline[prob].to_numpy(float), atol=1e-5)
    # the same sample as JSON: whole file, and one grey file per channel (RxRx1 style)
    rgb = cv2.imread(str(batch[0]))
    planes = [base64.b64encode(cv2.imencode(".png", rgb[..., 2 - c])[1].tobytes()).decode() for c in range(3)]
    body = {"samples": [{"id": "whole", "image": base64.b64encode(batch[0].read_bytes()).decode()},
                        {"id": "split", "channels": planes}]}
    answer = httpx.post(url + "/predict?montage=true", json=body, timeout=60).json()["predictions"]
    assert [a["path"] for a in answer] == ["whole", "split"]
    assert np.allclose(_probs(answer), _probs(rows[:1]).repeat(2, 0), atol=1e-5)
    png = base64.b64decode(answer[0]["montage"].split(",", 1)[1])
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (256, 256, 3)
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["samples"] >= 7


def test_bad_input_is_a_4xx_naming_the_problem_and_the_service_keeps_answering(manifest, tmp_path):
    url, _, images = manifest
    grey, deep, big = tmp_path / "grey.png", tmp_path / "deep.png", tmp_path / "big.png"
    cv2.imwrite(str(grey), np.zeros((20, 20), np.uint8))
    cv2.imwrite(str(deep), np.full((20, 20, 3), 40000, np.uint16))
    cv2.imwrite(str(big), np.zeros((400, 400, 3), np.uint8))
    text = ("notes.png", b"this is not an image", "image/png")
    # a few hundred bytes declaring 30000 x 30000 pixels: refused from its header, never decoded
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    ihdr = png[12:16] + (30000).to_bytes(4, "big") * 2 + png[24:29]  # IHDR type + data, the size changed
    bomb = ("bomb.png", png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:], "image/png")
    pages = tmp_path / "pages.tif"
    tifffile.imwrite(pages, np.zeros((100, 16, 16), np.uint8))
    cases = [
        ({"files": [("image", text)]}, 422, "notes.png is not an image"),
        ({"files": _files([grey])}, 422, "grey.png has 1 channel(s); the model reads channels [1, 2, 3]"),
        ({"files": _files([deep])}, 422, "deep.png is uint16; the model has no rescale rule"),
        ({"files": _files([big])}, 413, "400 x 400 pixels, more than the limit of 90000"),
        ({"files": [("image", bomb)]}, 413, "bomb.png: Image size (900000000 pixels) exceeds limit"),
        ({"files": _files([pages])}, 413, "pages.tif has 100 planes (channels or pages), more than the limit of 64"),
        ({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, 422, "multipart body"),
        ({"files": [("picture", text)]}, 422, "unknown field(s) ['picture']"),
        ({"files": _files(images[:2]) + _files([grey], "channel")}, 422, "not both"),
        ({"files": _files([grey, grey], "channel")}, 422, "2 channel file(s); the model reads 3"),
        ({"files": _files(images[:9])}, 413, "9 samples in one request; the limit is 8"),
        ({"content": b"x" * 300_000, "headers": {"content-type": "application/json"}}, 413, "larger than the limit"),
        ({"json": {"samples": [], "extra": 1}}, 422, "unknown key(s) ['extra']"),
        ({"json": {"samples": [{"id": "a", "image": "%%%"}]}}, 422, "samples[0]: not valid base64"),
        ({"json": {"samples": [{"id": "a", "pixels": "AA=="}]}}, 422, "unknown key(s) ['pixels'] in samples[0]"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "does not parse"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "content type 'text/plain'"),
        ({"files": []}, 415, "content type"),
    ]
    for kwargs, status, message in cases:
        answer = httpx.post(url + "/predict", timeout=60, **kwargs)
        assert answer.status_code == status, (message, answer.text)
        assert message in answer.json()["error"], answer.json()
    answer = httpx.post(url + "/predict?top=5", files=_files(images[:1]))
    assert answer.status_code == 422 and "unknown query parameter(s) ['top']" in answer.json()["error"]
    assert httpx.post(url + "/predict", files=_files(images[:1]), timeout=60).status_code == 200


def test_a_client_leaving_mid_upload_and_a_burst_beyond_the_queue(manifest, tmp_path):
    url, package, images = manifest
    partial_uploads(url)  # headers announce 200 kB, 1 kB arrives, the socket closes
    offline = _offline(package, images, tmp_path).set_index("path")
    answers, shed_before = [None] * 24, httpx.get(url + "/health").json()["shed"]

    def client(k):
        path = images[k % len(images)]
        answers[k] = (path, httpx.post(url + "/predict", files=_files([path]), timeout=120))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(answers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [a.status_code for _, a in answers]
    assert set(statuses) <= {200, 503}, statuses  # every request answered: served or shed, none lost
    for path, a in answers:
        if a.status_code == 503:
            assert "service busy" in a.json()["error"] and a.headers["retry-after"] == "1"
        else:  # nothing mixed up: each answer is its own image's
            row = a.json()["predictions"][0]
            assert row["path"] == path.name and row["pred"] == offline.loc[str(path), "pred"]
            assert abs(row["prob"] - offline.loc[str(path), "prob"]) < 1e-5
    assert httpx.get(url + "/health").json()["shed"] - shed_before == statuses.count(503)
    assert httpx.post(url + "/predict", files=_files(images[:1]), timeout=60).status_code == 200


def test_micro_batching_merges_requests_sheds_when_full_and_isolates_a_failing_sample():
    calls = []

    def predict(samples):
        calls.append(sorted(samples))
        if "bad" in samples:
            raise ValueError("cannot read bad")
        return {k: f"answer {k}" for k in samples}

    async def scenario():
        batcher = MicroBatcher(predict, max_batch=4, max_wait_s=0.05, max_queue=3)
        # not started: the queue fills and the fourth request is shed at once
        pending = [asyncio.ensure_future(batcher.submit({f"q{k}": k})) for k in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="holds 3 request"):
            await batcher.submit({"q3": 3})
        batcher.start()
        assert await asyncio.gather(*pending) == [{f"q{k}": f"answer q{k}"} for k in range(3)]
        assert calls == [["q0", "q1", "q2"]] and batcher.shed == 1  # three requests, one forward pass
        calls.clear()
        results = await asyncio.gather(batcher.submit({"a": 1}), batcher.submit({"bad": 2}), batcher.submit({"c": 3}),
                                       return_exceptions=True)
        await batcher.stop()
        return results

    good, bad, other = asyncio.run(scenario())
    assert good == {"a": "answer a"} and other == {"c": "answer c"}
    assert isinstance(bad, ValueError) and calls[0] == ["a", "bad", "c"]  # the merged batch, then one by one


def test_a_multilabel_sample_as_channel_files_gets_its_label_set(tmp_path):
    hpa = write_hpa(tmp_path / "hpa", n_train=24, n_test=3, size=16, duplicates=0)
    make_folds.main(str(hpa), out_dir=str(tmp_path / "csv"), n_folds=2, source="hpa", target="multilabel",
                    grouped=False)
    package = _package(tmp_path, "hpa", "configs/data/hpa.yml", hpa, "--data_params/source_params={classes: 8}",
                       f"--data_params/train_csv={tmp_path / 'csv' / 'train_0.csv'}",
                       f"--data_params/valid_csv={tmp_path / 'csv' / 'valid_0.csv'}")
    offline = _offline(package, [hpa / "test"], tmp_path, pattern="{sample}_{channel}.png").set_index("path")
    with running_server(package) as url:
        card = httpx.get(url + "/model").json()
        assert card["channel_names"] == ["red", "green", "blue", "yellow"] and len(card["thresholds"]) == 8
        stains = [hpa / "test" / f"te00001_{s}.png" for s in card["channel_names"]]
        answer = httpx.post(url + "/predict", files=_files(stains, "channel"), timeout=60)
    assert answer.status_code == 200, answer.text
    row, expected = answer.json()["predictions"][0], offline.loc[str(hpa / "test" / "te00001")]
    assert row["pred"] == expected["pred"] and row["n_pred"] == expected["n_pred"]
    assert all(abs(row[c] - expected[c]) < 1e-5 for c in offline.columns if c.startswith("prob_"))
