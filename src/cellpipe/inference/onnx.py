"""ONNX weights of a run for onnxruntime on CPU: written by ``export --onnx`` next to the PyTorch
checkpoint of each package member, and run in place of the PyTorch model (``--runtime onnx``) by
``classify`` and the service, with the same preprocessing, TTA and decoding around it.

The graph comes from PyTorch's torch.export-based exporter (onnxscript) with dynamic batch, height
and width (five-crop views are smaller than the training size); its outputs equal the PyTorch
model's within 1e-4 (tests/inference/test_onnx.py).
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellpipe.core.errors import DataError

INPUT, OUTPUT = "images", "logits"


def export_onnx(model: nn.Module, n_channels: int, image_size: int, path: Path) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX with inputs B x n_channels x image_size x image_size."""
    model = model.cpu().eval()
    example = torch.zeros(2, n_channels, image_size, image_size)
    # batch, height and width dynamic: five-crop TTA views are smaller than the training size
    dims = {0: torch.export.Dim("batch", min=1, max=65536), 2: torch.export.Dim("height", min=2, max=16384),
            3: torch.export.Dim("width", min=2, max=16384)}
    try:
        program = torch.onnx.export(model, (example,), input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=(dims,), dynamo=True, verbose=False)
    except Exception as e:  # noqa: BLE001 - torch.export raises many kinds; the model is what to name
        raise DataError(f"cannot export {type(model).__name__} to ONNX with dynamic batch and size: "
                        f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


class OnnxModel(nn.Module):
    """An onnxruntime session behind the nn.Module call the prediction loop makes."""

    def __init__(self, path: Path, num_classes: int, threads: int = 0):
        super().__init__()
        import onnxruntime as ort

        if not Path(path).is_file():
            raise DataError(f"{path} not found: the package has no ONNX weights (export it with --onnx)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})[0]
        return torch.from_numpy(out)
