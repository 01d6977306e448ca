"""SRDenseNet's receptive field (lesson 07 prints it): the property equals what autograd measures."""
import numpy as np
import pytest

import tinysr
from tinysr import nn
from tinysr.models import build
from tinysr.models.srdensenet import SRDenseNet


def _measured_receptive_field(model, side=41):
    # All weights and inputs positive: every ReLU is active, so the gradient of an output pixel is
    # non-zero exactly on the input pixels it depends on.  The widest window over the `scale` positions
    # of an HR pixel inside its LR pixel is the receptive field.
    for p in model.parameters():
        p.data[...] = np.abs(p.data) + 0.01
    x = tinysr.tensor(np.random.default_rng(0).uniform(0.5, 1.0, (1, 1, side, side)), requires_grad=True)
    widest = 0
    for phase in range(model.scale):
        x.grad = None
        y = model(x)
        c = (side // 2) * model.scale + phase
        y[:, :, c, c].sum().backward()
        support = np.abs(np.asarray(x.grad)[0, 0]) > 0
        rows, cols = np.where(support.any(1))[0], np.where(support.any(0))[0]
        assert rows.min() > 0 and rows.max() < side - 1, "probe too small for the receptive field"
        widest = max(widest, rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    return widest


@pytest.mark.parametrize("scale,blocks,layers", [(2, 2, 2), (4, 2, 2), (4, 1, 3), (8, 2, 1)])
def test_receptive_field_is_exact(scale, blocks, layers):
    nn.init.seed(0)
    model = SRDenseNet(scale=scale, blocks=blocks, layers=layers, growth=2, low_channels=3, bottleneck=3)
    assert model.receptive_field == _measured_receptive_field(model)


def test_paper_configuration():
    # 1 + 2 * 65 through the low-level conv and the 64 dense layers, plus a 3-pixel LR window at the
    # upsampling end (two stride-2 deconvolutions and the 3x3 reconstruction) for the worst-placed HR pixel.
    assert build("srdensenet", scale=4).receptive_field == 133
