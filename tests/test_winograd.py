"""Winograd F(2x2,3x3), F(4x4,3x3) and F(6x6,3x3): the transforms, the NumPy twin's accuracy in float32
against a float64 direct convolution (forward and both gradients), and its adjoint identities.

Bounds (max |error| over the output, divided by max |float64 output|): 1e-4 for F(4x4,3x3) and
F(6x6,3x3), 1e-5 for F(2x2,3x3); im2col in float32 sits near 5e-7 on the same cases, F(6x6,3x3) near
1e-5 (its points +-1/2 keep the transforms' entries small).  Sizes are sampled (odd and even,
padding 0/1/2, channels 1..256, batch 1..16) to keep the test cheap.
"""
import numpy as np
import pytest

from tinysr.functional.conv_reference import (NumpyConvImpl, WinogradImpl, filter_cache, winograd_matrices,
                                              winograd_usable)

BOUND = {2: 1e-5, 4: 1e-4, 6: 1e-4}
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


@pytest.mark.parametrize("m", [2, 4, 6])
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


@pytest.mark.parametrize("m", [2, 4, 6])
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


def test_filter_cache_follows_in_place_updates(monkeypatch):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    impl = WinogradImpl(4)
    monkeypatch.setattr(filter_cache, "active", lambda: True)
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


# ------------------------------------------------------------------ the Numba kernels and the dispatch
numba = pytest.importorskip("numba")

import tinysr_kernels.cpu as K  # noqa: E402
from tinysr_kernels.cpu import winograd as KW  # noqa: E402
from tinysr_kernels.cpu import winograd_transforms as KT  # noqa: E402

from tinysr import Tensor  # noqa: E402
from tinysr.functional import conv as C  # noqa: E402
from tinysr.functional import dispatch as D  # noqa: E402

KERNEL_CASES = [  # (n, c, o, h, w, padding)
    (2, 3, 5, 7, 8, 1), (1, 4, 2, 5, 5, 0), (3, 2, 3, 9, 6, 2), (2, 16, 17, 13, 11, 1), (1, 8, 8, 3, 3, 0),
    (1, 37, 5, 16, 16, 1), (1, 45, 4, 32, 32, 0),
    # 4 KiB apart, channels share L1 sets and go 8 at a time, with a partial last block: the output
    # planes of 32 x 32 (tiles_out's write), and F(2x2)'s staged rows of 1024 columns (the gather)
    (1, 5, 37, 32, 32, 1), (1, 9, 3, 3, 1022, 1),
]


