"""Acceptance 1 of the foundation: every op, for every option, passes a float64 central-difference
gradient check (tinysr.gradcheck), plus directional checks on a bigger convolution."""
import numpy as np
import pytest

from tinysr import Tensor
from tinysr import functional as F
from tinysr.gradcheck import GradientCheckError, check_grad, check_grad_directional


def rand(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


CONV_CASES = [  # (N, C, H, W, O, k, stride, padding, bias)
    (2, 3, 7, 6, 4, 3, 1, 0, True),
    (1, 2, 8, 8, 3, 3, 1, 1, False),
    (2, 2, 9, 7, 3, 3, 2, 1, True),
    (1, 3, 10, 11, 2, 3, 3, 0, True),
    (1, 2, 5, 6, 2, 3, 1, 4, True),
    (2, 1, 6, 7, 2, 2, 2, 0, True),   # even kernel
    (1, 2, 9, 9, 2, 5, 3, 4, False),
    (1, 1, 11, 9, 1, 9, 1, 4, True),  # SRCNN-like 9x9, one channel
]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,bias", CONV_CASES)
def test_conv2d_gradient(n, c, h, w, o, k, s, p, bias):
    args = [rand(n, c, h, w), rand(o, c, k, k, seed=1)] + ([rand(o, seed=2)] if bias else [])
    check_grad(lambda *a: F.conv2d(*a, stride=s, padding=p), *args)


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_with_relu_gradient(bias):
    args = [rand(2, 3, 7, 6), rand(4, 3, 3, 3, seed=1)] + ([rand(4, seed=2)] if bias else [])
    check_grad(lambda *a: F.conv2d(*a, padding=1, activation="relu"), *args)


def test_conv2d_activation_must_be_known():
    with pytest.raises(ValueError, match="activation must be None or 'relu'"):
        F.conv2d(Tensor(rand(1, 1, 3, 3)), Tensor(rand(1, 1, 3, 3)), activation="gelu")


TCONV_CASES = [  # (N, C, H, W, O, k, stride, padding, output_padding, bias)
    (2, 3, 4, 5, 2, 3, 1, 0, 0, True),
    (1, 2, 4, 4, 3, 3, 2, 1, 1, False),
    (2, 2, 3, 5, 2, 3, 2, 0, 1, True),
    (1, 2, 4, 3, 2, 3, 3, 1, 2, True),
    (1, 2, 5, 4, 2, 5, 3, 4, 2, True),
    (1, 3, 3, 3, 1, 9, 3, 4, 2, True),  # FSRCNN x3 deconvolution
    (1, 2, 3, 4, 2, 4, 2, 1, 0, False),  # even kernel (SRDenseNet-style)
]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,op,bias", TCONV_CASES)
def test_conv_transpose2d_gradient(n, c, h, w, o, k, s, p, op, bias):
    args = [rand(n, c, h, w), rand(c, o, k, k, seed=1)] + ([rand(o, seed=2)] if bias else [])
    check_grad(lambda *a: F.conv_transpose2d(*a, stride=s, padding=p, output_padding=op), *args)


def test_conv2d_directional_big():
    x, w, b = rand(2, 16, 13, 12), rand(24, 16, 3, 3, seed=1), rand(24, seed=2)
    check_grad_directional(lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1), x, w, b, directions=3)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 7)])
@pytest.mark.parametrize("op", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_pointwise_gradients(op, shape):
    x = rand(*shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's kink, where the derivative is undefined
    fn = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2), "sigmoid": F.sigmoid, "tanh": F.tanh}[op]
    check_grad(fn, x)


@pytest.mark.parametrize("slopes", [1, 3])
def test_prelu_gradient(slopes):
    x = rand(2, 3, 4, 5)
    check_grad(F.prelu, x, rand(slopes, seed=3) * 0.3)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 4), (6, 5)])
