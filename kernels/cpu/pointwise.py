"""Elementwise kernels: activations, the bias gradient and pixel shuffle, each in one parallel pass.

NumPy twins live in :mod:`tinysr.functional.activation` and :mod:`tinysr.functional.shape`.  NumPy
spends several passes (and temporary arrays) on what these do in one: ``x * (x > 0)`` makes a bool
mask, then a product; a PReLU makes four temporaries.  The arrays are seen as (N, C, P) -- channel in
the middle so per-channel slopes and biases are loop constants -- and every inner loop is contiguous.
"""
import numpy as np
from numba import njit, prange

from . import memory


@njit(parallel=True, fastmath=True, cache=True)
def relu_forward(x, y):
    """y = max(x, 0) over flat contiguous arrays."""
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else 0.0


@njit(parallel=True, fastmath=True, cache=True)
def relu_backward(y, gy, gx):
    """gx = gy where the ReLU's output y > 0 (equivalently its input was > 0), else 0."""
    for i in prange(y.size):
        gx[i] = gy[i] if y[i] > 0 else 0.0


@njit(parallel=True, fastmath=True, cache=True)
def leaky_forward(x, slope, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else v * slope


@njit(parallel=True, fastmath=True, cache=True)
def leaky_backward(x, gy, slope, gx):
    for i in prange(x.size):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * slope


@njit(parallel=True, fastmath=True, cache=True)
def prelu_forward(x, a, y):
    """x, y (N, C, P); a (C,) or (1,): y = x if x > 0 else a[c] * x."""
    n_b, c_in, p = x.shape
    shared = a.shape[0] == 1
    for t in prange(n_b * c_in):
        n = t // c_in
        c = t - n * c_in
        s = a[0] if shared else a[c]
        for k in range(p):
            v = x[n, c, k]
            y[n, c, k] = v if v > 0 else v * s
    return y


@njit(parallel=True, fastmath=True, cache=True)
def prelu_backward(x, a, gy, gx, ga_nc):
    """gx = gy * slope; ``ga_nc`` (N, C) receives each plane's sum of gy * x over negative x."""
    n_b, c_in, p = x.shape
    shared = a.shape[0] == 1
    for t in prange(n_b * c_in):
        n = t // c_in
        c = t - n * c_in
        s = a[0] if shared else a[c]
        acc = 0.0
        for k in range(p):
            v = x[n, c, k]
            g = gy[n, c, k]
            if v > 0:
                gx[n, c, k] = g
            else:
                gx[n, c, k] = g * s
                acc += g * v
        ga_nc[n, c] = acc


@njit(parallel=True, fastmath=True, cache=True)
def plane_sums(g, out_nc):
    """out_nc[n, c] = sum of g[n, c, :] for g (N, C, P) -- the bias gradient before the sum over n."""
    n_b, c_in, p = g.shape
    for t in prange(n_b * c_in):
        n = t // c_in
        c = t - n * c_in
        acc = 0.0
        for k in range(p):
            acc += g[n, c, k]
        out_nc[n, c] = acc


def bias_grad(gy):
    """Gradient of a per-channel bias: ``gy`` (N, C, H, W) summed over N, H, W -> (C,).

    Partial sums per (sample, channel) are accumulated in float64 before the final sum, so the result
    is at least as accurate as NumPy's pairwise ``gy.sum(axis=(0, 2, 3))``.
    """
    n, c = gy.shape[:2]
    g = np.ascontiguousarray(gy).reshape(n, c, -1)
    part = np.empty((n, c), dtype=np.float64)
    plane_sums(g, part)
    return part.sum(axis=0).astype(gy.dtype)


@njit(parallel=True, cache=True)
def pixel_shuffle_forward(x, r, y):
    """x (N, C*r*r, H, W) -> y (N, C, H*r, W*r): channel c*r*r + a*r + b is sub-pixel (a, b) of c."""
    n_b, crr, h, w = x.shape
    c_out = crr // (r * r)
    for t in prange(n_b * c_out * h):
        n = t // (c_out * h)
        c = (t // h) % c_out
        i = t % h
        for a in range(r):
            for b in range(r):
                src = (c * r + a) * r + b
                for j in range(w):
                    y[n, c, i * r + a, j * r + b] = x[n, src, i, j]


@njit(parallel=True, cache=True)
def pixel_unshuffle(y, r, x):
    """The inverse (and the backward) of :func:`pixel_shuffle_forward`."""
    n_b, crr, h, w = x.shape
    c_out = crr // (r * r)
    for t in prange(n_b * c_out * h):
        n = t // (c_out * h)
        c = (t // h) % c_out
        i = t % h
        for a in range(r):
            for b in range(r):
                dst = (c * r + a) * r + b
                for j in range(w):
                    x[n, dst, i, j] = y[n, c, i * r + a, j * r + b]


def pixel_shuffle(x, r):
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r) in PyTorch's channel order; any strides in, contiguous out."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    y = memory.empty((n, c // (r * r), h * r, w * r), x.dtype)
    pixel_shuffle_forward(x, r, y)
    return y


def pixel_unshuffle_array(y, r):
    """(N, C, H*r, W*r) -> (N, C*r*r, H, W); contiguous out."""
    y = np.ascontiguousarray(y)
    n, c, hr, wr = y.shape
    x = memory.empty((n, c * r * r, hr // r, wr // r), y.dtype)
    pixel_unshuffle(y, r, x)
    return x
