"""export --onnx and --runtime onnx: the package's ONNX weights through onnxruntime give the PyTorch
model's probabilities within 1e-4, with the same preprocessing, TTA and decoding around them."""
import json

import numpy as np
import pandas as pd
import pytest

import inference
from cellpipe.core.errors import DataError
from cellpipe.demo.generic import write_manifest
from conftest import untrained_run


def test_onnx_weights_match_pytorch_through_classify(tmp_path):
    root = write_manifest(tmp_path / "data", per_class=4).parent
    run = untrained_run(["--config", "configs/classify.yml", "--overlay", "configs/data/manifest.yml", "--overlay",
                         "configs/tiny.yml", "--logdir", str(tmp_path / "run"), f"--data_params/root={root}"])
    plain = tmp_path / "plain"
    inference.export(model=str(run), out=str(plain))
    with pytest.raises(DataError, match="the package has no ONNX weights"):
        inference.classify(str(root / "images"), model=str(plain), out=str(tmp_path / "x.csv"), runtime="onnx")
    package = tmp_path / "pkg"
    inference.export(model=str(run), out=str(package), onnx=True)
    meta = json.loads((package / "package.json").read_text())
    assert meta["runtimes"] == ["torch", "onnx"] and "members/0_run/checkpoints/model.onnx" in meta["files"]
    images = str(root / "images")  # 16 images: batches of 5 test the dynamic batch axis (5, 5, 5, 1)
    # five-crop views are smaller than the training size: the graph's height and width are dynamic too
    torch_out = pd.read_csv(inference.classify(images, model=str(package), out=str(tmp_path / "t.csv"),
                                               batch_size=5, tta="five_crop_flip"))
    onnx_out = pd.read_csv(inference.classify(images, model=str(package), out=str(tmp_path / "o.csv"),
                                              batch_size=5, runtime="onnx", tta="five_crop_flip"))
    prob = [c for c in torch_out.columns if c.startswith("prob_")]
    assert len(torch_out) == 16 and np.abs(torch_out[prob].to_numpy() - onnx_out[prob].to_numpy()).max() < 1e-4
    assert (torch_out["pred"] == onnx_out["pred"]).all()
    with pytest.raises(DataError, match="--runtime must be torch or onnx"):
        inference.classify(images, model=str(package), out=str(tmp_path / "y.csv"), runtime="tensorrt")
