"""AdaBN: BatchNorm statistics re-estimated per plate at prediction."""

import numpy as np
import pandas as pd
import torch


def test_adabn_uses_each_groups_own_statistics():
    from types import SimpleNamespace

    from cellpipe.inference.adabn import adabn_logits
    from cellpipe.training.evaluate import predict_logits

    class Plates(torch.utils.data.Dataset):
        """Two plates whose images differ only by a constant offset (a batch effect)."""
        table = pd.DataFrame({"id": [f"s{i}" for i in range(8)], "experiment": "E", "plate": [1] * 4 + [2] * 4})
        source = SimpleNamespace(name="fake", levels={"plate": ["experiment", "plate"]})

        def __len__(self):
            return 8

        def __getitem__(self, i):
            x = torch.arange(4.0).view(1, 1, 2, 2) + (0 if i < 4 else 100) + i % 4
            return {"features": x, "targets": 0, "index": i}

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model.num_classes = 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = predict_logits(model, Plates(), batch_size=4)
    adapted = adabn_logits(model, Plates(), "plate", predict_logits, batch_size=4)
    # after per-plate statistics the offset is gone: both plates give the same logits
    assert np.allclose(adapted[:4], adapted[4:], atol=1e-4) and not np.allclose(plain[:4], plain[4:])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is left as it came