@pytest.mark.parametrize("budget", [4 << 20, 1])          # one chunk per thread, or one tile row per chunk
@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("case", KERNEL_CASES)
def test_numba_winograd_equals_numpy_twin(monkeypatch, budget, m, case):
    monkeypatch.setattr(KW, "chunk_budget", budget)
    n, c, o, h, w_, p = case
    rng = np.random.default_rng(sum(case) + m)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    fast, twin, s, pad = K.CONV_IMPLS[f"winograd{m}"], WinogradImpl(m), (1, 1), (p, p)
    tol = 3e-5 if m == 6 else 1e-5          # float32 rounding in a different order; F(6x6)'s is larger
    y = fast.forward(x, w, s, pad, bias=b)
    y_ref = twin.forward(x, w, s, pad) + b.reshape(1, -1, 1, 1)
    scale = np.abs(y_ref).max()
    np.testing.assert_allclose(y, y_ref, atol=tol * scale)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gx_ref = fast.backward_data(gy, w, x.shape, s, pad), twin.backward_data(gy, w, x.shape, s, pad)
    np.testing.assert_allclose(gx, gx_ref, atol=tol * np.abs(gx_ref).max())
    gw, gw_ref = fast.backward_weight(x, gy, w.shape, s, pad), twin.backward_weight(x, gy, w.shape, s, pad)
    np.testing.assert_allclose(gw, gw_ref, atol=tol * np.abs(gw_ref).max())
    gx2, gw2 = fast.backward(x, w, gy, s, pad)             # both in one pass (padding 1) or one after the other
    np.testing.assert_allclose(gx2, gx_ref, atol=tol * np.abs(gx_ref).max())
    np.testing.assert_allclose(gw2, gw_ref, atol=tol * np.abs(gw_ref).max())
    assert fast.backward(x, w, gy, s, pad, need_x=False)[0] is None
    # relu(conv + b) in one op: ReLU as the output is written, its mask as the gradient is read, and
    # the bias gradient from the transformed output gradient.
    z_ref = y_ref
    y_relu = fast.forward(x, w, s, pad, bias=b, relu=True)
    np.testing.assert_allclose(y_relu, np.maximum(z_ref, 0), atol=tol * scale)
    gz = gy * (y_relu > 0)
    gx3, gw3, gb3 = fast.backward_fused(x, w, gy, s, pad, True, y_relu)
    gz_x = twin.backward_data(gz, w, x.shape, s, pad)
    np.testing.assert_allclose(gx3, gz_x, atol=tol * np.abs(gz_x).max())
    gz_w = twin.backward_weight(x, gz, w.shape, s, pad)
    np.testing.assert_allclose(gw3, gz_w, atol=tol * np.abs(gz_w).max())
    np.testing.assert_allclose(gb3, gz.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    _, _, gb4 = fast.backward_fused(x, w, gy, s, pad)
    np.testing.assert_allclose(gb4, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_paired_tables_rebuild_the_transforms(m):
    """The half-sum tables of BT and A give back every row: row 0 from the even columns, row a - 1 from
    the odd ones, each +-p pair as the sum and the difference of its two half sums."""
    at, _, bt = winograd_matrices(m, dtype=np.float32)
    for lt in (bt, np.ascontiguousarray(at.T)):
        KT.check_paired(lt)
        ce, co = KT.paired_table(lt)
        a, ti = lt.shape
        rebuilt = np.zeros_like(lt)
        rebuilt[0, 0::2], rebuilt[a - 1, 1::2] = ce[0, :(ti + 1) // 2], co[a - 1, :ti // 2]
        for r in range(1, a - 1, 2):
            rebuilt[r, 0::2] = rebuilt[r + 1, 0::2] = ce[r, :(ti + 1) // 2]
            rebuilt[r, 1::2], rebuilt[r + 1, 1::2] = co[r, :ti // 2], -co[r, :ti // 2]
        np.testing.assert_array_equal(rebuilt, lt)


def test_check_paired_rejects_other_matrices():
    bt = winograd_matrices(4, dtype=np.float32)[2]
    with pytest.raises(ValueError, match="winograd_matrices"):
        KT.check_paired(bt[::-1])                      # the points in another order
    with pytest.raises(ValueError, match="pairs"):
        KT.check_paired(np.ones((5, 5), np.float32))


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("flip", [False, True])
def test_filter_transform_kernel_equals_the_numpy_one(m, flip):
    from tinysr.functional.conv_reference import flipped_filters, winograd_filter
    w = np.random.default_rng(m).standard_normal((5, 3, 3, 3)).astype(np.float32)
    want = winograd_filter(flipped_filters(w) if flip else w, m)
    got = np.full_like(want, np.nan)
    KT.filter_transform(w, np.ascontiguousarray(winograd_matrices(m, dtype=np.float32)[1]), flip, got)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("m", [2, 4, 6])
def test_filter_gradient_kernel_is_the_adjoint_of_the_transform(m):
    rng = np.random.default_rng(m)
    g = np.ascontiguousarray(winograd_matrices(m, dtype=np.float32)[1])
    du = rng.standard_normal(((m + 2) ** 2, 3, 5)).astype(np.float32)
    got = np.full((5, 3, 3, 3), np.nan, dtype=np.float32)
    KT.filter_gradient(du, g, got)
    want = np.einsum("ik,ijco,jl->ockl", g, du.reshape(m + 2, m + 2, 3, 5), g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)     # <U(w), dU> = <w, G^T dU G>
    u = np.empty_like(du)
    KT.filter_transform(w, g, False, u)
    np.testing.assert_allclose(np.vdot(u, du), np.vdot(w, got), rtol=1e-4)


def test_numba_winograd_float64_goes_to_the_twin():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((3, 2, 3, 3))
    y = K.CONV_IMPLS["winograd4"].forward(x, w, (1, 1), (1, 1))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, NumpyConvImpl.forward(x, w, (1, 1), (1, 1)), atol=1e-12)


@pytest.mark.parametrize("env, shape, w_shape, stride, padding, want", [
    ("", (16, 64, 41, 41), (64, 64, 3, 3), (1, 1), (1, 1), "winograd6"),      # VDSR's layer: 3136 vs 4356
    ("", (16, 64, 48, 48), (64, 64, 3, 3), (1, 1), (1, 1), "winograd4"),      # EDSR's: 4096 vs 5184 (0.79)
    ("", (16, 64, 30, 30), (64, 64, 3, 3), (1, 1), (1, 1), "winograd6"),
    ("", (1, 64, 256, 256), (64, 64, 3, 3), (1, 1), (1, 1), "winograd4"),
    ("", (4, 64, 10, 10), (64, 64, 3, 3), (1, 1), (1, 1), "winograd2"),        # under 4 x 4 tiles of F(4x4)
    ("", (16, 1, 41, 41), (64, 1, 3, 3), (1, 1), (1, 1), "im2col"),            # VDSR's first layer
    ("", (16, 16, 41, 41), (16, 16, 3, 3), (1, 1), (1, 1), "im2col"),          # too few channels
    ("", (16, 32, 41, 41), (32, 32, 3, 3), (1, 1), (1, 1), "winograd6"),
    ("", (16, 64, 41, 41), (1, 64, 3, 3), (1, 1), (1, 1), "im2col"),           # and its last
    ("", (16, 64, 41, 41), (64, 64, 3, 3), (2, 2), (1, 1), "im2col"),
    ("", (16, 64, 41, 41), (64, 64, 5, 5), (1, 1), (2, 2), "im2col"),
    ("winograd2", (16, 64, 41, 41), (64, 64, 3, 3), (1, 1), (1, 1), "winograd2"),
    ("winograd4", (16, 64, 41, 41), (64, 64, 3, 3), (1, 1), (1, 1), "winograd4"),
    ("winograd6", (2, 3, 9, 8), (4, 3, 3, 3), (1, 1), (0, 0), "winograd6"),
    ("winograd4", (2, 3, 9, 8), (4, 3, 3, 3), (1, 1), (0, 0), "winograd4"),    # forced: any usable layer
    ("winograd4", (2, 3, 9, 8), (4, 3, 9, 9), (1, 1), (4, 4), "im2col"),       # ... but only those
    ("im2col", (16, 64, 41, 41), (64, 64, 3, 3), (1, 1), (1, 1), "im2col"),
])
def test_dispatch_rule_and_override(monkeypatch, env, shape, w_shape, stride, padding, want):
    monkeypatch.setenv("TINYSR_CONV", env)
    assert D.choose(shape, w_shape, stride, padding, "numba") == want
    impl = D.conv_impl(np.zeros(shape, np.float32), w_shape, stride, padding)
    assert impl is K.CONV_IMPLS[want]


def test_numpy_backend_keeps_im2col_unless_forced(monkeypatch):
    x, ws = np.zeros((16, 64, 41, 41), np.float32), (64, 64, 3, 3)
    C.set_conv_impl("numpy")
    try:
        assert D.conv_impl(x, ws, (1, 1), (1, 1)) is NumpyConvImpl
        monkeypatch.setenv("TINYSR_CONV", "winograd2")
        impl = D.conv_impl(x, ws, (1, 1), (1, 1))
        assert isinstance(impl, WinogradImpl) and impl.m == 2
    finally:
        C.set_conv_impl(None)


@pytest.mark.parametrize("var, value", [("TINYSR_CONV", "winograd8"), ("TINYSR_KERNELS", "off")])
def test_unknown_environment_values_say_what_to_set(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=f"{var}=.*set it to"):
        D.conv_impl(np.zeros((1, 8, 8, 8), np.float32), (8, 8, 3, 3), (1, 1), (1, 1))


@pytest.mark.parametrize("algorithm", ["winograd2", "winograd4", "winograd6"])
@pytest.mark.parametrize("transposed", [False, True, "relu"])
def test_ops_with_winograd_forced_match_im2col(monkeypatch, algorithm, transposed):
    """conv2d, conv2d with its ReLU fused (``"relu"``) and a stride-1 conv_transpose2d (RED30's) through
    the op, forward and all gradients."""
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((3, 6, 11, 10)).astype(np.float32)
    w0 = (rng.standard_normal((6, 5, 3, 3) if transposed is True else (5, 6, 3, 3)) / 7).astype(np.float32)
    b0 = rng.standard_normal(5).astype(np.float32)
    op = {True: C.conv_transpose2d, False: C.conv2d}.get(transposed, lambda *a, **k: C.conv2d(*a, **k, activation="relu"))
    out = {}
    for env in ("im2col", algorithm):
        monkeypatch.setenv("TINYSR_CONV", env)
        x, w, b = (Tensor(a.copy(), requires_grad=True) for a in (x0, w0, b0))
        y = op(x, w, b, padding=1)
        y.backward(np.cos(np.arange(y.data.size, dtype=np.float32)).reshape(y.shape))
        out[env] = (y.data, x.grad, w.grad, b.grad)
    for got, ref in zip(out[algorithm], out["im2col"]):
        np.testing.assert_allclose(got, ref, atol=2e-5 * np.abs(ref).max())


def test_filter_cache_is_used_at_inference_only(monkeypatch):
    from tinysr import no_grad
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    x = Tensor(rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    filter_cache.clear()
    C.set_conv_impl("numpy")
    monkeypatch.setenv("TINYSR_CONV", "winograd4")
    try:
        C.conv2d(x, w, padding=1).backward(np.ones((1, 4, 8, 8), np.float32))
        assert not filter_cache._entries                      # training: nothing kept
        with no_grad():
            C.conv2d(x, w, padding=1)
        assert len(filter_cache._entries) == 1
    finally:
        C.set_conv_impl(None)
        filter_cache.clear()


def test_kernels_import_only_the_reference_layer():
    """``kernels/`` may use tinysr's NumPy twins (conv_reference) and nothing above them.  The CUDA
    self-test is exempt: it is a test, run by hand on a GPU, that compares kernels with tinysr's ops, and
    no kernel imports it."""
    import pathlib
    import re
    root = pathlib.Path(K.__file__).resolve().parents[1]
    bad = []
    for path in root.rglob("*.py"):
        if path.name == "selftest.py":
            continue
        for line in path.read_text().splitlines():
            hit = re.match(r"\s*(?:from|import)\s+(tinysr(?:\.\w+)*)(?=\s|$)", line)
            if hit and hit.group(1) not in ("tinysr.functional.conv_reference", "tinysr.backend"):
                bad.append(f"{path.relative_to(root)}: {line.strip()}")
    assert not bad, "kernels import above the reference layer:\n" + "\n".join(bad)
