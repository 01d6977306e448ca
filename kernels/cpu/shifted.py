"""Stride-1 convolution with the column matrix built block by block in cache, from shifted views.

im2col copies every input pixel kh*kw times into a column matrix (VDSR: 576 rows by batch x pixels)
that is far larger than the cache, and the GEMM then reads it back from memory.  For stride 1 there
is a better way.  Pad one image into planes of width ``Wp = W + 2*pw`` and compute the output on a
*wide* grid of ``OH`` rows of ``Wp`` pixels (the last ``kw - 1`` of each row are junk and are
dropped).  Output pixel ``q = r*Wp + s`` of that grid reads, through tap (u, v), padded pixel
``q + u*Wp + v``: for every tap the input is the *same* flattened plane, shifted by a constant.  So
row (c, u, v) of the column matrix of a block of output rows r0..r1 is one contiguous slice of the
padded plane::

    cols[(c, u, v), :] = Xpad[c, (r0+u)*Wp + v : (r0+u)*Wp + v + (r1-r0)*Wp]

-- a memcpy, no index arithmetic.  Each block's columns are built in a small buffer that stays in
cache (:data:`cols_budget`), multiplied at once (``W (O, C*kh*kw) @ cols``, one GEMM with the full
inner dimension), and the valid columns of the result are copied into the output with the bias.  The
only extra work is the junk fraction ``(kw-1)/Wp`` of the columns.

Why build the columns at all: the "implicit GEMM" idea of cuDNN and oneDNN skips them -- ``Y = sum
over taps of W[:, :, u, v] @ (shifted view)``, kh*kw GEMMs with inner dimension C.  With plain OpenBLAS
calls those thin GEMMs (inner dimension 64) run below the speed of one GEMM with inner dimension 576,
by more than the copies into a cached block cost: 11-15% per layer for EDSR's and VDSR's 64->64 layers
(the numbers are in ``benchmarks/README.md``, "Measurements behind the kernel design").  The same
blocks also serve a layer with one input channel (SRCNN's 9x9 first layer), faster than the batched
im2col.

The gradients use the same blocks: the input gradient is the stride-1 convolution of the output
gradient with the flipped, transposed kernel (padding ``k-1-p``), and the weight gradient is the sum
over blocks of ``gY_wide (O, block) @ cols^T (block, C*kh*kw)``, with ``gY`` widened by zeros in the
junk columns so that they contribute nothing.

Work is split over threads by image (each thread pads its images one at a time into a small buffer)
or, for fewer images than threads, by block of rows of a batch padded once (see ``_Padded``); each
thread runs single-threaded OpenBLAS GEMMs and its own small buffers.  Only float32 arrays reach this
module (see ``NumbaConvImpl``).
"""
import numpy as np
from numba import njit, prange

from . import memory, threads

# Bytes of one block's column matrix: it, the (O, block) result and the padded image stay in cache while
# the GEMM still gets hundreds to thousands of columns: 2 MB is the fastest of 0.5 / 1 / 2 / 4 MB for
# EDSR's, VDSR's and SRCNN's layers on one thread (benchmarks/README.md).
cols_budget = 2 << 20
# Images smaller than this many wide-grid pixels (small training patches) go through the batched im2col
# of NumbaConvImpl instead, whose GEMMs span many images: per-image blocks would be too small for BLAS.
min_wide_pixels = 1024


def usable(x_shape, w_shape, stride, padding):
    """Whether a convolution of these shapes takes this path: stride 1, a kernel larger than 1x1,
    padding below the kernel size, and images of at least :data:`min_wide_pixels` wide-grid pixels."""
    h, w = x_shape[2], x_shape[3]
    kh, kw = w_shape[2], w_shape[3]
    ph, pw = padding
    if tuple(stride) != (1, 1) or kh * kw == 1 or ph > kh - 1 or pw > kw - 1:
        return False
    oh = h + 2 * ph - kh + 1
    return oh > 0 and w + 2 * pw - kw + 1 > 0 and oh * (w + 2 * pw) >= min_wide_pixels


@njit(nogil=True, cache=True)
def _pad_plane(src, ph, pw, dst):
    """``dst`` (flat) = the 2-D plane ``src`` zero-padded by (ph, pw), row after row, then zeros to its end."""
    h, w = src.shape
    wp = w + 2 * pw
    dst[:ph * wp] = 0
    for r in range(h):
        row = (r + ph) * wp
        dst[row:row + pw] = 0
        dst[row + pw:row + pw + w] = src[r]
        dst[row + pw + w:row + wp] = 0
    dst[(h + ph) * wp:] = 0


@njit(parallel=True, cache=True)
def _pad_planes(x, ph, pw, out):
    """``out[n, c]`` = plane (c) of image n, padded (see :func:`_pad_plane`), for the whole batch."""
    n_img, c_in = x.shape[0], x.shape[1]
    for t in prange(n_img * c_in):
        n = t // c_in
        _pad_plane(x[n, t - n * c_in], ph, pw, out[n, t - n * c_in])