def test_batch_norm_gradient(training, shape):
    c = shape[1]
    rm, rv = rand(c, seed=4) * 0.1, np.abs(rand(c, seed=5)) + 0.5
    check_grad(lambda x, g, b: F.batch_norm(x, rm.copy(), rv.copy(), g, b, training=training),
               rand(*shape), rand(c, seed=1), rand(c, seed=2))


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_gradient(r):
    check_grad(lambda x: F.pixel_shuffle(x, r), rand(2, 2 * r * r, 3, 4))


def test_concat_gradient():
    check_grad(lambda a, b, c: F.concat([a, b, c], axis=1), rand(2, 3, 4, 4), rand(2, 1, 4, 4, seed=1),
               rand(2, 2, 4, 4, seed=2))


@pytest.mark.parametrize("mode", ["constant", "replicate", "reflect"])
@pytest.mark.parametrize("pad", [1, (2, 0, 1, 3), (0, 4, 4, 0)])
def test_pad_gradient(mode, pad):
    check_grad(lambda x: F.pad(x, pad, mode), rand(2, 2, 6, 5))


def test_linear_and_flatten_gradient():
    check_grad(lambda x, w, b: F.linear(F.flatten(x), w, b), rand(3, 2, 2, 3), rand(4, 12, seed=1), rand(4, seed=2))


@pytest.mark.parametrize("loss", ["mse", "l1", "bce"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_gradients(loss, reduction):
    pred = rand(2, 3, 4)
    if loss == "bce":
        target = np.random.default_rng(1).uniform(0, 1, pred.shape)
        check_grad(lambda p, t: F.bce_with_logits(p, t, reduction=reduction), pred, target)
    else:
        target = rand(2, 3, 4, seed=9)
        fn = F.mse_loss if loss == "mse" else F.l1_loss
        check_grad(lambda p, t: fn(p, t, reduction=reduction), pred, target)


@pytest.mark.parametrize("expr", [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / (b * b + 1.0),
    lambda a, b: (a ** 3) * 2.0 - b, lambda a, b: -a + 1.0 / (b * b + 2.0),
])
def test_arithmetic_with_broadcasting(expr):
    # b broadcasts along the batch and spatial axes: its gradient must be summed back
    check_grad(expr, rand(2, 3, 4, 5), rand(1, 3, 1, 5, seed=1))


@pytest.mark.parametrize("fn", [
    lambda x: x[..., 1:4, 2:5], lambda x: x[:, 1], lambda x: x.reshape(6, -1), lambda x: x.transpose(0, 2, 3, 1),
    lambda x: x.sum(), lambda x: x.sum(axis=(0, 2)), lambda x: x.mean(axis=1, keepdims=True), lambda x: x.mean(),
    lambda x: x[:, [0, 0, 2]],
])
def test_shape_ops_gradients(fn):
    check_grad(fn, rand(2, 3, 5, 6))


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself must be able to fail."""
    from tinysr.autograd import Function

    class WrongSquare(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, gy):
            return gy * self.x  # should be 2 * x

    with pytest.raises(GradientCheckError):
        check_grad(lambda x: WrongSquare()(x), rand(3, 4))
    with pytest.raises(GradientCheckError):
        check_grad_directional(lambda x: WrongSquare()(x), rand(3, 4))


def test_gradcheck_requires_float64():
    with pytest.raises(GradientCheckError, match="float64"):
        check_grad(F.relu, Tensor(np.ones((2, 2), np.float32), requires_grad=True))


@pytest.mark.parametrize("shape,k", [((2, 3, 6, 8), 2), ((1, 2, 7, 5), 2), ((2, 1, 9, 6), 3), ((1, 2, 6, 6), (2, 3))])
def test_max_pool2d_gradient(shape, k):
    # distinct values (a permutation): no ties, so the maximum of every window is unique and differentiable
    x = np.random.default_rng(sum(shape)).permutation(int(np.prod(shape))).reshape(shape) * 0.1
    check_grad(lambda t: F.max_pool2d(t, k), x.astype(np.float64))
