"""Kernel level (DESIGN.md, testing layer 2): every Numba CPU kernel equals its NumPy twin.

Sizes are odd, strides 1/2/3, paddings 0/1/4, and inputs are deliberately non-contiguous (strided
views and transposes) -- the cases where index arithmetic goes wrong.  float32 throughout: that is the
dtype the kernels serve (float64 falls back to NumPy by design, see NumbaConvImpl).
"""
import itertools

import numpy as np
import pytest

pytest.importorskip("numba")
from tinysr_kernels import cpu as K  # noqa: E402
from tinysr_kernels.cpu import conv as kconv  # noqa: E402

from tinysr import Tensor  # noqa: E402
from tinysr import functional as F  # noqa: E402
from tinysr.functional import conv as C  # noqa: E402
from tinysr.functional import shape as S  # noqa: E402

STRIDES, PADS = (1, 2, 3), (0, 1, 4)


def noncontig(a, rng):
    """The same values as ``a`` but as a strided view (every other element of a larger array)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    return view


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(a, b, tol=2e-5):
    scale = max(1.0, float(np.abs(b).max()))
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.abs(a - b).max() <= tol * scale, np.abs(a - b).max() / scale


CASES = [(n, c, h, w, k, s, p) for (n, c, h, w), k, s, p in itertools.product(
    [(2, 3, 9, 7), (1, 1, 13, 11), (3, 2, 5, 6)], (1, 3, 5), STRIDES, PADS)
    if (h + 2 * p - k) // s + 1 > 0 and (w + 2 * p - k) // s + 1 > 0]


@pytest.mark.parametrize("n,c,h,w,k,s,p", CASES)
def test_im2col_col2im_match_numpy(n, c, h, w, k, s, p):
    rng = np.random.default_rng(n * 100 + k * 10 + s + p)
    x = noncontig(rnd(rng, n, c, h, w), rng)
    cols = K.im2col(x, k, k, (s, s), (p, p))
    np.testing.assert_array_equal(cols, C.im2col(x, k, k, (s, s), (p, p)))  # pure copies: exact
    g = rnd(rng, *cols.shape)
    close(K.col2im(g.T.copy().T, x.shape, k, k, (s, s), (p, p)), C.col2im(g, x.shape, k, k, (s, s), (p, p)))


def _conv_cases():
    for (n, c, h, w), o, k, s, p in itertools.product([(2, 3, 9, 7), (3, 5, 11, 8)], (1, 3, 7), (1, 3, 5),
                                                     STRIDES, PADS):
        if (h + 2 * p - k) // s + 1 > 0 and (w + 2 * p - k) // s + 1 > 0:
            yield n, c, h, w, o, k, s, p


def _conv_paths():
    for case in _conv_cases():
        yield pytest.param(1, 4096, *case, id="one-sample-slices-" + "-".join(map(str, case)))
        yield pytest.param(1 << 30, 4096, *case, id="whole-batch-" + "-".join(map(str, case)))
        if case[5:] == (1, 1, 0):  # a 1x1 convolution: also image by image, the image as its own columns
            yield pytest.param(1 << 30, 1, *case, id="1x1-image-by-image-" + "-".join(map(str, case)))


@pytest.mark.parametrize("budget, per_image, n, c, h, w, o, k, s, p", list(_conv_paths()))
def test_numba_conv_impl_matches_numpy(monkeypatch, budget, per_image, n, c, h, w, o, k, s, p):
    """forward (bias fused), backward_data, backward_weight and the fused backward, GEMM and direct paths."""
    monkeypatch.setattr(kconv.NumbaConvImpl, "col_budget", budget)
    monkeypatch.setattr(kconv.NumbaConvImpl, "per_image_min_pixels", per_image)
    rng = np.random.default_rng(7 * n + o + k + s + p)
    x = noncontig(rnd(rng, n, c, h, w), rng)
    wt = rnd(rng, o, c, k, k)
    b = rnd(rng, o)
    st, pd = (s, s), (p, p)
    _conv_maps_match(rng, x, wt, b, st, pd)


DIRECT_ROW_CASES = [  # (n, c, h, w, o, k, s, p): output channels <= direct_max_out, odd sizes
    (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]) for c in _conv_cases() if c[4] <= 3]


@pytest.mark.parametrize("row_block", [1, 3, 2048])
@pytest.mark.parametrize("n, c, h, w, o, k, s, p", DIRECT_ROW_CASES[::3])
def test_direct_forward_by_row_blocks_matches_numpy(monkeypatch, row_block, n, c, h, w, o, k, s, p):
    """The direct kernel's row-block path (large inference planes) on small cases, forced by setting the
    plane-size threshold to 0; blocks of 1 and 3 rows leave a partial last block for every odd height."""
    from tinysr_kernels.cpu import direct
    monkeypatch.setattr(direct, "rows_min_pixels", 0)
    monkeypatch.setattr(direct, "row_block_floats", row_block * ((w + 2 * p - k) // s + 1))
    assert o <= kconv.NumbaConvImpl.direct_max_out
    rng = np.random.default_rng(n + c + h + o + k + s + p)
    x = noncontig(rnd(rng, n, c, h, w), rng)
    wt, b = rnd(rng, o, c, k, k), rnd(rng, o)
    ref = C.NumpyConvImpl.forward(x, wt, (s, s), (p, p))
    close(kconv.NumbaConvImpl.forward(x, wt, (s, s), (p, p), bias=b), ref + b.reshape(1, -1, 1, 1))
    close(kconv.NumbaConvImpl.forward(x, wt, (s, s), (p, p)), ref)


@pytest.mark.parametrize("n, c, h, w, o, k, s, p", [case for case in DIRECT_ROW_CASES if case[6] == 1]
                         + [(2, 3, 9, 7, 2, 3, 1, 1), (1, 2, 8, 11, 2, 5, 1, 2)])   # two output channels
def test_direct_row_gradients_match_numpy(monkeypatch, n, c, h, w, o, k, s, p):
    """The direct kernel's stride-1 gradients for large planes (the input gradient as a forward
    convolution of the padded output gradient, the weight gradient row by row in a padded plane), forced
    on small cases by setting the plane-size threshold to 0; padding 4 with 1x1 and 3x3 kernels is not
    below the kernel size, and takes the per-tap input gradient instead."""
    from tinysr_kernels.cpu import direct
    monkeypatch.setattr(direct, "rows_min_pixels", 0)
    rng = np.random.default_rng(n + c + h + o + k + p)
    x = noncontig(rnd(rng, n, c, h, w), rng)
    _conv_maps_match(rng, x, rnd(rng, o, c, k, k), rnd(rng, o), (s, s), (p, p))


def _conv_maps_match(rng, x, wt, b, st, pd):
    """NumbaConvImpl's forward (with and without fused bias), backward_data, backward_weight and fused
    backward against the NumPy twin, with a non-contiguous output gradient."""
    fast, ref = kconv.NumbaConvImpl, C.NumpyConvImpl
    y = fast.forward(x, wt, st, pd, bias=b)
    close(y, ref.forward(x, wt, st, pd) + b.reshape(1, -1, 1, 1))
    close(fast.forward(x, wt, st, pd), ref.forward(x, wt, st, pd))          # no bias
    gy = noncontig(rnd(rng, *y.shape), rng)
    gx_ref, gw_ref = ref.backward_data(gy, wt, x.shape, st, pd), ref.backward_weight(x, gy, wt.shape, st, pd)
    close(fast.backward_data(gy, wt, x.shape, st, pd), gx_ref)
    close(fast.backward_weight(x, gy, wt.shape, st, pd), gw_ref, 5e-5)
    gx, gw = fast.backward(x, wt, gy, st, pd)
    close(gx, gx_ref)
    close(gw, gw_ref, 5e-5)
    assert fast.backward(x, wt, gy, st, pd, need_x=False)[0] is None


SHIFTED_CASES = [  # (n, c, o, h, w, kh, kw, ph, pw): odd sizes, square and oblong kernels, padding 0 .. k-1
    (2, 32, 40, 37, 29, 3, 3, 1, 1), (3, 5, 32, 35, 34, 3, 5, 0, 2), (1, 1, 16, 45, 37, 9, 9, 4, 4),
    (2, 32, 35, 36, 36, 1, 3, 0, 1), (1, 12, 48, 39, 38, 5, 5, 2, 2), (2, 48, 7, 33, 33, 3, 3, 2, 2),
    (1, 1, 32, 41, 35, 9, 9, 0, 0), (2, 40, 33, 35, 37, 5, 3, 4, 2),
]


@pytest.mark.parametrize("n, c, o, h, w, kh, kw, ph, pw", SHIFTED_CASES)
@pytest.mark.parametrize("cols_budget", [2 << 20, 1], ids=["whole-images", "row-by-row"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_blocked_columns_conv_matches_numpy(monkeypatch, n, c, o, h, w, kh, kw, ph, pw, cols_budget, n_threads):
    """Stride-1 convolutions on images of 1024+ pixels (columns built block by block in cache):
    all four maps, bias fused, with blocks of whole images and of single rows, on 1 and 2 threads."""
    from tinysr_kernels.cpu import shifted, threads
    monkeypatch.setattr(shifted, "cols_budget", cols_budget)
    before = threads.get_num_threads()
    threads.set_num_threads(n_threads)
    try:
        rng = np.random.default_rng(n + c + o + h + kh + pw)
        x = noncontig(rnd(rng, n, c, h, w), rng)
        wt = rnd(rng, o, c, kh, kw)
        b = rnd(rng, o)
        st, pd = (1, 1), (ph, pw)
        assert shifted.usable(x.shape, wt.shape, st, pd)
        _conv_maps_match(rng, x, wt, b, st, pd)
    finally:
        threads.set_num_threads(before)


def test_blocked_columns_path_is_taken_where_it_should_be(monkeypatch):
    from tinysr_kernels.cpu import shifted
    assert shifted.usable((16, 64, 41, 41), (64, 64, 3, 3), (1, 1), (1, 1))      # VDSR's training patches
    assert shifted.usable((1, 1, 268, 268), (64, 1, 9, 9), (1, 1), (0, 0))       # SRCNN at inference
    assert not shifted.usable((128, 1, 33, 33), (64, 1, 9, 9), (1, 1), (0, 0))   # SRCNN's patches: batched im2col
    assert not shifted.usable((16, 64, 41, 41), (64, 64, 3, 3), (2, 2), (1, 1))  # strided
    assert not shifted.usable((16, 64, 41, 41), (64, 64, 1, 1), (1, 1), (0, 0))  # 1x1: its own column matrix
    assert not shifted.usable((16, 64, 41, 41), (64, 64, 3, 3), (1, 1), (3, 3))  # padding beyond the kernel
    calls = []
    monkeypatch.setattr(shifted, "forward", lambda *a, **k: calls.append("forward") or np.zeros((1, 64, 40, 40),
                                                                                                 np.float32))
    x, w = np.zeros((1, 64, 40, 40), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    kconv.NumbaConvImpl.forward(x, w, (1, 1), (1, 1))
    assert calls == ["forward"]
    monkeypatch.setattr(kconv.NumbaConvImpl, "shifted", False)      # the switch that forces the batched im2col
    kconv.NumbaConvImpl.forward(x, w, (1, 1), (1, 1))
    assert calls == ["forward"]


def test_numba_conv_falls_back_for_float64():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7, 7)), rng.standard_normal((4, 3, 3, 3))
    y = kconv.NumbaConvImpl.forward(x, w, (1, 1), (1, 1))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, C.NumpyConvImpl.forward(x, w, (1, 1), (1, 1)))


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 5, 9, 11)])
def test_bias_grad_matches_numpy(shape):
    g = noncontig(rnd(np.random.default_rng(1), *shape), None)
    close(K.bias_grad(g), g.sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("r", [2, 3, 4])
def test_pixel_shuffle_matches_numpy(r):
    rng = np.random.default_rng(r)
    x = noncontig(rnd(rng, 2, 3 * r * r, 5, 7), rng)
    y = K.pixel_shuffle(x, r)
    twin = x.reshape(2, 3, r, r, 5, 7).transpose(0, 1, 4, 2, 5, 3).reshape(2, 3, 5 * r, 7 * r)  # shape.py's
    np.testing.assert_array_equal(y, twin)
    np.testing.assert_array_equal(K.pixel_unshuffle_array(noncontig(y, rng), r), S.pixel_unshuffle_array(y, r))


@pytest.fixture
def numpy_then_numba():
    """Run a function under the NumPy twins and under the kernels; restores the default."""
    def run(fn):
        out = []
        for impl in ("numpy", "numba"):
            C.set_conv_impl(impl)
            try:
                out.append(fn())
            finally:
                C.set_conv_impl(None)
        return out
    return run


@pytest.mark.parametrize("op", ["relu", "leaky_relu", "prelu1", "preluC", "pixel_shuffle"])
def test_pointwise_ops_match_numpy_twins(numpy_then_numba, op):
    """The Function-level switch: same forward and gradients with the kernels on and off."""
    rng = np.random.default_rng(3)
    x0 = noncontig(rnd(rng, 3, 8, 7, 9), rng)
    a0 = {"prelu1": np.array([0.25], np.float32), "preluC": rnd(rng, 8)}.get(op)
    gy = None

    def run():
        nonlocal gy
        x = Tensor(x0, requires_grad=True)
        a = Tensor(a0.copy(), requires_grad=True) if a0 is not None else None
        y = {"relu": lambda: F.relu(x), "leaky_relu": lambda: F.leaky_relu(x, 0.2),
             "pixel_shuffle": lambda: F.pixel_shuffle(x, 2)}.get(op, lambda: F.prelu(x, a))()
        if gy is None:
            gy = rnd(rng, *y.shape)
        y.backward(gy)
        return y.numpy(), x.grad, (a.grad if a is not None else None)

    (y0, gx0, ga0), (y1, gx1, ga1) = numpy_then_numba(run)
    close(y1, y0, 1e-6)
    close(gx1, gx0, 1e-6)
    if ga0 is not None:
        close(ga1, ga0, 1e-5)


def test_kernels_are_the_default_and_can_be_switched_off():
    x = np.zeros((1, 1, 3, 3), np.float32)
    C.set_conv_impl(None)
    assert C.conv_impl(x).name == "numba"
    C.set_conv_impl("numpy")
    try:
        assert C.conv_impl(x).name == "numpy"
        assert C.cpu_kernels() is None
    finally:
        C.set_conv_impl(None)
    assert C.cpu_kernels() is K


def test_thread_settings_are_reported():
    info = K.threads.info()
    assert info["numba_threads"] >= 1 and isinstance(info["blas"], list)


@pytest.mark.parametrize("user_layer", [None, "workqueue"])
def test_threading_layer_choice_in_a_fresh_process(user_layer):
    # OpenMP (started with sleeping idle workers) unless the user chose a layer; the process environment
    # is left as it was.
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    if user_layer:
        env["NUMBA_THREADING_LAYER"] = user_layer
    # A batched convolution with a sample per thread: on OpenMP each thread runs its share with parallel kernels
    # confined to it; workqueue aborts the process on concurrent launches, so there the kernels must stay serial.
    # The convolution comes first: it must also work before any other parallel kernel has started the layer.
    code = ("import os, numpy as np, numba; import tinysr_kernels.cpu as K;"
            "x, w = np.ones((4, 5, 9, 9), np.float32), np.ones((6, 5, 3, 3), np.float32);"
            "y = K.conv.NumbaConvImpl.forward(x, w, (1, 1), (1, 1));"
            "gx, gw = K.conv.NumbaConvImpl.backward(x, w, y, (1, 1), (1, 1));"
            "assert float(y[0, 0, 4, 4]) == 45.0 and np.isfinite(gx).all() and np.isfinite(gw).all();"
            "K.im2col(np.ones((2, 3, 8, 8), np.float32), 3, 3);"
            "print(numba.threading_layer(), 'OMP_WAIT_POLICY' in os.environ)")
    env["NUMBA_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    layer, leaked = out.stdout.split()
    assert leaked == "False"
    assert layer == (user_layer or layer) and layer in ("omp", "workqueue")
    if user_layer is None:
        import ctypes.util
        if ctypes.util.find_library("gomp"):
            assert layer == "omp"


def test_openmp_layer_keeps_its_own_runtime_when_torch_was_imported_first():
    # PyTorch puts its own libgomp (started with spinning idle workers) into the global symbol scope; Numba's
    # OpenMP layer must still bind to the libgomp tinysr started with sleeping workers.  The dynamic linker
    # says where each symbol went (LD_DEBUG=bindings, glibc).
    import os
    import subprocess
    import sys
    pytest.importorskip("torch")
    if not sys.platform.startswith("linux"):
        pytest.skip("LD_DEBUG bindings are a glibc feature")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    env["LD_DEBUG"] = "bindings"
    code = ("import torch, numpy as np, numba; import tinysr_kernels.cpu as K;"
            "K.im2col(np.ones((4, 16, 64, 64), np.float32), 3, 3); print(numba.threading_layer())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    if out.stdout.split()[-1] != "omp":
        pytest.skip("Numba's OpenMP layer is not available here")
    bound = [line.split(" to ", 1)[1] for line in out.stderr.splitlines()
             if "omppool" in line and "`GOMP_parallel'" in line and " to " in line]
    assert bound, "no GOMP_parallel binding reported for Numba's OpenMP layer"
    assert all("torch" not in b for b in bound), bound


def test_run_parallel_tasks_see_the_callers_numpy_error_state():
    """np.errstate lives in a context variable; pool threads must run in the caller's context, or a
    diverging step that the training CLI silences prints "invalid value encountered in matmul"."""
    import warnings

    def nan_from_inf(_):
        a = np.full(4, np.inf, np.float32)
        return a - a

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(invalid="ignore"):
            K.threads.run_parallel(nan_from_inf, range(3))
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        K.threads.run_parallel(nan_from_inf, [0, 1])


def test_numpy_ma_is_imported_before_kernel_threads_exist():
    # Numba types every ndarray argument through np.ma, a lazy NumPy import; the first kernel calls of two pool
    # threads at once raced on it (RecursionError in a 2-thread training run).  The kernels import it eagerly.
    import subprocess
    import sys
    from pathlib import Path
    code = "import sys, tinysr_kernels.cpu.threads; assert 'numpy.ma' in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
