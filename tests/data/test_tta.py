"""Test-time augmentation views."""

import pytest
import torch

from cellpipe.core.errors import DataError
from cellpipe.data.tta import tta_views


def test_five_crop_views():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    views = tta_views("five_crop", crop=0.5)
    crops = [v(x) for v in views]
    assert len(crops) == 5 and all(c.shape[-2:] == (4, 4) for c in crops)
    assert crops[0][0, 0, 0, 0] == 0 and crops[3][0, 0, -1, -1] == 63 and crops[4][0, 0, 0, 0] == 18
    assert len(tta_views("five_crop_flip", crop=6)) == 10 and tta_views("five_crop", crop=6)[0](x).shape[-1] == 6
    with pytest.raises(DataError, match="gives 16 px for 8 px"):
        tta_views("five_crop", crop=16)[0](x)
