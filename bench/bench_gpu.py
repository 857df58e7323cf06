"""Training images/s of one model on one device: the "one GPU, fully" figure (issue 10).

    python bench/bench_gpu.py                       # se_resnext50_32x4d, 512 px, 6 channels, batch 32, AMP
    python bench/bench_gpu.py --channels_last=false --compile=true --loader=cache --cache_dir /cache --root /data

Times ``steps`` training steps (forward, loss, backward, SGD step) after ``warmup`` untimed ones,
with the project's model factory (cellpipe.models.create_model, random weights) and the engine
switches of configs/base.yml (engine_params: amp, channels_last, compile). ``--loader=synthetic``
(default) feeds random tensors already on the device (the model's ceiling); ``--loader=cache``
feeds real batches from a packed cache through a DataLoader with ``workers`` processes and pinned
memory (what a run gets). The 2019 anchor: about 290 img/s for se_resnext50_32x4d at 512 px on an
A100 with AMP.
"""
import sys
import time
from pathlib import Path

import fire
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from cellpipe.models import create_model  # noqa: E402
from cellpipe.training.runner import prepare_model  # noqa: E402


def batches(loader: str, batch_size: int, image_size: int, channels: int, device, root, cache_dir, workers):
    if loader == "synthetic":
        x = torch.randn(batch_size, channels, image_size, image_size, device=device)
        y = torch.randint(0, 1108, (batch_size,), device=device)
        while True:
            yield x, y
    from torch.utils.data import DataLoader

    from cellpipe.data.cache import PackedImages, cache_rows, pack
    from cellpipe.data.dataset import SampleDataset
    from cellpipe.data.normalize import Normalizer
    from cellpipe.sources import make_source

    source = make_source({"source": "rxrx1", "root": root, "source_params": {}})
    cache = PackedImages(pack(source, cache_dir, image_size))
    table = cache_rows(source)
    ds = SampleDataset(table, source, list(range(1, channels + 1)), source.sites, image_size, Normalizer("none"),
                       train=True, targets=[0] * len(table), cache=cache)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                    persistent_workers=workers > 0, drop_last=True)
    while True:
        for b in dl:
            yield b["features"].to(device, non_blocking=True), b["targets"].to(device, non_blocking=True)


def main(model: str = "cell_senet", model_name: str = "se_resnext50_32x4d", image_size: int = 512,
         channels: int = 6, batch_size: int = 32, steps: int = 50, warmup: int = 10, amp: bool = True,
         channels_last="auto", compile=False, loader: str = "synthetic", root: str = "/data",
         cache_dir: str = "/cache", workers: int = 8, device: str = "auto"):
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    net = create_model(model=model, model_name=model_name, n_channels=channels, num_classes=1108).to(device)
    net = prepare_model(net, {"channels_last": channels_last, "compile": compile}, device.type)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    data = batches(loader, batch_size, image_size, channels, device, root, cache_dir, workers)
    net.train()

    def step():
        x, y = next(data)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rate = steps * batch_size / seconds
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(f"{model_name} {image_size} px x {channels} ch, batch {batch_size}, amp={amp and device.type == 'cuda'}, "
          f"channels_last={net.channels_last}, compile={compile}, loader={loader}: {rate:.1f} img/s on {name} "
          f"(peak GPU memory {peak:.1f} GiB); anchor 290 img/s (A100, AMP): ratio {rate / 290:.2f}")
    return rate


if __name__ == "__main__":
    fire.Fire(main)
