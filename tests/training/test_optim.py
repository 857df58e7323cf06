"""Optimizers, the OneCycle schedule, classification metrics and losses."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cellpipe.core.config import load_config, stage_settings
from cellpipe.training.optim import OPTIMIZERS, SCHEDULERS, OneCycleWarmup, create_optimizer, create_scheduler

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EPOCHS, STEPS, WARM = 3, 4, 1
LR0, PEAK, LOW = 1e-3, 1e-2, 1e-4
MOM = (0.85, 0.95)


def _params():
    return [nn.Parameter(torch.zeros(3))]


def _trace(optimizer, scheduler, n):
    """lr and momentum after 0, 1, ..., n-1 scheduler steps, stepping as the training loop does."""
    key = "betas" if "betas" in optimizer.param_groups[0] else "momentum"
    lrs, moms = [], []
    for _ in range(n):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        moms.append(group["betas"][0] if key == "betas" else group["momentum"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs), np.array(moms)


def _one_cycle(optimizer, lr_range=(PEAK, LOW), warmup=WARM):
    return OneCycleWarmup(optimizer, num_epochs=EPOCHS, steps_per_epoch=STEPS, lr_range=lr_range,
                          warmup_steps=warmup, momentum_range=MOM)


# ------------------------------------------------------------------ schedule


def test_one_cycle_lr_and_beta1_nadam():
    opt = torch.optim.NAdam(_params(), lr=LR0, betas=(0.9, 0.999))
    sched = _one_cycle(opt)
    total, warm = EPOCHS * STEPS, WARM * STEPS
    lrs, b1 = _trace(opt, sched, total + 3)
    assert lrs[0] == pytest.approx(LR0)
    assert lrs[warm] == pytest.approx(PEAK)
    assert lrs[total - 1] == pytest.approx(LOW)
    assert np.allclose(lrs[total:], LOW)  # stays at the floor if stepped past the end
    assert np.all(np.diff(lrs[:warm + 1]) > 0) and np.all(np.diff(lrs[warm:total]) < 0)
    assert lrs.max() == pytest.approx(PEAK)
    # beta1: high -> low during warm-up, back to high at the end; beta2 untouched
    assert b1[0] == pytest.approx(MOM[1])
    assert b1[warm] == pytest.approx(MOM[0])
    assert b1[total - 1] == pytest.approx(MOM[1])
    assert np.all(np.diff(b1[:warm + 1]) < 0) and np.all(np.diff(b1[warm:total]) > 0)
    assert opt.param_groups[0]["betas"][1] == 0.999
    assert sched.get_last_lr() == [pytest.approx(LOW)]


def test_one_cycle_sgd_momentum():
    opt = torch.optim.SGD(_params(), lr=LR0, momentum=0.5)
    sched = _one_cycle(opt)
    total, warm = EPOCHS * STEPS, WARM * STEPS
    lrs, mom = _trace(opt, sched, total)
    assert (lrs[0], lrs[warm], lrs[-1]) == (pytest.approx(LR0), pytest.approx(PEAK), pytest.approx(LOW))
    assert (mom[0], mom[warm], mom[-1]) == (pytest.approx(MOM[1]), pytest.approx(MOM[0]), pytest.approx(MOM[1]))
    assert sched.get_momentum() == [pytest.approx(MOM[1])]


def test_one_cycle_without_warmup_starts_at_peak():
    opt = torch.optim.Adam(_params(), lr=LR0)
    lrs, b1 = _trace(opt, _one_cycle(opt, warmup=0), EPOCHS * STEPS)
    assert lrs[0] == pytest.approx(PEAK) and lrs[-1] == pytest.approx(LOW)
    assert b1[0] == pytest.approx(MOM[0]) and b1[-1] == pytest.approx(MOM[1])


def test_one_cycle_rejects_three_lr_values():
    opt = torch.optim.NAdam(_params(), lr=LR0)
    with pytest.raises(ValueError, match="lr_range"):
        _one_cycle(opt, lr_range=(PEAK, LOW, LOW / 10))


def test_create_scheduler_from_stage_config():
    cfg = load_config(CONFIGS / "config.yml", [CONFIGS / "demo.yml"])
    st = stage_settings(cfg, "finetune")
    opt = create_optimizer(_params(), **st["optimizer_params"])
    assert isinstance(opt, torch.optim.NAdam)
    assert opt.param_groups[0]["lr"] == st["optimizer_params"]["lr"]
    sched = create_scheduler(opt, st["scheduler_params"], st["num_epochs"], STEPS)
    assert isinstance(sched, OneCycleWarmup)
    total = st["num_epochs"] * STEPS
    warm = st["scheduler_params"]["warmup_steps"] * STEPS
    lrs, _ = _trace(opt, sched, total)
    assert lrs[warm] == pytest.approx(st["scheduler_params"]["lr_range"][0])
    assert lrs[-1] == pytest.approx(st["scheduler_params"]["lr_range"][1])


def test_create_scheduler_none():
    opt = torch.optim.SGD(_params(), lr=0.1)
    assert create_scheduler(opt, None, 3, 4) is None
    assert create_scheduler(opt, {}, 3, 4) is None


def test_unknown_scheduler_lists_known():
    opt = torch.optim.SGD(_params(), lr=0.1)
    with pytest.raises(KeyError, match="OneCycleLR"):
        create_scheduler(opt, {"scheduler": "Cosine"}, 3, 4)
    assert "OneCycleLR" in SCHEDULERS


# ------------------------------------------------------------------ optimizers


def test_optimizer_registry():
    assert OPTIMIZERS.get("Nadam") is torch.optim.NAdam
    assert OPTIMIZERS.get("SGD") is torch.optim.SGD
    with pytest.raises(KeyError) as e:
        OPTIMIZERS.get("Nadamm")
    for name in OPTIMIZERS.names():
        assert name in str(e.value)


def test_create_optimizer_skips_frozen():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    for p in model[0].parameters():
        p.requires_grad = False
    opt = create_optimizer(model.parameters(), "Nadam", lr=0.01, weight_decay=0.1)
    got = {id(p) for g in opt.param_groups for p in g["params"]}
    assert got == {id(p) for p in model[1].parameters()}
    assert opt.param_groups[0]["weight_decay"] == 0.1
    before = model[0].weight.clone()
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    assert torch.equal(model[0].weight, before)


# ------------------------------------------------------------------ metrics


# ------------------------------------------------------------------ losses


