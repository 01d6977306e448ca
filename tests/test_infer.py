"""Inference: tiled output equals untiled output for every model family; self-ensemble and colour
handling behave as documented."""
import numpy as np
import pytest

from tinysr import infer, models, nn
from tinysr.demo import TinyESPCN

FAMILIES = [  # (name, scale, build kwargs, input side)
    ("srcnn", 3, {"padding": "same"}, 30),
    ("fsrcnn", 3, {}, 20),
    ("vdsr", 2, {}, 30),
    ("drcn", 2, {}, 24),
    ("red30", 2, {}, 24),
    ("drrn", 2, {"units": 9}, 24),
    ("srdensenet", 4, {}, 12),
    ("srresnet", 4, {}, 12),
    ("edsr_baseline", 2, {}, 16),
    ("mdsr", 3, {}, 14),
]


@pytest.mark.parametrize("name,scale,kw,side", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_tiled_equals_untiled(name, scale, kw, side):
    nn.init.seed(0)
    model = models.build(name, scale=scale, **kw).eval()
    channels = 3 if model.input_convention == "lr-rgb" else 1
    x = np.random.default_rng(1).uniform(0, 1, (1, channels, side + 1, side - 1)).astype(np.float32)
    # The replicate border adds the receptive-field radius around these tiny inputs, which multiplies the
    # number of tiles for the deep networks; their tiling is checked on the raw network (border="zeros"),
    # the border itself on the shallow ones and in test_replicate_border_*.
    border = "replicate" if name in ("srcnn", "fsrcnn", "vdsr") else "zeros"
    whole = infer.predict(model, x, border=border)
    tiled = infer.predict(model, x, tile=side // 3, border=border)
    assert tiled.shape == whole.shape
    # 1e-5 of the output's scale: randomly initialised deep networks (DRRN's 9 units) reach |y| ~ 4, and the
    # tiles' GEMMs round in a different order
    assert np.abs(tiled - whole).max() < 1e-5 * max(1.0, float(np.abs(whole).max()))


def test_tile_without_enough_margin_differs():
    """The margin is what makes tiles exact: with none, tile borders show."""
    nn.init.seed(0)
    m = TinyESPCN()
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 24, 24)).astype(np.float32)
    assert np.abs(infer.predict(m, x, tile=8, margin=0) - infer.predict(m, x)).max() > 1e-3


def test_self_ensemble_of_an_equivariant_model_is_the_model():
    """A network whose kernels are symmetric under the 8 transforms gives the same output on each,
    so the ensemble equals one pass; for a general network it differs."""
    nn.init.seed(0)
    m = TinyESPCN(r=1)
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 12, 12)).astype(np.float32)
    assert np.abs(infer.predict(m, x, self_ensemble=True) - infer.predict(m, x)).max() > 1e-4
    for conv in (m.feature_extraction, m.sub_pixel):
        w = conv.weight.data
        w = w + w.transpose(0, 1, 3, 2)
        w = w + w[..., ::-1, :] + w[..., :, ::-1] + w[..., ::-1, ::-1]
        conv.weight.data = np.ascontiguousarray(w)
    np.testing.assert_allclose(infer.predict(m, x, self_ensemble=True), infer.predict(m, x), atol=1e-5)


def test_super_resolve_colour_and_gray():
    nn.init.seed(0)
    m = TinyESPCN()
    m.input_convention = "lr-y"
    img = (np.random.default_rng(0).uniform(0, 255, (10, 12, 3))).astype(np.uint8)
    out = infer.super_resolve(m, img, 2)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8
    assert infer.super_resolve(m, img[..., 0], 2).shape == (20, 24)
    with pytest.raises(ValueError, match="uint8"):
        infer.super_resolve(m, img.astype(np.float32), 2)


def test_replicate_border_removes_the_dark_edge_of_a_zero_padded_network():
    """A constant image through a network that averages (a box filter with zero padding) darkens at the
    border; the default replicate border keeps it constant, and border='zeros' gives the raw network."""
    from tinysr import nn
    m = nn.Conv2d(1, 1, 5, padding=2)
    m.weight.data[...] = 1 / 25
    m.bias.data[...] = 0
    m.receptive_field = 5
    x = np.full((1, 1, 12, 15), 0.8, np.float32)
    np.testing.assert_allclose(infer.predict(m, x), 0.8, atol=1e-6)
    raw = infer.predict(m, x, border="zeros")
    assert raw[0, 0, 0, 0] < 0.5 and abs(raw[0, 0, 6, 7] - 0.8) < 1e-6
    np.testing.assert_allclose(infer.predict(m, x, tile=5), infer.predict(m, x), atol=1e-6)
    with pytest.raises(ValueError, match="border"):
        infer.predict(m, x, border="mirror")
