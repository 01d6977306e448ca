"""tinysr.data.protocol.prepare: the one place that turns an HR image into (network input, reference)."""
import numpy as np
import pytest

from tinysr import metrics
from tinysr.data import make_pair
from tinysr.data.color import rgb_to_y
from tinysr.data.protocol import CONVENTIONS, PROTOCOLS, prepare
from tinysr.data.resize import imresize


@pytest.fixture
def hr():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (50, 61, 3), dtype=np.uint8)     # not a multiple of 2, 3 or 4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_convention_gives_the_sizes_and_types_it_promises(hr, scale):
    h, w = 50 // scale * scale, 61 // scale * scale
    shapes = {"lr-y": (h // scale, w // scale), "bicubic-y": (h, w), "lr-rgb": (h // scale, w // scale, 3),
              "bicubic-rgb": (h, w, 3)}
    for conv in CONVENTIONS:
        x, ref = prepare(hr, scale, conv)
        assert x.shape == shapes[conv], conv
        assert x.dtype == (np.uint8 if conv.endswith("rgb") else np.float64)
        assert ref.dtype == np.uint8 and ref.shape[:2] == (h, w)
    x, ref = prepare(hr, scale, "bicubic-y")
    np.testing.assert_array_equal(ref, rgb_to_y(hr[:h, :w]))
    np.testing.assert_array_equal(x, imresize(imresize(ref / 255.0, 1.0 / scale), scale))


def test_the_callers_are_layouts_of_the_same_arrays(hr):
    lr, y = make_pair(hr, 3)
    x, ref = prepare(hr, 3, "lr-y")
    np.testing.assert_array_equal(lr, x.astype(np.float32))
    np.testing.assert_array_equal(y, (ref / 255.0).astype(np.float32))
    sr, ref2 = metrics.bicubic_sr(hr, 3)
    np.testing.assert_array_equal(sr, prepare(hr, 3, "bicubic-y")[0])
    # a grayscale image under an RGB convention: three equal channels in, the 2-D image as reference
    gray = hr[..., 0]
    x, ref = prepare(gray, 2, "lr-rgb")
    assert x.shape[-1] == 3 and ref.ndim == 2
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    np.testing.assert_array_equal(metrics.bicubic_sr(gray, 2, channel="rgb")[0], imresize(imresize(gray[:, :60], 0.5), 2.0))


def test_source_protocols_serve_only_their_conventions(hr):
    assert set(PROTOCOLS) == {"matlab", "vdsr", "pytorch", "yjn870"}
    x, gt = prepare(hr, 3, "bicubic-y", protocol="pytorch")
    assert x.shape == gt.shape and gt.dtype == np.float64 and 0.0 <= gt.min() and gt.max() <= 1.0
    with pytest.raises(ValueError, match="makes inputs for bicubic-y, not 'lr-rgb'"):
        prepare(hr, 3, "lr-rgb", protocol="vdsr")
    with pytest.raises(ValueError, match="unknown protocol 'octave'"):
        prepare(hr, 3, "lr-y", protocol="octave")
    with pytest.raises(ValueError, match="not 'rgb'"):
        prepare(hr, 3, "rgb")
