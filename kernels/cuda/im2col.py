"""im2col and col2im as CUDA kernels: the data movement around the convolution GEMM.

The NumPy twins are :func:`tinysr.functional.conv.im2col` / ``col2im`` -- read those first; the
module docstring of ``tinysr/functional/conv.py`` explains why a convolution is im2col + one GEMM.

Column layouts.  The teaching version builds one matrix ``cols`` of shape (K, N*P), where
K = C*kh*kw (one row per kernel tap) and P = OH*OW (one column per output pixel of one image).  On
the GPU a second layout is better: (N, K, P), one (K, P) matrix per image.  Then a *batched* GEMM
``W (O, K) @ cols[n] (K, P)`` writes (N, O, P), which already is the NCHW output -- no transpose pass
over the biggest tensor of the layer.  Both layouts are the same kernel with different strides:
element (n, k, p) lives at ``n*stride_n + k*stride_k + p``:

    layout "kn" (the twin's):  stride_n = P,      stride_k = N*P
    layout "nk" (batched):     stride_n = K*P,    stride_k = P

Thread mapping.  Both kernels give each thread one element of the array they *write* (a gather):
consecutive threads write consecutive addresses (p is the fastest index), so the stores coalesce
into full 128-byte transactions, and no two threads ever write the same address -- which is why
col2im needs no atomics (see ``_col2im_kernel``).
"""
import numpy as np
from numba import cuda

from . import _runtime as rt


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _strides(layout, n, k, p):
    if layout == "kn":
        return p, n * p
    if layout == "nk":
        return k * p, p
    raise ValueError(f"layout must be 'kn' (K, N*P) or 'nk' (N, K, P), got {layout!r}")


@cuda.jit
def _im2col_kernel(x, cols, n_img, c_in, h, w, kh, kw, sh, sw, ph, pw, oh, ow, stride_n, stride_k):
    # Grid: z strides over images n, y over channels c, x (with threadIdx.y) over output rows i;
    # threadIdx.x strides over the columns j of a row, so a warp writes 32 neighbouring addresses.
    # Each thread writes all kh*kw taps k = (c, u, v) of its output pixel (i, j): consecutive taps are
    # consecutive rows of the columns, stride_k apart.  No integer division per element (a 64-bit
    # division costs a GPU tens of instructions): one thread per entry, with (n, k, i, j) recovered from
    # a flat index, is about 4x slower on VDSR's shapes (benchmarks/README.md).
    # The tap reads input pixel (i*sh - ph + u, j*sw - pw + v): the zero padding is never
    # materialised, an out-of-image read just writes 0.
    i0, i_step = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y, cuda.gridDim.x * cuda.blockDim.y
    j0, j_step = cuda.threadIdx.x, cuda.blockDim.x
    taps = kh * kw
    for n in range(cuda.blockIdx.z, n_img, cuda.gridDim.z):
        for c in range(cuda.blockIdx.y, c_in, cuda.gridDim.y):
            src = (n * c_in + c) * h * w
            first = n * stride_n + c * taps * stride_k
            for i in range(i0, oh, i_step):
                for j in range(j0, ow, j_step):
                    dst = first + i * ow + j
                    for u in range(kh):
                        hi = i * sh - ph + u
                        for v in range(kw):
                            wi = j * sw - pw + v
                            if 0 <= hi < h and 0 <= wi < w:
                                cols[dst] = x[src + hi * w + wi]
                            else:
                                cols[dst] = 0
                            dst += stride_k


