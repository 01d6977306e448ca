"""Ops that move values without arithmetic: pixel shuffle (ESPCN/SRResNet/EDSR upsampling), channel
concatenation (SRDenseNet's dense connections), padding (zero, replicate, reflect) and flatten.
"""
import itertools

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from .conv import cpu_kernels


def _fast(x):
    """The CPU kernel module for float32 NumPy arrays when the kernels are on, else None."""
    if type(x) is np.ndarray and x.dtype == np.float32:
        return cpu_kernels()
    return None


class PixelShuffle(Function):
    """Rearrange (N, C*r*r, H, W) into (N, C, H*r, W*r) (Shi et al., ESPCN, CVPR 2016).

    Channel ``c*r*r + i*r + j`` becomes the sub-pixel (i, j) of output channel ``c`` -- PyTorch's
    order, so that weights and tests line up with it.  Its backward is the inverse rearrangement
    ("pixel unshuffle").
    """

    def __init__(self, r):
        self.r = int(r)

    def forward(self, x):
        n, c, h, w = x.shape
        r = self.r
        if c % (r * r):
            raise ValueError(f"pixel_shuffle with factor {r} needs channels divisible by {r * r}, got {c}")
        k = _fast(x)
        if k is not None:  # one parallel copy instead of NumPy's reshape-transpose-copy
            return k.pixel_shuffle(x, r)
        y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
        return y.reshape(n, c // (r * r), h * r, w * r)

    def backward(self, gy):
        k = _fast(gy)
        if k is not None:
            return k.pixel_unshuffle_array(gy, self.r)
        return pixel_unshuffle_array(gy, self.r)


def pixel_unshuffle_array(y, r):
    """The inverse of pixel shuffle on a plain array: (N, C, H*r, W*r) -> (N, C*r*r, H, W)."""
    n, c, hr, wr = y.shape
    h, w = hr // r, wr // r
    x = y.reshape(n, c, h, r, w, r).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * r * r, h, w)


class Concat(Function):
    """Join tensors along ``axis``; the gradient is split back into the pieces."""

    def __init__(self, axis=1):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.get_array_module(xs[0])
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        cuts = list(itertools.accumulate(self.sizes))[:-1]
        return tuple(xp.split(gy, cuts, axis=self.axis))


def _pad_index(n, before, after, mode):
    """For each output position along an axis of length ``n`` padded by (before, after): the source
    index, or -1 where a zero is written."""
    idx = []
    for k in range(-before, n + after):
        if 0 <= k < n:
            idx.append(k)
        elif mode == "constant":
            idx.append(-1)
        elif mode == "replicate":
            idx.append(min(max(k, 0), n - 1))
        else:  # reflect: mirror about the edge pixel, which is not repeated
            if before >= n or after >= n:
                raise ValueError(f"reflect padding of {max(before, after)} needs a dimension larger than that, got {n}")
            idx.append(-k if k < 0 else 2 * (n - 1) - k)
    return idx


class Pad(Function):
    """Pad the last two axes by (left, right, top, bottom) -- PyTorch's order.

    Modes: ``"constant"`` (zeros), ``"replicate"`` (repeat the edge pixel; the SRCNN and FSRCNN
    authors' MATLAB test code pads this way) and ``"reflect"`` (mirror without repeating the edge).
    In backward, each padded position's gradient is added to the pixel it copied.
    """

    MODES = ("constant", "replicate", "reflect")

    def __init__(self, pad, mode="constant"):
        if mode == "zeros":
            mode = "constant"
        if mode not in self.MODES:
            raise ValueError(f"unknown pad mode {mode!r}; choose one of {self.MODES}")
        if isinstance(pad, int):
            pad = (pad,) * 4
        if len(pad) != 4 or min(pad) < 0:
            raise ValueError(f"pad is an int or (left, right, top, bottom) of non-negative ints, got {pad!r}")
        self.pad, self.mode = tuple(int(p) for p in pad), mode

    def forward(self, x):
        xp = backend.get_array_module(x)
        left, right, top, bottom = self.pad
        self.in_shape = x.shape
        widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
        np_mode = {"constant": "constant", "replicate": "edge", "reflect": "reflect"}[self.mode]
        if self.mode == "reflect":
            _pad_index(x.shape[-2], top, bottom, "reflect")
            _pad_index(x.shape[-1], left, right, "reflect")
        return xp.pad(x, widths, mode=np_mode)

    def backward(self, gy):
        left, right, top, bottom = self.pad
        h, w = self.in_shape[-2:]
        g = _fold_axis(gy, _pad_index(w, left, right, self.mode), w, left, axis=-1)
        return _fold_axis(g, _pad_index(h, top, bottom, self.mode), h, top, axis=-2)


def _fold_axis(g, idx, n, before, axis):
    """Sum the gradient of a padded axis back onto its ``n`` source positions."""
    sl = [slice(None)] * g.ndim
    sl[axis] = slice(before, before + n)
    out = g[tuple(sl)].copy()
    # Only the few padded positions need a Python loop (pad widths are small, never per pixel).
    for k, src in enumerate(idx):
        if before <= k < before + n or src < 0:
            continue
        a, b = [slice(None)] * g.ndim, [slice(None)] * g.ndim
        a[axis], b[axis] = src, k
        out[tuple(a)] += g[tuple(b)]
    return out


def pixel_shuffle(x, upscale_factor):
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r) in PyTorch's channel order (ESPCN sub-pixel convolution)."""
    return PixelShuffle(upscale_factor)(x)


def concat(tensors, axis=1):
    """Concatenate a sequence of tensors along ``axis`` (default: channels)."""
    return Concat(axis)(*tensors)


def pad(x, pad, mode="constant"):
    """Pad the last two axes of ``x`` by ``pad`` = int or (left, right, top, bottom); see :class:`Pad`."""
    return Pad(pad, mode)(x)


def flatten(x, start_dim=1):
    """Merge all axes from ``start_dim`` on: (N, C, H, W) -> (N, C*H*W) (before SRGAN's dense layers)."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    return x.reshape(x.shape[:start_dim] + (-1,))
