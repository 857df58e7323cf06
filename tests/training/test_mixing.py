"""mixup and CutMix of training batches, and their mixed loss."""

import pytest
import torch

from cellpipe.core.errors import ConfigError


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixing_mixes_inputs_and_losses(mode):
    from cellpipe.training.mixing import MixedLoss, Mixer, check_mix

    x = torch.stack([torch.full((2, 8, 8), float(i)) for i in range(4)])
    y = torch.tensor([0, 1, 2, 3])
    mixed, t = Mixer(mode, alpha=1.0, p=1.0, seed=0).mix(x, y)
    a, b, lam = t
    assert torch.equal(a, y) and sorted(b.tolist()) == [0, 1, 2, 3] and 0 < lam < 1
    if mode == "mixup":
        assert torch.allclose(mixed, lam * x + (1 - lam) * x[[y.tolist().index(v) for v in b.tolist()]])
    else:  # the pasted box's share of pixels is 1 - lam, exactly
        changed = (mixed != x).float().mean(dim=(1, 2, 3))
        moved = b != a
        assert torch.allclose(changed[moved], torch.full_like(changed[moved], 1 - lam))
    ce = torch.nn.CrossEntropyLoss()
    logits = torch.randn(4, 4)
    assert torch.isclose(MixedLoss(ce)(logits, t), lam * ce(logits, a) + (1 - lam) * ce(logits, b))
    assert torch.isclose(MixedLoss(ce)(logits, y), ce(logits, y))
    assert Mixer(mode, p=1e-9).mix(x, y)[1] is y  # p: unmixed batches pass through
    with pytest.raises(ConfigError, match="mix_params/mode"):
        check_mix({"mode": "mixcut"})
