"""Pixel shuffle (sub-pixel upsampling, ESPCN/SRResNet/EDSR) and its inverse as CUDA kernels.

NumPy twins: :class:`tinysr.functional.shape.PixelShuffle` and ``pixel_unshuffle_array``.  Channel
``c*r*r + i*r + j`` of the input becomes sub-pixel (i, j) of output channel ``c`` (PyTorch's order).

In NumPy this is a reshape, a 6-axis transpose and a copy.  On the GPU the copy is the whole cost,
and its speed depends only on whether neighbouring threads touch neighbouring addresses.  Each
kernel gives one thread per element of the array it *writes*, in memory order, so the writes are
perfectly coalesced; the reads are strided by ``r`` (shuffle) or come in runs of ``r`` (inverse),
which the L1/L2 caches absorb.
"""
from numba import cuda

from . import _runtime as rt


@cuda.jit
def _shuffle_kernel(x, y, n_img, c_out, h, w, r):
    # y is (N, C, H*r, W*r); x is (N, C*r*r, H, W).
    hr, wr = h * r, w * r
    total = n_img * c_out * hr * wr
    start, step = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, total, step):
        ox = t % wr
        oy = (t // wr) % hr
        c = (t // (wr * hr)) % c_out
        n = t // (wr * hr * c_out)
        cin = (c * r + oy % r) * r + ox % r
        y[t] = x[((n * c_out * r * r + cin) * h + oy // r) * w + ox // r]


@cuda.jit
def _unshuffle_kernel(y, x, n_img, c_out, h, w, r):
    # x is (N, C*r*r, H, W); y is (N, C, H*r, W*r).
    rr = r * r
    total = n_img * c_out * rr * h * w
    start, step = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, total, step):
        xw = t % w
        xh = (t // w) % h
        cin = (t // (w * h)) % (c_out * rr)
        n = t // (w * h * c_out * rr)
        c = cin // rr
        i = (cin // r) % r
        j = cin % r
        x[t] = y[((n * c_out + c) * h * r + xh * r + i) * w * r + xw * r + j]


def pixel_shuffle(x, r):
    """(N, C*r*r, H, W) -> (N, C, H*r, W*r) on the GPU, PyTorch's channel order.

    Launch: 1-D grid-stride loop, one thread per output element.
    """
    x = rt.contiguous(x)
    dtype = rt.check_float(x)
    n, crr, h, w = x.shape
    r = int(r)
    if crr % (r * r):
        raise ValueError(f"pixel_shuffle with factor {r} needs channels divisible by {r * r}, got {crr}")
    c = crr // (r * r)
    y = rt.empty((n, c, h * r, w * r), dtype, like=x)
    blocks, threads = rt.grid_1d(y.size)
    _shuffle_kernel[blocks, threads, rt.stream_for(x)](rt.kernel_arg(rt.flat(x)), rt.kernel_arg(rt.flat(y)),
                                                       n, c, h, w, r)
    return y


def pixel_unshuffle(y, r):
    """(N, C, H*r, W*r) -> (N, C*r*r, H, W): the inverse of :func:`pixel_shuffle` and its gradient.

    Launch: 1-D grid-stride loop, one thread per output element.
    """
    y = rt.contiguous(y)
    dtype = rt.check_float(y)
    n, c, hr, wr = y.shape
    r = int(r)
    if hr % r or wr % r:
        raise ValueError(f"pixel_unshuffle with factor {r} needs height and width divisible by {r}, got {hr}x{wr}")
    h, w = hr // r, wr // r
    x = rt.empty((n, c * r * r, h, w), dtype, like=y)
    blocks, threads = rt.grid_1d(x.size)
    _unshuffle_kernel[blocks, threads, rt.stream_for(y)](rt.kernel_arg(rt.flat(y)), rt.kernel_arg(rt.flat(x)),
                                                         n, c, h, w, r)
    return x
