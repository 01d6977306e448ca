"""Winograd F(2x2,3x3) and F(4x4,3x3): the transforms, the NumPy twin's accuracy in float32 against a
float64 direct convolution (forward and both gradients), and its adjoint identities.

Bounds (max |error| over the output, divided by max |float64 output|): 1e-4 for F(4x4,3x3), 1e-5 for
F(2x2,3x3); im2col in float32 sits near 5e-7 on the same cases.  Sizes are sampled (odd and even,
padding 0/1/2, channels 1..256, batch 1..16) to keep the test cheap.
"""
import numpy as np
import pytest

from tinysr.functional.conv_reference import (NumpyConvImpl, WinogradImpl, filter_cache, winograd_matrices,
                                              winograd_usable)

BOUND = {2: 1e-5, 4: 1e-4}
CASES = [  # (n, c, o, h, w, padding)
    (1, 1, 3, 6, 7, 0),
    (2, 16, 8, 9, 10, 1),
    (16, 8, 4, 8, 8, 2),
    (1, 256, 32, 8, 9, 1),
    (3, 64, 64, 13, 12, 1),
    (2, 3, 256, 7, 7, 2),
    (1, 5, 6, 3, 4, 0),         # a single row of output
]


def _rel(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("m", [2, 4, 6])
def test_one_dimensional_transforms_compute_the_correlation(m):
    at, g, bt = winograd_matrices(m)
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    rng = np.random.default_rng(m)
    d, w = rng.standard_normal(m + 2), rng.standard_normal(3)
    np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), np.correlate(d, w, "valid"), atol=1e-13)


def test_f43_transforms_are_lavin_and_grays():
    at, g, bt = winograd_matrices(4)
    np.testing.assert_array_equal(bt[0], [4, 0, -5, 0, 1, 0])
    np.testing.assert_array_equal(bt[5], [0, 4, 0, -5, 0, 1])
    np.testing.assert_allclose(g[0], [0.25, 0, 0])
    np.testing.assert_array_equal(at[3], [0, 1, -1, 8, -8, 1])


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("case", CASES)
def test_float32_winograd_against_float64_direct(m, case):
    n, c, o, h, w_, p = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)
    s, pad = (1, 1), (p, p)
    y = NumpyConvImpl.forward(x, w, s, pad)
    gy = rng.standard_normal(y.shape)
    gx = NumpyConvImpl.backward_data(gy, w, x.shape, s, pad)
    gw = NumpyConvImpl.backward_weight(x, gy, w.shape, s, pad)
    x32, w32, gy32 = (a.astype(np.float32) for a in (x, w, gy))
    impl = WinogradImpl(m)
    y32 = impl.forward(x32, w32, s, pad)
    assert y32.dtype == np.float32 and y32.shape == y.shape
    assert _rel(y32, y) <= BOUND[m]
    assert _rel(impl.backward_data(gy32, w32, x.shape, s, pad), gx) <= BOUND[m]
    assert _rel(impl.backward_weight(x32, gy32, w.shape, s, pad), gw) <= BOUND[m]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("p", [0, 1, 2])
def test_float64_winograd_maps_are_adjoint(m, p):
    """<conv(x), gy> = <x, backward_data(gy)> = <w, backward_weight(x, gy)>: the gradients are exact."""
    rng = np.random.default_rng(p)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    impl, s, pad = WinogradImpl(m), (1, 1), (p, p)
    y = impl.forward(x, w, s, pad)
    gy = rng.standard_normal(y.shape)
    lhs = float((y * gy).sum())
    assert abs(lhs - float((x * impl.backward_data(gy, w, x.shape, s, pad)).sum())) < 1e-10 * max(1, abs(lhs))
    assert abs(lhs - float((w * impl.backward_weight(x, gy, w.shape, s, pad)).sum())) < 1e-10 * max(1, abs(lhs))
    np.testing.assert_allclose(y, NumpyConvImpl.forward(x, w, s, pad), atol=1e-12)


def test_filter_cache_follows_in_place_updates():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    impl = WinogradImpl(4)
    filter_cache.clear()
    y0 = impl.forward(x, w, (1, 1), (1, 1))
    calls = []
    assert filter_cache.get(w, ("U", 4), lambda _: calls.append(1)) is not None and not calls  # a hit
    w -= 0.5                                    # what an optimiser step does to p.data
    np.testing.assert_allclose(impl.forward(x, w, (1, 1), (1, 1)), NumpyConvImpl.forward(x, w, (1, 1), (1, 1)),
                               atol=1e-12)
    assert not np.allclose(y0, impl.forward(x, w, (1, 1), (1, 1)))


@pytest.mark.parametrize("shape, stride, padding, ok", [
    ((1, 4, 8, 8), (1, 1), (1, 1), True),
    ((1, 4, 8, 8), (2, 2), (1, 1), False),
    ((1, 4, 8, 8), (1, 1), (3, 3), False),
    ((1, 4, 1, 1), (1, 1), (0, 0), False),
])
def test_winograd_applies_to_stride1_3x3_only(shape, stride, padding, ok):
    assert winograd_usable(shape, (4, 4, 3, 3), stride, padding) is ok
    assert not winograd_usable(shape, (4, 4, 5, 5), (1, 1), (1, 1))
