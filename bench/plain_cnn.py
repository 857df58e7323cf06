"""The plain PyTorch CNN of the per-kind benchmark: what a user writes instead of a pipeline (<= 50 lines).

Four conv-BN-ReLU-pool blocks, Adam at a constant rate, random flips, pixels / 255, the last
epoch's weights; cross-entropy for one label, BCE for several.
"""
import numpy as np
import torch
from torch import nn


def plain_cnn(n_in: int, n_out: int, width: int = 32) -> nn.Sequential:
    def block(a, b):
        return nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2))

    w = [n_in, width, 2 * width, 4 * width, 8 * width]
    return nn.Sequential(*(block(a, b) for a, b in zip(w, w[1:])), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(w[-1], n_out))


def fit_predict(x, y, evals, n_out: int, multilabel: bool, epochs: int, batch_size=32, lr=1e-3, width=32, seed=0):
    """x: N x C x H x W uint8, y: class ids (N,) or multi-hot (N, n_out); returns the probabilities of
    every array in ``evals``."""
    torch.manual_seed(seed)
    model = plain_cnn(x.shape[1], n_out, width)
    opt = torch.optim.Adam(model.parameters(), lr)
    loss_fn = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y).float() if multilabel else torch.as_tensor(y).long()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(batch_size):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = x[idx].float() / 255
            for dim in (2, 3):
                flip = torch.rand(len(idx)) < 0.5
                xb[flip] = xb[flip].flip(dim)
            loss = loss_fn(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        out = [torch.cat([model(torch.as_tensor(b).float() / 255) for b in np.array_split(e, max(1, len(e) // 64))])
               for e in evals]
    return [(o.sigmoid() if multilabel else o.softmax(1)).numpy() for o in out]
