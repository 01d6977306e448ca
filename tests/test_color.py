"""BT.601 studio-range YCbCr, as MATLAB's rgb2ycbcr / ycbcr2rgb."""
import numpy as np
import pytest

from tinysr.data.color import rgb_to_y, rgb_to_ycbcr, y_from_uint8, ycbcr_to_rgb


def test_reference_values():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
    ycc = rgb_to_ycbcr(px)
    assert ycc.dtype == np.uint8
    np.testing.assert_array_equal(ycc[0, 0], [16, 128, 128])
    np.testing.assert_array_equal(ycc[0, 1], [235, 128, 128])
    # Red: Y = 16 + 65.481 = 81.481 -> 81, Cb = 128 - 37.797 = 90.2 -> 90, Cr = 128 + 112 = 240
    np.testing.assert_array_equal(ycc[0, 2], [81, 90, 240])
    np.testing.assert_allclose(y_from_uint8(px)[0], [16.0, 235.0, 81.481], atol=1e-9)


def test_float_path_matches_skimage_and_is_unrounded():
    from skimage.color import rgb2ycbcr
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (17, 13, 3), dtype=np.uint8)
    ours = rgb_to_ycbcr(img.astype(np.float64) / 255) * 255
    np.testing.assert_allclose(ours, rgb2ycbcr(img), atol=1e-9)    # skimage: same BT.601 studio range
    np.testing.assert_allclose(y_from_uint8(img), ours[..., 0], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(img.astype(np.float64) / 255) * 255, ours[..., 0], atol=1e-9)
    # uint8 path = MATLAB: rounded half away from zero
    np.testing.assert_array_equal(rgb_to_y(img), np.floor(ours[..., 0] + 0.5).astype(np.uint8))


def test_round_trips():
    rng = np.random.default_rng(1)
    f = rng.random((8, 9, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(f)), f, atol=1e-12)
    u = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(rgb_to_ycbcr(u))
    assert back.dtype == np.uint8
    assert np.abs(back.astype(int) - u).max() <= 2         # YCbCr quantisation costs at most ~2 levels


def test_gray_is_its_own_y_and_shape_errors():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert rgb_to_y(g) is g
    np.testing.assert_array_equal(rgb_to_y(g[..., None]), g)
    np.testing.assert_array_equal(y_from_uint8(g), g.astype(float))
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_ycbcr(g)
    with pytest.raises(ValueError):
        ycbcr_to_rgb(np.zeros((2, 2, 4)))
