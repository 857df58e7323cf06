"""Training callbacks: the exponential moving average of the weights."""

import torch


def test_ema_callback_validates_the_average_and_trains_the_raw_weights():
    from types import SimpleNamespace

    from cellpipe.training.callbacks import EMACallback

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    runner = SimpleNamespace(model=model, is_train_loader=True, engine=SimpleNamespace(unwrap_model=lambda m: m))
    ema = EMACallback(decay=0.9)
    ema.on_experiment_start(runner)
    for _ in range(2):  # two "optimizer steps" to weight 1.0
        with torch.no_grad():
            model.weight.fill_(1.0)
        ema.on_batch_end(runner)
    expected = 1 - 0.9 ** 2  # 0.1, then 0.9 * 0.1 + 0.1
    runner.is_train_loader = False
    ema.on_loader_start(runner)  # validation sees the average
    assert torch.allclose(model.weight, torch.full((1, 2), expected))
    ema.on_batch_end(runner)  # not a training batch: no update
    runner.is_train_loader = True
    ema.on_epoch_start(runner)  # training goes on from the raw weights
    assert torch.allclose(model.weight, torch.ones(1, 2))
