"""im2col / col2im and the layout moves around a GEMM, as parallel Numba kernels.

Twins: :func:`tinysr.functional.conv.im2col` and :func:`~tinysr.functional.conv.col2im`.  The
NumPy versions copy one strided window per kernel tap (kh*kw NumPy calls, each over the whole batch);
these do the same copies in one parallel pass and work on a *slice of the batch* (samples
``n0 .. n0 + nb``) so that the convolution can reuse one bounded column buffer instead of
materialising the full (C*kh*kw, N*OH*OW) matrix.

Layout (identical to the twins): row ``(c, u, v)`` of the column matrix, column ``(m, i, j)`` holds
``x_pad[n0 + m, c, s*i + u, s*j + v]``.  Each innermost loop runs over ``j`` on contiguous memory when
the stride is 1, so LLVM vectorises it.
"""
import numpy as np
from numba import njit, prange

from . import memory


@njit(cache=True, inline="always")
def _valid_range(size, k_off, stride, pad, out_len):
    """Output positions j with 0 <= stride*j + k_off - pad < size, as a half-open range."""
    lo = pad - k_off
    j0 = 0 if lo <= 0 else (lo + stride - 1) // stride
    hi = size - 1 + pad - k_off
    j1 = 0 if hi < 0 else min(out_len, hi // stride + 1)
    return j0, max(j0, j1)


def im2col_into(x, n0, nb, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    """Fill ``cols`` (C*kh*kw, nb*oh*ow) with the columns of samples n0..n0+nb of ``x`` (N, C, H, W)."""
    if sh == 1 and sw == 1:
        _im2col_stride1(x, n0, nb, kh, kw, ph, pw, oh, ow, cols)
    else:
        _im2col_strided(x, n0, nb, kh, kw, sh, sw, ph, pw, oh, ow, cols)


@njit(parallel=True, cache=True)
def _im2col_stride1(x, n0, nb, kh, kw, ph, pw, oh, ow, cols):
    """Stride 1: one task per (sample, channel) plane, padded once into a small buffer, from which every
    tap copies whole rows with no bounds tests (FSRCNN's 11x11 patches: rows of 11, where per-row
    tests and clipping cost more than the copies)."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = oh + kh - 1, ow + kw - 1
    plane = oh * ow
    for t in prange(nb * c_in):
        m = t // c_in
        c = t - m * c_in
        src = x[n0 + m, c]
        xp = np.zeros((hp, wp), dtype=cols.dtype)
        for a in range(max(0, ph), min(hp, h + ph)):
            for b in range(max(0, pw), min(wp, w + pw)):
                xp[a, b] = src[a - ph, b - pw]
        base = m * plane
        for u in range(kh):
            for v in range(kw):
                dst = cols[(c * kh + u) * kw + v, base:base + plane]
                for i in range(oh):
                    row = xp[i + u, v:v + ow]
                    for j in range(ow):
                        dst[i * ow + j] = row[j]


@njit(parallel=True, cache=True)
def _im2col_strided(x, n0, nb, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    plane = oh * ow
    for t in prange(c_in * kh * kw * nb):
        r = t // nb
        m = t - r * nb
        c = r // (kh * kw)
        u = (r // kw) % kh
        v = r % kw
        n = n0 + m
        base = m * plane
        j0, j1 = _valid_range(w, v, sw, pw, ow)
        for i in range(oh):
            hi = i * sh + u - ph
            o = base + i * ow
            if hi < 0 or hi >= h:
                for j in range(ow):
                    cols[r, o + j] = 0.0
                continue
            for j in range(j0):
                cols[r, o + j] = 0.0
            off = v - pw
            if sw == 1:
                for j in range(j0, j1):
                    cols[r, o + j] = x[n, c, hi, j + off]
            else:
                for j in range(j0, j1):
                    cols[r, o + j] = x[n, c, hi, j * sw + off]
            for j in range(j1, ow):
                cols[r, o + j] = 0.0


@njit(parallel=True, cache=True)
def col2im_into(cols, n0, nb, kh, kw, sh, sw, ph, pw, oh, ow, out):
    """Overwrite samples n0..n0+nb of ``out`` (N, C, H, W) with the col2im of ``cols`` (C*kh*kw, nb*oh*ow).

    Each (sample, channel) plane is one task: every column that lands in it belongs to that channel,
    so no two threads ever add into the same pixel.  The adds run over 1-D views indexed from 0: with
    ``out[..., j + off]`` and an offset that may be negative, Numba keeps its wraparound test in the loop
    and LLVM does not vectorise it (1.3-3x slower on FSRCNN's and SRCNN's shapes; benchmarks/README.md).
    """
    c_in, h, w = out.shape[1], out.shape[2], out.shape[3]
    plane = oh * ow
    for t in prange(nb * c_in):
        m = t // c_in
        c = t - m * c_in
        n = n0 + m
        for a in range(h):
            for b in range(w):
                out[n, c, a, b] = 0.0
        base = m * plane
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                j0, j1 = _valid_range(w, v, sw, pw, ow)
                off = v - pw
                for i in range(oh):
                    hi = i * sh + u - ph
                    if hi < 0 or hi >= h:
                        continue
                    o = base + i * ow
                    src = cols[r, o + j0:o + j1]
                    if sw == 1:
                        dst = out[n, c, hi, j0 + off:j1 + off]
                        for k in range(j1 - j0):
                            dst[k] += src[k]
                    else:
                        row = out[n, c, hi]
                        for k in range(j1 - j0):
                            row[(j0 + k) * sw + off] += src[k]


@njit(parallel=True, cache=True)
def cm_to_nchw_bias(y2, n0, nb, bias, has_bias, out):
    """Write the GEMM result ``y2`` (O, nb*P) into samples n0.. of ``out`` (N, O, P), adding ``bias``.

    This transpose is where the bias is fused: the values pass through registers once anyway.
    """
    o_ch, p = out.shape[1], out.shape[2]
    for t in prange(nb * o_ch):
        m = t // o_ch
        o = t - m * o_ch
        b = bias[o] if has_bias else 0.0
        src = m * p
        for k in range(p):
            out[n0 + m, o, k] = y2[o, src + k] + b


@njit(parallel=True, cache=True)
def add_bias_rows(y2, bias):
    """``y2[o, :] += bias[o]`` for a (O, P) block in place: one sample's output straight from the GEMM."""
    o_ch, p = y2.shape
    chunk = 4096
    per_row = (p + chunk - 1) // chunk
    for t in prange(o_ch * per_row):
        o = t // per_row
        k0 = (t - o * per_row) * chunk
        b = bias[o]
        for k in range(k0, min(p, k0 + chunk)):
            y2[o, k] += b


@njit(parallel=True, cache=True)
def nchw_to_cm(g, n0, nb, out):
    """Gather samples n0..n0+nb of ``g`` (N, O, P) into ``out`` (O, nb*P): the GEMM's layout."""
    o_ch, p = g.shape[1], g.shape[2]
    for t in prange(nb * o_ch):
        m = t // o_ch
        o = t - m * o_ch
        dst = m * p
        for k in range(p):
            out[o, dst + k] = g[n0 + m, o, k]


def im2col(x, kh, kw, stride=(1, 1), padding=(0, 0)):
    """The whole column matrix (C*kh*kw, N*OH*OW) of ``x`` -- same contract as tinysr's NumPy twin."""
    x = np.ascontiguousarray(x)
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(f"the input {h}x{w} is smaller than the {kh}x{kw} kernel (padding {ph},{pw})")
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    im2col_into(x, 0, n, kh, kw, sh, sw, ph, pw, oh, ow, cols)
    return cols


def col2im(cols, x_shape, kh, kw, stride=(1, 1), padding=(0, 0)):
    """The adjoint of :func:`im2col` -- same contract as tinysr's NumPy twin."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, w = x_shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.ascontiguousarray(cols).reshape(c * kh * kw, n * oh * ow)
    out = memory.empty(x_shape, cols.dtype)
    col2im_into(cols, 0, n, kh, kw, sh, sw, ph, pw, oh, ow, out)
    return out