@cuda.jit
def _col2im_kernel(cols, x, n_img, c_in, h, w, kh, kw, sh, sw, ph, pw, oh, ow, stride_n, stride_k, zero):
    # col2im *adds* every column entry back onto the pixel it was read from, and overlapping windows
    # (stride < kernel) make several entries land on one pixel.  Scattering them (a thread per
    # column entry) would need atomic adds: slow under contention and summed in a different order
    # on every run.  Instead each thread owns one image pixel and *gathers* the entries that read it:
    # tap (u, v) of output pixel (i, j) read pixel (hi, wi) when hi + ph - u = i*sh, i.e. when
    # (hi + ph - u) is a non-negative multiple of sh with quotient i < oh (and likewise for w).
    # Deterministic, race-free, and every pixel is written exactly once (so no zero-fill pass).
    # Grid as in _im2col_kernel, over the image's rows hi and columns wi; stride 1 (almost every
    # layer) needs no division at all.
    i0, i_step = cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y, cuda.gridDim.x * cuda.blockDim.y
    j0, j_step = cuda.threadIdx.x, cuda.blockDim.x
    taps = kh * kw
    for n in range(cuda.blockIdx.z, n_img, cuda.gridDim.z):
        for c in range(cuda.blockIdx.y, c_in, cuda.gridDim.y):
            out = (n * c_in + c) * h * w
            first = n * stride_n + c * taps * stride_k
            for hi in range(i0, h, i_step):
                for wi in range(j0, w, j_step):
                    acc = zero  # typed like the arrays: float32 sums in float32, float64 (gradient checks) in float64
                    for u in range(kh):
                        a = hi + ph - u
                        if a < 0:
                            break  # a only falls as u grows
                        i = a
                        if sh != 1:
                            i = a // sh
                            if i * sh != a:
                                continue
                        if i >= oh:
                            continue
                        for v in range(kw):
                            b = wi + pw - v
                            if b < 0:
                                break
                            j = b
                            if sw != 1:
                                j = b // sw
                                if j * sw != b:
                                    continue
                            if j >= ow:
                                continue
                            acc += cols[first + (u * kw + v) * stride_k + i * ow + j]
                    x[out + hi * w + wi] = acc


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def im2col(x, kh, kw, stride=1, padding=0, layout="kn"):
    """Unfold ``x`` (N, C, H, W) on the GPU into columns, like the NumPy twin.

    Returns (C*kh*kw, N*OH*OW) for ``layout="kn"`` (identical to
    ``tinysr.functional.conv.im2col``) or (N, C*kh*kw, OH*OW) for ``layout="nk"`` (one matrix per
    image, for a batched GEMM).  ``x`` may be a strided view (it is made contiguous first).
    Launch: a grid-stride loop over (rows, channels, images), one thread per output pixel.
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    x = rt.contiguous(x)
    dtype = rt.check_float(x)
    n, c, h, w = x.shape
    oh, ow = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"the input {h}x{w} is smaller than the {kh}x{kw} kernel (padding {ph},{pw})")
    k, p = c * kh * kw, oh * ow
    stride_n, stride_k = _strides(layout, n, k, p)
    shape = (k, n * p) if layout == "kn" else (n, k, p)
    cols = rt.empty(shape, dtype, like=x)
    blocks, threads = rt.grid_planes(oh, c, n)
    _im2col_kernel[blocks, threads, rt.stream_for(x)](
        rt.kernel_arg(rt.flat(x)), rt.kernel_arg(rt.flat(cols)),
        n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, stride_n, stride_k)
    return cols


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, layout="kn"):
    """Fold columns back into a contiguous (N, C, H, W) image, summing overlaps (adjoint of :func:`im2col`).

    ``cols`` is (C*kh*kw, N*OH*OW) for ``layout="kn"`` or (N, C*kh*kw, OH*OW) for ``"nk"``; the
    result equals ``tinysr.functional.conv.col2im`` (which returns a strided view; this returns a
    contiguous array).  Launch: a grid-stride loop over (rows, channels, images), one thread per
    image pixel (a gather).
    """
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    cols = rt.contiguous(cols)
    dtype = rt.check_float(cols)
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    k, p = c * kh * kw, oh * ow
    expected = (k, n * p) if layout == "kn" else (n, k, p)
    stride_n, stride_k = _strides(layout, n, k, p)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im: columns of shape {tuple(cols.shape)} do not fit x_shape {tuple(x_shape)} "
                         f"with a {kh}x{kw} kernel in layout {layout!r} (expected {expected})")
    x = rt.empty((n, c, h, w), dtype, like=cols)
    blocks, threads = rt.grid_planes(h, c, n)
    _col2im_kernel[blocks, threads, rt.stream_for(cols)](
        rt.kernel_arg(rt.flat(cols)), rt.kernel_arg(rt.flat(x)),
        n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, stride_n, stride_k, np.dtype(dtype).type(0))
    return x
