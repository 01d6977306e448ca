"""Pointwise non-linearities: ReLU (SRCNN, VDSR), PReLU (FSRCNN, SRResNet), LeakyReLU (SRGAN's
discriminator), sigmoid and tanh.  Each derivative is written in terms of what forward already had.

On the CPU, float32 arrays go through the fused one-pass Numba kernels of ``tinysr_kernels.cpu``
(:func:`_fast`); the NumPy lines below are their twins, used for float64 (gradient checks), on the GPU,
and whenever ``set_conv_impl("numpy")`` / ``TINYSR_KERNELS=numpy`` asks for the teaching version.
"""
import numpy as np

from .. import backend
from ..autograd import Function
from .dispatch import cpu_kernels


def _fast(*arrays):
    """The CPU kernel module when every array is a float32 NumPy array and the kernels are on."""
    if all(type(a) is np.ndarray and a.dtype == np.float32 for a in arrays):
        return cpu_kernels()
    return None


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def relu_(y):
    """``max(y, 0)`` written into ``y`` (any shape) and returned: for an op's own fresh output, such as a
    convolution's whose ReLU is part of the op."""
    k = _fast(y)
    if k is not None and y.flags.c_contiguous:
        k.pointwise.relu_forward(y.reshape(-1), y.reshape(-1))
        return y
    return backend.get_array_module(y).maximum(y, 0, out=y)


def relu_grad(y, gy):
    """The gradient through a ReLU whose output is ``y``: ``gy`` where ``y > 0``, else 0 (same shape)."""
    k = _fast(y, gy)
    if k is not None:
        gx = k.memory.empty(gy.shape, gy.dtype)
        k.pointwise.relu_backward(_flat(y), _flat(gy), gx.reshape(-1))
        return gx
    return gy * (y > 0)


class ReLU(Function):
    """max(x, 0) (Nair & Hinton, 2010); its gradient passes where the input was positive."""

    def forward(self, x):
        k = _fast(x)
        if k is not None:
            # Keep the output, not a mask: it is alive anyway as the next layer's input, and
            # y > 0 exactly where x > 0.
            self.y = k.memory.empty(x.shape, x.dtype)
            k.pointwise.relu_forward(_flat(x), self.y.reshape(-1))
            return self.y
        self.mask = x > 0
        return x * self.mask

    def backward(self, gy):
        if hasattr(self, "y"):
            return relu_grad(self.y, gy)
        return gy * self.mask


class LeakyReLU(Function):
    """x for x > 0, ``slope * x`` otherwise (Maas et al., 2013; slope 0.2 in SRGAN's discriminator)."""

    def __init__(self, slope=0.01):
        self.slope = slope

    def forward(self, x):
        k = _fast(x)
        if k is not None:
            self.x = _flat(x)
            y = k.memory.empty(x.shape, x.dtype)
            k.pointwise.leaky_forward(self.x, np.float32(self.slope), y.reshape(-1))
            return y
        self.mask = x > 0
        return x * (self.mask + (~self.mask) * x.dtype.type(self.slope))

    def backward(self, gy):
        if hasattr(self, "x"):
            k = _fast(gy)
            if k is not None:
                gx = k.memory.empty(gy.shape, gy.dtype)
                k.pointwise.leaky_backward(self.x, _flat(gy), np.float32(self.slope), gx.reshape(-1))
                return gx
            self.mask = self.x.reshape(gy.shape) > 0
        return gy * (self.mask + (~self.mask) * gy.dtype.type(self.slope))


class PReLU(Function):
    """Parametric ReLU (He et al., ICCV 2015): x for x > 0, ``a * x`` otherwise, with ``a`` learned.

    ``a`` has shape (1,) -- one slope shared by all channels, as in the FSRCNN authors' weights -- or
    (C,), one per channel.  The slope's gradient sums ``gy * x`` over the negative inputs.
    """

    def forward(self, x, a):
        if a.ndim != 1 or a.shape[0] not in (1, x.shape[1] if x.ndim > 1 else 1):
            raise ValueError(f"prelu: the slope must have shape (1,) or (C,) = ({x.shape[1]},), got {a.shape}")
        self.a_shape = a.shape
        k = _fast(x, a) if x.ndim > 1 else None
        if k is not None:
            self.fast = k
            x3 = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
            self.save_for_backward(x3, np.ascontiguousarray(a))
            y = k.memory.empty(x.shape, x.dtype)
            k.pointwise.prelu_forward(x3, self.saved[1], y.reshape(x3.shape))
            return y
        shape = (1, -1) + (1,) * (x.ndim - 2) if x.ndim > 1 else (-1,)
        self.ab = a.reshape(shape)
        self.neg = x <= 0
        self.save_for_backward(x)
        return x + self.neg * (self.ab - 1) * x

    def backward(self, gy):
        if getattr(self, "fast", None) is not None and gy.dtype == np.float32:
            x3, a = self.saved
            gx = self.fast.memory.empty(gy.shape, gy.dtype)
            ga_nc = np.empty(x3.shape[:2], dtype=np.float32)
            self.fast.pointwise.prelu_backward(x3, a, np.ascontiguousarray(gy).reshape(x3.shape),
                                               gx.reshape(x3.shape), ga_nc)
            ga = ga_nc.sum(dtype=np.float64) if self.a_shape[0] == 1 else ga_nc.sum(axis=0, dtype=np.float64)
            return gx, np.asarray(ga, dtype=np.float32).reshape(self.a_shape)
        (x,) = self.saved
        gx = gy * (1 + self.neg * (self.ab - 1))
        ga_map = gy * x * self.neg
        if self.a_shape[0] == 1:
            ga = ga_map.sum().reshape(1)
        else:
            axes = (0,) + tuple(range(2, x.ndim))
            ga = ga_map.sum(axis=axes)
        return gx, ga.astype(x.dtype)


class Sigmoid(Function):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        # exp of a non-positive number never overflows
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class Tanh(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.y = xp.tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


def relu(x):
    """Rectified linear unit, elementwise; any shape."""
    return ReLU()(x)


def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU, elementwise; any shape."""
    return LeakyReLU(negative_slope)(x)


def prelu(x, weight):
    """Parametric ReLU of ``x`` (N, C, ...) with slopes ``weight`` of shape (1,) or (C,)."""
    return PReLU()(x, weight)


def sigmoid(x):
    """Logistic sigmoid, elementwise."""
    return Sigmoid()(x)


def tanh(x):
    """Hyperbolic tangent, elementwise."""
    return Tanh()(x)
