"""Stride-1 convolution without a column matrix: a sum of GEMMs on shifted views of the padded image.

im2col copies every input pixel kh*kw times into a column matrix (VDSR: 576 rows) that is far larger
than the cache, and the GEMM then reads it back.  For stride 1 there is a way around it.  Pad one image
into planes of width ``Wp = W + 2*pw`` and look at the output on a *wide* grid of ``OH`` rows of ``Wp``
pixels (the last ``kw - 1`` of each row are junk and are dropped).  Output pixel ``q = r*Wp + s`` of
that grid reads, through tap (u, v), padded pixel ``q + u*Wp + v``: every tap reads the same matrix,
shifted by a constant.  So::

    Y_wide (O, OH*Wp) = sum over taps (u, v) of  W[:, :, u, v] (O, C)  @  Xpad[:, u*Wp+v : u*Wp+v + OH*Wp] (C, OH*Wp)

and each term is an ordinary GEMM on a *view* of the padded image: its rows are one plane apart,
which BLAS reads through its leading dimension.  No column matrix is built; the extra work is a junk
fraction ``(kw-1)/Wp`` of the columns and one addition per tap, done in cache (the output is computed
in blocks of rows, see :data:`block_pixels`).  This is the idea behind "implicit GEMM" convolution in cuDNN and
oneDNN, here with plain OpenBLAS calls.

The gradients are the same trick: the input gradient is the stride-1 convolution of the output
gradient with the flipped, transposed kernel (padding ``k-1-p``), and the weight gradient of tap
(u, v) is ``gY_wide (O, OH*Wp) @ Xpad[:, u*Wp+v : ...]^T`` -- with ``gY`` widened by zeros in the junk
columns so that they contribute nothing.

Measured on the 2-core machine, one thread, VDSR's 64->64 3x3 layer on 16 41x41 patches: forward 33 ms
(im2col + GEMM: 43-46 ms), both gradients 59 ms (88 ms); OpenBLAS reaches 58-74 GFLOP/s on one core for
these shapes, so the shifted GEMMs run close to the GEMM's own speed.

Work is split over threads by image (each thread pads its images one at a time into a small buffer)
or, for fewer images than threads, by block of rows of a batch padded once (see ``_Padded``); each
thread runs single-threaded OpenBLAS GEMMs and its own small buffers.  Only float32 arrays reach this module (see ``NumbaConvImpl``).
"""
import numpy as np
from numba import njit, prange

from . import threads

# A block of output rows is at most this many wide-grid pixels (whole rows, at least one), so that the
# kh*kw partial products and their sum -- (O, block) each, 1 MB for 64 channels -- stay in cache while
# each GEMM still gets enough columns.  Measured on the 2-core machine, one thread, inference of a
# 128x128 EDSR-baseline input and a 256x256 VDSR input: 0.89 / 1.67 s at 4096 pixels, 0.94-1.0 /
# 2.1-2.2 s at 1024-2048, 1.08 / 1.69 s at 8192.  Training patches (41x41, 48x48) are one block anyway.
block_pixels = 4096
# Below this many input channels, one tap's GEMM (inner dimension C) is too thin for BLAS and
# im2col's single GEMM with inner dimension C*kh*kw is faster.
min_channels = 32


def usable(w_shape, stride, padding):
    """Whether a convolution with this kernel takes the shifted-GEMM path: stride 1, a kernel larger
    than 1x1, padding below the kernel size, and at least ``min_channels`` input and output channels
    (the forward GEMMs' inner dimension is C, the input gradient's is O)."""
    o, c, kh, kw = w_shape
    return (tuple(stride) == (1, 1) and kh * kw > 1 and min(c, o) >= min_channels
            and padding[0] <= kh - 1 and padding[1] <= kw - 1)


@njit(parallel=True, cache=True)
def _pad_planes(x, ph, pw, tail, out):
    """``out[n, c]`` = plane (c) of image n, zero-padded by (ph, pw), flattened, plus ``tail`` zeros."""
    n_img, c_in, h, w = x.shape
    wp = w + 2 * pw
    for t in prange(n_img * c_in):
        n = t // c_in
        c = t - n * c_in
        dst = out[n, c]
        dst[:ph * wp] = 0
        for r in range(h):
            row = (r + ph) * wp
            dst[row:row + pw] = 0
            dst[row + pw:row + pw + w] = x[n, c, r]
            dst[row + pw + w:row + wp] = 0
        dst[(h + ph) * wp:] = 0


@njit(nogil=True, cache=True)
def _crop_rows(acc, wp, r0, r1, ow, bias, has_bias, y_n):
    """``y_n[o, r0:r1, :]`` = the valid columns of the wide rows in ``acc`` (O, (r1-r0)*wp), plus bias."""
    for o in range(y_n.shape[0]):
        b = bias[o] if has_bias else np.float32(0)
        for r in range(r1 - r0):
            src = acc[o, r * wp:r * wp + ow]
            dst = y_n[o, r0 + r]
            for s in range(ow):
                dst[s] = src[s] + b


@njit(nogil=True, cache=True)
def _widen_rows(g_n, r0, r1, wp, out):
    """``out`` (O, (r1-r0)*wp) = rows r0..r1 of ``g_n`` (O, OH, OW) on the wide grid, junk columns zero."""
    ow = g_n.shape[2]
    for o in range(g_n.shape[0]):
        for r in range(r1 - r0):
            dst = out[o, r * wp:(r + 1) * wp]
            dst[:ow] = g_n[o, r0 + r]
            dst[ow:] = 0


