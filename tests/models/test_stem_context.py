"""Small-image stems and the context (cell type) embedding."""

import pytest
import torch

from cellpipe.core.errors import ConfigError


def test_small_image_stem_keeps_resolution():
    from cellpipe.models import create_model

    def layer1_side(**kw):
        m = create_model(model="timm", model_name="resnet18", n_channels=6, num_classes=5, **kw)
        side = []
        m.encoder.body.layer1.register_forward_hook(lambda mod, i, o: side.append(o.shape[-1]))
        m(torch.zeros(1, 6, 64, 64))
        return side[0]

    assert (layer1_side(), layer1_side(stem_stride=1), layer1_side(stem_stride=1, stem_pool=False)) == (16, 32, 64)
    with pytest.raises(ConfigError, match="stem_stride' must be a positive integer"):
        layer1_side(stem_stride=0)


def test_context_embedding_changes_the_logits_and_is_required():
    from cellpipe.models import create_model

    torch.manual_seed(0)
    net = create_model("timm", "test_resnet", n_channels=2, num_classes=3, context_column="cell_type",
                       context_values=["HEPG2", "HUVEC"])
    with torch.no_grad():
        net.context.weight[1] += 5.0  # a trained model: the two cell types differ
    net.eval()
    x = torch.randn(2, 2, 16, 16)
    same = net(x, torch.tensor([0, 0]))
    assert not torch.allclose(same, net(x, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="context"):
        net(x)
    with pytest.raises(ConfigError, match="context_values"):
        create_model("timm", "test_resnet", n_channels=2, num_classes=3, context_column="cell_type",
                     context_values="auto")
