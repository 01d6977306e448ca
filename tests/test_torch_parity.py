"""Acceptance 2 of the foundation: every op matches PyTorch's CPU result, forward and backward, in
float32 (max abs error below 1e-5 of the output's scale) and float64 (below 1e-10)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the test-time reference: pip install -e '.[test]'")
tF = torch.nn.functional

from tinysr import Tensor  # noqa: E402
from tinysr import functional as F  # noqa: E402

TOL = {np.float32: 1e-5, np.float64: 1e-10}


def compare(ours, theirs, arrays, dtype, grad_inputs=None, seed=0):
    """Run both functions on the same inputs and compare outputs and all input gradients."""
    rng = np.random.default_rng(seed)
    arrays = [a.astype(dtype) for a in arrays]
    xs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    ts = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    y, yt = ours(*xs), theirs(*ts)
    yt_np = yt.detach().numpy()
    assert y.shape == tuple(yt_np.shape)
    assert y.dtype == dtype
    gy = rng.standard_normal(y.shape).astype(dtype)
    y.backward(gy)
    yt.backward(torch.tensor(gy))
    scale = max(1.0, float(np.abs(yt_np).max()))
    tol = TOL[dtype]
    assert np.abs(y.numpy() - yt_np).max() <= tol * scale, "forward differs"
    for k, (x, t) in enumerate(zip(xs, ts)):
        if grad_inputs is not None and k not in grad_inputs:
            continue
        g, gt = x.grad, t.grad.numpy()
        gscale = max(1.0, float(np.abs(gt).max()))
        assert np.abs(g - gt).max() <= tol * gscale, f"gradient of input {k} differs"


def rand(*shape, seed=0):
    return np.random.default_rng(seed + 7 * len(shape) + sum(shape)).standard_normal(shape)


DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,h,w,o,k,s,p,bias", [
    (2, 3, 9, 8, 4, 3, 1, 1, True), (2, 4, 11, 10, 5, 3, 2, 1, False), (1, 3, 13, 12, 2, 5, 3, 4, True),
    (3, 1, 17, 16, 8, 9, 1, 0, True), (2, 6, 7, 9, 3, 1, 1, 0, True), (1, 2, 8, 9, 3, 4, 2, 0, True),
])
def test_conv2d(dtype, n, c, h, w, o, k, s, p, bias):
    arrays = [rand(n, c, h, w), rand(o, c, k, k, seed=1)] + ([rand(o, seed=2)] if bias else [])
    compare(lambda *a: F.conv2d(*a, stride=s, padding=p), lambda *a: tF.conv2d(*a, stride=s, padding=p),
            arrays, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,h,w,o,bias", [(2, 3, 9, 8, 4, True), (1, 4, 7, 10, 5, False), (2, 32, 14, 13, 32, True)])
def test_conv2d_with_relu_is_relu_of_conv2d(dtype, n, c, h, w, o, bias):
    """``conv2d(..., activation="relu")`` (one op; on 32 channels the Numba backend fuses the ReLU into
    its Winograd kernels) against PyTorch's ``relu(conv2d(...))``."""
    arrays = [rand(n, c, h, w), rand(o, c, 3, 3, seed=1) / np.sqrt(9 * c)] + ([rand(o, seed=2)] if bias else [])
    compare(lambda *a: F.conv2d(*a, padding=1, activation="relu"), lambda *a: tF.relu(tF.conv2d(*a, padding=1)),
            arrays, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,h,w,o,k,s,p,op,bias", [
    (2, 3, 5, 6, 2, 3, 1, 0, 0, True), (2, 4, 5, 4, 3, 3, 2, 1, 1, False), (1, 5, 6, 5, 1, 9, 3, 4, 2, True),
    (1, 3, 4, 5, 2, 9, 2, 4, 1, True), (2, 2, 4, 4, 3, 9, 4, 4, 3, True), (1, 3, 4, 4, 2, 3, 3, 1, 0, True),
])
def test_conv_transpose2d(dtype, n, c, h, w, o, k, s, p, op, bias):
    arrays = [rand(n, c, h, w), rand(c, o, k, k, seed=1)] + ([rand(o, seed=2)] if bias else [])
    compare(lambda *a: F.conv_transpose2d(*a, stride=s, padding=p, output_padding=op),
            lambda *a: tF.conv_transpose2d(*a, stride=s, padding=p, output_padding=op), arrays, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("r", [2, 3, 4])
def test_pixel_shuffle_channel_order(dtype, r):
    compare(lambda x: F.pixel_shuffle(x, r), lambda x: tF.pixel_shuffle(x, r), [rand(2, 2 * r * r, 3, 5)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_pointwise(dtype, name):
    ours = {"relu": F.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "sigmoid": F.sigmoid, "tanh": F.tanh}[name]
    theirs = {"relu": tF.relu, "leaky_relu": lambda x: tF.leaky_relu(x, 0.2), "sigmoid": torch.sigmoid,
              "tanh": torch.tanh}[name]
    x = rand(2, 3, 6, 5) * 4
    compare(ours, theirs, [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slopes", [1, 4])
def test_prelu(dtype, slopes):
    compare(F.prelu, tF.prelu, [rand(2, 4, 5, 6), rand(slopes, seed=3) * 0.25], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["constant", "replicate", "reflect"])
def test_pad(dtype, mode):
    pad = (2, 1, 3, 4)
    compare(lambda x: F.pad(x, pad, mode), lambda x: tF.pad(x, pad, mode=mode), [rand(2, 3, 6, 7)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_linear_flatten(dtype):
    compare(lambda a, b: F.concat([a, b], axis=1), lambda a, b: torch.cat([a, b], dim=1),
            [rand(2, 3, 4, 4), rand(2, 5, 4, 4, seed=1)], dtype)
    compare(lambda x, w, b: F.linear(F.flatten(x), w, b), lambda x, w, b: tF.linear(torch.flatten(x, 1), w, b),
            [rand(3, 2, 3, 3), rand(5, 18, seed=1), rand(5, seed=2)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses(dtype, reduction):
    p, t = rand(2, 3, 5, 4), rand(2, 3, 5, 4, seed=1)
    compare(lambda a, b: F.mse_loss(a, b, reduction), lambda a, b: tF.mse_loss(a, b, reduction=reduction),
            [p, t], dtype)
    compare(lambda a, b: F.l1_loss(a, b, reduction), lambda a, b: tF.l1_loss(a, b, reduction=reduction),
            [p, t], dtype)
    u = np.random.default_rng(3).uniform(0, 1, p.shape)
    compare(lambda a, b: F.bce_with_logits(a, b, reduction),
            lambda a, b: tF.binary_cross_entropy_with_logits(a, b, reduction=reduction), [p * 5, u], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 5)])
def test_batch_norm_running_statistics(dtype, shape):
    """Training mode over several steps (running stats must follow PyTorch's), then eval mode."""
    c = shape[1]
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    trm, trv = torch.zeros(c, dtype=torch.float32 if dtype == np.float32 else torch.float64), None
    trv = torch.ones_like(trm)
    gamma, beta = rand(c, seed=1), rand(c, seed=2)
    for step in range(4):
        x = rand(*shape, seed=10 + step) * (step + 1) + step
        compare(lambda x, g, b: F.batch_norm(x, rm, rv, g, b, training=True, momentum=0.1),
                lambda x, g, b: tF.batch_norm(x, trm, trv, g, b, training=True, momentum=0.1),
                [x, gamma, beta], dtype, seed=step)
        tol = TOL[dtype] * 10
        np.testing.assert_allclose(rm, trm.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=tol, atol=tol)
    compare(lambda x, g, b: F.batch_norm(x, rm, rv, g, b, training=False),
            lambda x, g, b: tF.batch_norm(x, trm, trv, g, b, training=False), [rand(*shape, seed=99), gamma, beta],
            dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", [((2, 3, 8, 10), 2), ((1, 4, 9, 7), 2), ((2, 2, 9, 11), 3)])
def test_max_pool2d(dtype, shape, k):
    # odd sizes: floor mode drops the last row/column, whose gradient must be zero as in PyTorch
    compare(lambda x: F.max_pool2d(x, k), lambda x: tF.max_pool2d(x, k), [rand(*shape)], dtype)