@njit(nogil=True, cache=True)
def _pad_image(x, n, ph, pw, out):
    """``out[c]`` = plane (c) of image n, zero-padded by (ph, pw) and flattened, then zeros to the end."""
    h, w = x.shape[2], x.shape[3]
    wp = w + 2 * pw
    for c in range(x.shape[1]):
        dst = out[c]
        dst[:ph * wp] = 0
        for r in range(h):
            row = (r + ph) * wp
            dst[row:row + pw] = 0
            dst[row + pw:row + pw + w] = x[n, c, r]
            dst[row + pw + w:row + wp] = 0
        dst[(h + ph) * wp:] = 0


class _Padded:
    """The padded planes of a batch, as each thread sees them, and how the work is split.

    With at least as many images as threads, every thread takes whole images and pads each into its own
    small buffer (one image, in cache) -- no padded copy of the whole batch.  With fewer (one large
    image at inference), the batch is padded once and the threads share out blocks of rows.
    """

    def __init__(self, x, padding, kw, wp, oh):
        n, c, h, _ = x.shape
        self.x, self.ph, self.pw = x, padding[0], padding[1]
        self.plane = (h + 2 * self.ph) * wp + kw - 1
        rows = max(1, block_pixels // wp)
        spans = [(r0, min(oh, r0 + rows)) for r0 in range(0, oh, rows)]
        t = threads.get_num_threads()
        if n >= t:
            self.whole = None
            self.parts = [[(i, r0, r1) for i in range(k, n, t) for r0, r1 in spans] for k in range(t)]
        else:
            self.whole = np.empty((n, c, self.plane), dtype=np.float32)
            _pad_planes(x, self.ph, self.pw, kw - 1, self.whole)
            blocks = [(i, r0, r1) for i in range(n) for r0, r1 in spans]
            t = min(t, len(blocks))
            self.parts = [blocks[k::t] for k in range(t)]

    def reader(self):
        """A function ``image(i)`` -> (C, plane) padded planes of image i, for one thread."""
        if self.whole is not None:
            return lambda i: self.whole[i]
        own = np.empty((self.x.shape[1], self.plane), dtype=np.float32)
        last = [-1]

        def image(i):
            if last[0] != i:
                _pad_image(self.x, i, self.ph, self.pw, own)
                last[0] = i
            return own
        return image


def _geometry(x_shape, w_shape, padding):
    n, c, h, w = x_shape
    o, _, kh, kw = w_shape
    ph, pw = padding
    hp, wp = h + 2 * ph, w + 2 * pw
    return n, c, o, kh, kw, hp - kh + 1, wp - kw + 1, hp, wp


def forward(x, w, padding, bias=None):
    """y (N, O, OH, OW) = conv2d(x (N, C, H, W), w (O, C, kh, kw), stride 1, ``padding``) + bias."""
    n, c, o, kh, kw, oh, ow, hp, wp = _geometry(x.shape, w.shape, padding)
    padded = _Padded(x, padding, kw, wp, oh)
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1))       # (kh, kw, O, C): one (O, C) matrix per tap
    has_bias = bias is not None
    b = np.ascontiguousarray(bias) if has_bias else np.zeros(1, np.float32)
    y = np.empty((n, o, oh, ow), dtype=np.float32)

    def work(items):
        image = padded.reader()
        acc = np.empty((o, block_pixels + wp), dtype=np.float32)
        part = np.empty_like(acc)
        for i, r0, r1 in items:
            xp = image(i)
            length = (r1 - r0) * wp
            a, p = acc[:, :length], part[:, :length]
            first = True
            for u in range(kh):
                for v in range(kw):
                    start = (r0 + u) * wp + v
                    view = xp[:, start:start + length]
                    if first:
                        np.matmul(taps[u, v], view, out=a)
                        first = False
                    else:
                        np.matmul(taps[u, v], view, out=p)
                        np.add(a, p, out=a)
            _crop_rows(a, wp, r0, r1, ow, b, has_bias, y[i])

    threads.run_parallel(work, padded.parts)
    return y


def backward_data(gy, w, padding):
    """gx (N, C, H, W): the stride-1 convolution of ``gy`` with the flipped, transposed kernel."""
    kh, kw = w.shape[2], w.shape[3]
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, O, kh, kw)
    return forward(gy, flipped, (kh - 1 - padding[0], kw - 1 - padding[1]))


def backward_weight(x, gy, w_shape, padding):
    """gw (O, C, kh, kw) = sum over images and wide pixels of gY_wide @ (shifted padded x)^T, per tap."""
    n, c, o, kh, kw, oh, ow, hp, wp = _geometry(x.shape, w_shape, padding)
    padded = _Padded(x, padding, kw, wp, oh)
    sums = [np.zeros((kh, kw, o, c), dtype=np.float32) for _ in padded.parts]

    def work(k):
        image = padded.reader()
        g = np.empty((o, block_pixels + wp), dtype=np.float32)
        prod = np.empty((o, c), dtype=np.float32)
        total = sums[k]
        for i, r0, r1 in padded.parts[k]:
            xp = image(i)
            length = (r1 - r0) * wp
            gw_ = g[:, :length]
            _widen_rows(gy[i], r0, r1, wp, gw_)
            for u in range(kh):
                for v in range(kw):
                    start = (r0 + u) * wp + v
                    np.matmul(gw_, xp[:, start:start + length].T, out=prod)
                    np.add(total[u, v], prod, out=total[u, v])

    threads.run_parallel(work, list(range(len(padded.parts))))
    total = sums[0]
    for s in sums[1:]:
        total += s
    return np.ascontiguousarray(total.transpose(2, 3, 0, 1))