@njit(nogil=True, cache=True)
def _pad_image(x, n, ph, pw, out):
    """``out[c]`` = plane (c) of image n, padded (see :func:`_pad_plane`)."""
    for c in range(x.shape[1]):
        _pad_plane(x[n, c], ph, pw, out[c])


@njit(nogil=True, cache=True)
def _block_columns(xp, wp, kh, kw, r0, length, cols):
    """``cols[(c, u, v), :length]`` = the padded plane ``xp[c]`` from ``(r0+u)*wp + v`` on: a block's columns."""
    k = 0
    for c in range(xp.shape[0]):
        src = xp[c]
        for u in range(kh):
            for v in range(kw):
                start = (r0 + u) * wp + v
                cols[k, :length] = src[start:start + length]
                k += 1


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


class _Padded:
    """The padded planes of a batch, as each thread sees them, and how the work is split.

    With at least as many images as threads, every thread takes whole images and pads each into its own
    small buffer (one image, in cache) -- no padded copy of the whole batch.  With fewer (one large
    image at inference), the batch is padded once and the threads share out blocks of rows.
    """

    def __init__(self, x, padding, kh, kw, wp, oh):
        n, c, h, _ = x.shape
        self.x, self.ph, self.pw = x, padding[0], padding[1]
        self.plane = (h + 2 * self.ph) * wp + kw - 1
        rows = max(1, min(oh, cols_budget // (4 * c * kh * kw * wp)))
        self.block = rows * wp
        spans = [(r0, min(oh, r0 + rows)) for r0 in range(0, oh, rows)]
        t = threads.get_num_threads()
        if n >= t:
            self.whole = None
            self.parts = [[(i, r0, r1) for i in range(k, n, t) for r0, r1 in spans] for k in range(t)]
        else:
            self.whole = np.empty((n, c, self.plane), dtype=np.float32)
            _pad_planes(x, self.ph, self.pw, self.whole)
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
    wp = w + 2 * pw
    return n, c, o, kh, kw, h + 2 * ph - kh + 1, wp - kw + 1, wp


def forward(x, w, padding, bias=None):
    """y (N, O, OH, OW) = conv2d(x (N, C, H, W), w (O, C, kh, kw), stride 1, ``padding``) + bias."""
    n, c, o, kh, kw, oh, ow, wp = _geometry(x.shape, w.shape, padding)
    padded = _Padded(x, padding, kh, kw, wp, oh)
    w2 = w.reshape(o, c * kh * kw)
    has_bias = bias is not None
    b = np.ascontiguousarray(bias) if has_bias else np.zeros(1, np.float32)
    y = memory.empty((n, o, oh, ow))

    def work(items):
        image = padded.reader()
        cols = np.empty((c * kh * kw, padded.block), dtype=np.float32)
        acc = np.empty((o, padded.block), dtype=np.float32)
        for i, r0, r1 in items:
            length = (r1 - r0) * wp
            _block_columns(image(i), wp, kh, kw, r0, length, cols)
            np.matmul(w2, cols[:, :length], out=acc[:, :length])
            _crop_rows(acc[:, :length], wp, r0, r1, ow, b, has_bias, y[i])

    threads.run_parallel(work, padded.parts)
    return y


def backward_data(gy, w, padding):
    """gx (N, C, H, W): the stride-1 convolution of ``gy`` with the flipped, transposed kernel."""
    kh, kw = w.shape[2], w.shape[3]
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, O, kh, kw)
    return forward(gy, flipped, (kh - 1 - padding[0], kw - 1 - padding[1]))


def backward_weight(x, gy, w_shape, padding):
    """gw (O, C, kh, kw) = sum over blocks of gY_wide (O, block) @ cols^T (block, C*kh*kw)."""
    n, c, o, kh, kw, oh, ow, wp = _geometry(x.shape, w_shape, padding)
    padded = _Padded(x, padding, kh, kw, wp, oh)
    k = c * kh * kw
    sums = [np.zeros((o, k), dtype=np.float32) for _ in padded.parts]

    def work(job):
        items, total = job
        image = padded.reader()
        cols = np.empty((k, padded.block), dtype=np.float32)
        g = np.empty((o, padded.block), dtype=np.float32)
        prod = np.empty((o, k), dtype=np.float32)
        for i, r0, r1 in items:
            length = (r1 - r0) * wp
            _block_columns(image(i), wp, kh, kw, r0, length, cols)
            _widen_rows(gy[i], r0, r1, wp, g[:, :length])
            np.matmul(g[:, :length], cols[:, :length].T, out=prod)
            np.add(total, prod, out=total)

    threads.run_parallel(work, list(zip(padded.parts, sums)))
    total = sums[0]
    for part in sums[1:]:
        total += part
    return total.reshape(w_shape)
