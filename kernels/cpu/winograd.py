"""Winograd F(2x2,3x3), F(4x4,3x3) and F(6x6,3x3) on the CPU: Numba tile transforms around batched
OpenBLAS GEMMs.

The algorithm and its NumPy twin are in :class:`tinysr.functional.conv_reference.WinogradImpl`; this
module computes the same maps for float32 arrays.  Output tiles are m x m pixels (m = 2, 4 or 6), input
tiles a x a (a = m + 2).  For one chunk of tiles:

1. :func:`tiles_in` (the input transform) reads, for one row of tiles, the a input rows of every
   channel into a small buffer laid out (row, column, channel) -- in cache -- and writes
   ``V[xi, tile, :] = (BT d B)[xi]`` for all channels at once: the innermost loops run over the
   contiguous channel axis, which the compiler turns into SIMD.  Zero padding and the overhang of
   the last tiles are read as zeros; no padded copy of the image is made.
2. One GEMM per position xi (a*a of them): ``M[xi] (tiles, O) = V[xi] (tiles, C) @ U[xi] (C, O)``,
   where ``U = G w G^T`` is the transformed filter (cached per weight version).
3. :func:`tiles_out` (the inverse transform) computes ``AT M A`` for every tile, a row of tiles at a
   time, crops the overhang, adds the bias (and applies a fused ReLU) and writes the rows of the NCHW
   output.

The weight gradient stays in the Winograd domain: the output gradient goes through the adjoint of
the inverse transform (:func:`tiles_in` with ``A`` in place of ``BT``, tiles of m pixels),
``dU[xi] += V[xi]^T @ dM[xi]`` sums over the chunks, and ``dW = G^T dU G`` at the end.  The input
gradient is the forward algorithm on the flipped, transposed filters with padding 2 - p; with padding 1
its tiles are the output gradient's, and :meth:`NumbaWinogradImpl.backward_fused` computes all the
gradients in one pass over the chunks: one gather of the output gradient (masked by a fused ReLU's
output as it is read) feeds both of its transforms, and the bias gradient falls out of the weight
gradient's transform.  The filter transforms are Numba kernels too (:func:`filter_transform`,
:func:`filter_gradient`): a training step changes every weight, so they run three times a layer.

Work is cut into chunks of whole tile rows (:data:`chunk_budget` bytes of V), and each thread of
:func:`.threads.run_parallel` runs its chunks through all three steps with its own buffers and a
single-threaded BLAS: the buffers stay small, and there is one synchronisation per layer.  Only
float32 NumPy arrays reach the kernels; anything else goes to the NumPy twin.
"""
import math

import numpy as np
from numba import njit

from tinysr.functional.conv_reference import WinogradImpl, filter_cache, winograd_matrices, winograd_tiles

from . import memory, threads
from .pointwise import bias_grad

#: Bytes of transformed input per chunk: with the GEMM output beside it (as large for O = C), a chunk
#: stays within a core's share of L3 (it is twice the 1 MiB L2 of the benchmark machine's cores) while
#: each of the a*a GEMMs still gets about a hundred rows.  Training steps with 2 threads, medians of
#: interleaved repetitions: VDSR 0.62-0.68 s at 1 MiB, 0.74-0.85 at 2 MiB, 0.82-1.09 at 4 MiB;
#: EDSR-baseline x2 1.77-1.86 / 1.67-1.91 / 2.22-2.38 s.  Smaller chunks, down to 256 KiB, were no
#: faster on VDSR's layer at one thread (forward 14.0-16.8 ms, both gradients 29.7-36.4, within noise).
chunk_budget = 1 << 20


@njit(nogil=True, cache=True, inline="always")
def _sum6(dst, coef, s0, s1, s2, s3, s4, s5):
    """``dst = sum_k coef[k] * s_k``: F(4x4, 3x3)'s six-term combinations in one vectorised pass.

    The terms are written out (zero coefficients included): a loop over the terms inside the loop
    over ``dst`` would not vectorise, and one ``dst += c * s`` pass per term reads and writes ``dst``
    up to six times.
    """
    c0, c1, c2, c3, c4, c5 = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]
    for e in range(dst.size):
        dst[e] = c0 * s0[e] + c1 * s1[e] + c2 * s2[e] + c3 * s3[e] + c4 * s4[e] + c5 * s5[e]


@njit(nogil=True, cache=True, inline="always")
def _sum8(dst, coef, s0, s1, s2, s3, s4, s5, s6, s7):
    """``dst = sum_k coef[k] * s_k``: F(6x6, 3x3)'s eight-term combinations, as :func:`_sum6`."""
    c0, c1, c2, c3, c4, c5, c6, c7 = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5], coef[6], coef[7]
    for e in range(dst.size):
        dst[e] = (c0 * s0[e] + c1 * s1[e] + c2 * s2[e] + c3 * s3[e] + c4 * s4[e] + c5 * s5[e] + c6 * s6[e]
                  + c7 * s7[e])


@njit(nogil=True, cache=True)
def _channel_block(n_c, plane):
    """How many channels :func:`tiles_in` transposes together.

    The gather reads one pixel of each channel in turn, ``plane`` floats apart, and writes them side by
    side.  Reading all the channels at once is fastest unless the channels' addresses fall on few of
    L1's 64 sets (64-byte lines, so the sets repeat every 4 KiB): at 32 x 32, 64 x 64, 96 x 96,
    128 x 128 or 256 x 256 every channel lands on the same set, its 8 ways hold 8 of them, and the
    loads miss.  So all the channels when at most 8 share a set, else 8 at a time.
    """
    sets = min(64, 4096 // math.gcd(4096, plane * 4))   # distinct sets the channels' rows start on
    return n_c if n_c <= 8 * sets else 8


@njit(nogil=True, cache=True, inline="always")
def _gather_row(x, mask, n, r, off_w, s0, s1, cb, dst):
    """``dst[s, c] = x[n, c, r, s - off_w]`` for the buffer columns ``s0..s1`` inside the image, zero on
    the others: the transpose (column, channel) <- (channel, column), ``cb`` channels at a time.  With a
    ``mask`` of x's shape (not a 1-element placeholder), zero also where ``mask <= 0``: the gradient
    through a ReLU whose output is ``mask``, applied as it is read."""
    for s in range(s0):
        dst[s, :] = 0
    for s in range(s1, dst.shape[0]):
        dst[s, :] = 0
    if mask.size > 1:
        for c0 in range(0, x.shape[1], cb):
            c1 = min(x.shape[1], c0 + cb)
            for s in range(s0, s1):
                d = dst[s]
                for c in range(c0, c1):
                    # Both loads first, so that the choice compiles to a select, not a branch: the
                    # mask is as good as random, and a branch per value mispredicts half the time.
                    v, k = x[n, c, r, s - off_w], mask[n, c, r, s - off_w]
                    d[c] = v if k > 0 else np.float32(0)
        return
    for c0 in range(0, x.shape[1], cb):
        c1 = min(x.shape[1], c0 + cb)
        for s in range(s0, s1):
            d = dst[s]
            for c in range(c0, c1):
                d[c] = x[n, c, r, s - off_w]


@njit(nogil=True, cache=True, inline="always")
def _transform_strip(flat, order, k0, c0, lt, tmp, out, t0, tw, step, n_c):
    """One tile row's ``out[p*a + q, t0 + tc, :] = (L d L^T)[p, q]`` from gathered rows: tile tc's rows are
    the ring slots ``order[k0:k0 + ti]``, its columns the buffer columns from ``tc*step + c0``."""
    a, ti = lt.shape
    span = flat.shape[1]
    for p in range(a):                          # down the rows: tmp = L @ strip
        dst = tmp[p]
        if ti == 6:
            _sum6(dst, lt[p], flat[order[k0]], flat[order[k0 + 1]], flat[order[k0 + 2]], flat[order[k0 + 3]],
                  flat[order[k0 + 4]], flat[order[k0 + 5]])
            continue
        if ti == 8:
            _sum8(dst, lt[p], flat[order[k0]], flat[order[k0 + 1]], flat[order[k0 + 2]], flat[order[k0 + 3]],
                  flat[order[k0 + 4]], flat[order[k0 + 5]], flat[order[k0 + 6]], flat[order[k0 + 7]])
            continue
        dst[:] = 0
        for k in range(ti):
            coef = lt[p, k]
            if coef != 0:
                src = flat[order[k0 + k]]
                for e in range(span):
                    dst[e] += coef * src[e]
    for p in range(a):                          # along each tile's columns: out = tmp @ L^T
        row = tmp[p]
        for q in range(a):
            # One position's vectors for the whole row of tiles are contiguous: (tiles, C).
            dst = out[p * a + q, t0:t0 + tw].reshape(tw * n_c)
            if ti == 6:
                for tc in range(tw):
                    b = (tc * step + c0) * n_c
                    _sum6(dst[tc * n_c:(tc + 1) * n_c], lt[q], row[b:b + n_c], row[b + n_c:b + 2 * n_c],
                          row[b + 2 * n_c:b + 3 * n_c], row[b + 3 * n_c:b + 4 * n_c], row[b + 4 * n_c:b + 5 * n_c],
                          row[b + 5 * n_c:b + 6 * n_c])
                continue
            if ti == 8:
                for tc in range(tw):
                    b = (tc * step + c0) * n_c
                    _sum8(dst[tc * n_c:(tc + 1) * n_c], lt[q], row[b:b + n_c], row[b + n_c:b + 2 * n_c],
                          row[b + 2 * n_c:b + 3 * n_c], row[b + 3 * n_c:b + 4 * n_c], row[b + 4 * n_c:b + 5 * n_c],
                          row[b + 5 * n_c:b + 6 * n_c], row[b + 6 * n_c:b + 7 * n_c], row[b + 7 * n_c:b + 8 * n_c])
                continue
            first = True
            for col in range(ti):
                coef = lt[q, col]
                if coef == 0:
                    continue
                for tc in range(tw):
                    base = (tc * step + c0 + col) * n_c
                    src = row[base:base + n_c]      # 1-D slices: the loops below vectorise
                    d = dst[tc * n_c:(tc + 1) * n_c]
                    if first:
                        for c in range(n_c):
                            d[c] = coef * src[c]
                    else:
                        for c in range(n_c):
                            d[c] += coef * src[c]
                first = False


@njit(nogil=True, cache=True)
def tiles_in(x, g0, g1, th, tw, step, off_h, off_w, lt, out, mask, lt2, out2):
    """``out[p*a + q, t, :] = (L d L^T)[p, q]`` for every tile t of the tile rows ``g0..g1``.

    ``x`` (N, C, H, W), read as ``x * (mask > 0)`` when ``mask`` has x's shape (a gradient through a
    ReLU; :data:`NO_MASK` otherwise).  Tile row g is row ``g % th`` of image ``g // th``; tile (tr, tc)
    is the ti x ti window at row ``tr*step - off_h``, column ``tc*step - off_w`` of ``x`` (zeros
    outside); ``lt`` (a, ti) is the transform; ``out`` (a*a, >= (g1-g0)*tw, C).  Per tile row: gather
    the ti input rows as (row, column, channel), apply L down the rows for the whole strip at once, then
    along each tile's columns.  Consecutive tile rows share ti - step input rows: the gathered rows
    live in a ring of ti slots (image row r in slot r mod ti), and only the new ones are gathered.

    A second transform ``lt2`` (a, ti2) into ``out2`` (when ``out2`` is not empty) reads the same
    gathered rows: its windows sit at row ``tr*step``, column ``tc*step``, inside the first ones (the
    weight gradient's transform of an output gradient whose input-gradient transform has padding 1).
    """
    n_c, h, w = x.shape[1], x.shape[2], x.shape[3]
    a, ti = lt.shape
    wb = (tw - 1) * step + ti
    buf = np.zeros((ti, wb, n_c), dtype=np.float32)
    tmp = np.empty((a, wb * n_c), dtype=np.float32)
    flat = buf.reshape(ti, wb * n_c)
    held = np.full((ti, 2), -(1 << 30), dtype=np.int64)    # (image, row) in each slot
    s0 = min(wb, max(0, off_w))                         # buffer columns s0..s1 lie inside the image
    s1 = max(s0, min(wb, w + off_w))
    cb = _channel_block(n_c, h * w)
    order = np.empty(ti, dtype=np.int64)
    tmp2 = np.empty((lt2.shape[0], wb * n_c), dtype=np.float32)
    for g in range(g0, g1):
        n = g // th
        r0 = (g - n * th) * step - off_h
        for k in range(ti):
            r = r0 + k
            slot = r % ti                           # Python's modulo: >= 0 for the padding rows above
            order[k] = slot
            if held[slot, 0] == n and held[slot, 1] == r:
                continue
            held[slot, 0], held[slot, 1] = n, r
            if r < 0 or r >= h:
                flat[slot, :] = 0
                continue
            _gather_row(x, mask, n, r, off_w, s0, s1, cb, buf[slot])
        t0 = (g - g0) * tw
        _transform_strip(flat, order, 0, 0, lt, tmp, out, t0, tw, step, n_c)
        if out2.shape[0] > 0:
            _transform_strip(flat, order, off_h, off_w, lt2, tmp2, out2, t0, tw, step, n_c)


@njit(nogil=True, cache=True)
def tiles_out(mm, g0, g1, th, tw, at, bias, has_bias, relu, y):
    """Rows of ``y`` (N, O, OH, OW) from ``mm`` (a*a, tiles, O): each tile's ``AT M A``, cropped, plus bias,
    and with ``relu`` through max(., 0) as it is written (a separate ReLU would read and write y again).

    Per tile row: ``AT`` over the first position index for the whole row of tiles at once (contiguous
    (tiles, O) vectors), then ``A`` over the second index tile by tile, then the cropped rows of every
    output channel are written out.
    """
    n_o, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    m, a = at.shape
    buf = np.empty((m, tw * m, n_o), dtype=np.float32)
    tmp = np.empty((m, a, tw * n_o), dtype=np.float32)
    for g in range(g0, g1):
        n = g // th
        r0 = (g - n * th) * m
        t0 = (g - g0) * tw
        for p in range(m):                          # tmp = AT @ M over the first position index
            for j in range(a):
                dst = tmp[p, j]
                if a == 6:
                    _sum6(dst, at[p], mm[j, t0:t0 + tw].reshape(tw * n_o), mm[a + j, t0:t0 + tw].reshape(tw * n_o),
                          mm[2 * a + j, t0:t0 + tw].reshape(tw * n_o), mm[3 * a + j, t0:t0 + tw].reshape(tw * n_o),
                          mm[4 * a + j, t0:t0 + tw].reshape(tw * n_o), mm[5 * a + j, t0:t0 + tw].reshape(tw * n_o))
                    continue
                if a == 8:
                    _sum8(dst, at[p], mm[j, t0:t0 + tw].reshape(tw * n_o), mm[a + j, t0:t0 + tw].reshape(tw * n_o),
                          mm[2 * a + j, t0:t0 + tw].reshape(tw * n_o), mm[3 * a + j, t0:t0 + tw].reshape(tw * n_o),
                          mm[4 * a + j, t0:t0 + tw].reshape(tw * n_o), mm[5 * a + j, t0:t0 + tw].reshape(tw * n_o),
                          mm[6 * a + j, t0:t0 + tw].reshape(tw * n_o), mm[7 * a + j, t0:t0 + tw].reshape(tw * n_o))
                    continue
                dst[:] = 0
                for i in range(a):
                    coef = at[p, i]
                    if coef != 0:
                        src = mm[i * a + j, t0:t0 + tw].reshape(tw * n_o)
                        for e in range(tw * n_o):
                            dst[e] += coef * src[e]
        for p in range(m):                          # buf = tmp @ A over the second index
            for tc in range(tw):
                for q in range(m):
                    dst = buf[p, tc * m + q]
                    if a == 6:
                        e0, e1 = tc * n_o, (tc + 1) * n_o
                        _sum6(dst, at[q], tmp[p, 0, e0:e1], tmp[p, 1, e0:e1], tmp[p, 2, e0:e1], tmp[p, 3, e0:e1],
                              tmp[p, 4, e0:e1], tmp[p, 5, e0:e1])
                        continue
                    if a == 8:
                        e0, e1 = tc * n_o, (tc + 1) * n_o
                        _sum8(dst, at[q], tmp[p, 0, e0:e1], tmp[p, 1, e0:e1], tmp[p, 2, e0:e1], tmp[p, 3, e0:e1],
                              tmp[p, 4, e0:e1], tmp[p, 5, e0:e1], tmp[p, 6, e0:e1], tmp[p, 7, e0:e1])
                        continue
                    dst[:] = 0
                    for j in range(a):
                        coef = at[q, j]
                        if coef != 0:
                            src = tmp[p, j, tc * n_o:(tc + 1) * n_o]
                            for o in range(n_o):
                                dst[o] += coef * src[o]
        rows = min(m, oh - r0)
        for o in range(n_o):
            b = bias[o] if has_bias else np.float32(0)
            for p in range(rows):
                row = y[n, o, r0 + p]
                src = buf[p, :, o]
                if relu:
                    for s in range(ow):
                        row[s] = max(src[s] + b, np.float32(0))
                else:
                    for s in range(ow):
                        row[s] = src[s] + b


@njit(nogil=True, cache=True)
def filter_transform(w, g, flip, u):
    """The transformed filters ``U = G w G^T`` of the GEMMs, from ``w`` (O, C, 3, 3) and ``g`` (a, 3).

    ``u[i*a + j, c, o] = (G w[o, c] G^T)[i, j]`` (shape (a*a, C, O)); with ``flip`` the filters of the input
    gradient, each turned by 180 degrees with O and C swapped: ``u[i*a + j, o, c] = (G w[o, c, ::-1, ::-1]
    G^T)[i, j]`` (shape (a*a, O, C)).  The same numbers as :func:`~tinysr.functional.conv_reference.winograd_filter`,
    computed for a whole row ``u[xi, p, :]`` at a time (the filters are first laid out (p, k, l, q)), so the
    loops run over contiguous vectors.
    """
    n_o, n_c = w.shape[0], w.shape[1]
    a = g.shape[0]
    n_p, n_q = (n_o, n_c) if flip else (n_c, n_o)
    wt = np.empty((3, 3, n_q), dtype=np.float32)
    tmp = np.empty((a, 3, n_q), dtype=np.float32)
    for p in range(n_p):
        for k in range(3):
            for l in range(3):
                for q in range(n_q):
                    wt[k, l, q] = w[p, q, 2 - k, 2 - l] if flip else w[q, p, k, l]
        for i in range(a):                          # tmp = G @ w, down the rows
            g0, g1, g2 = g[i, 0], g[i, 1], g[i, 2]
            for l in range(3):
                for q in range(n_q):
                    tmp[i, l, q] = g0 * wt[0, l, q] + g1 * wt[1, l, q] + g2 * wt[2, l, q]
        for i in range(a):                          # u = tmp @ G^T, along the columns
            for j in range(a):
                h0, h1, h2 = g[j, 0], g[j, 1], g[j, 2]
                dst = u[i * a + j, p]
                for q in range(n_q):
                    dst[q] = tmp[i, 0, q] * h0 + tmp[i, 1, q] * h1 + tmp[i, 2, q] * h2


@njit(nogil=True, cache=True, inline="always")
def _combine(dst, coefs, srcs):
    """``dst = sum_j coefs[j] * srcs[j]`` over the rows of ``srcs``, skipping zero coefficients."""
    dst[:] = 0
    for j in range(srcs.shape[0]):
        coef = coefs[j]
        if coef != 0:
            src = srcs[j]
            for o in range(dst.size):
                dst[o] += coef * src[o]


@njit(nogil=True, cache=True)
def filter_gradient(du, g, gw):
    """``gw[o, c] = G^T dU[:, :, c, o] G`` (O, C, 3, 3): the weight gradient from its Winograd-domain sum
    ``du`` (a*a, C, O) -- the adjoint of :func:`filter_transform` -- a row ``du[xi, c, :]`` at a time."""
    n_c, n_o = du.shape[1], du.shape[2]
    a = g.shape[0]
    gt = np.ascontiguousarray(g.T)                  # (3, a): a column of G as a contiguous row
    tmp = np.empty((3, a, n_o), dtype=np.float32)
    acc = np.empty((3, 3, n_o), dtype=np.float32)
    for c in range(n_c):
        for i in range(a):                          # tmp = dU @ G, along the columns
            for l in range(3):
                _combine(tmp[l, i], gt[l], du[i * a:(i + 1) * a, c])
        for k in range(3):                          # acc = G^T @ tmp, down the rows
            for l in range(3):
                _combine(acc[k, l], gt[k], tmp[l])
        for o in range(n_o):
            for k in range(3):
                for l in range(3):
                    gw[o, c, k, l] = acc[k, l, o]


#: The ``mask`` argument of :func:`tiles_in` when there is none (a 4-D array, as a mask has to be).
NO_MASK = np.zeros((1, 1, 1, 1), dtype=np.float32)
#: The second transform of :func:`tiles_in` and its output when there is none.
NO_LT, NO_OUT = np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0, 0), dtype=np.float32)


def _fast(*arrays):
    return all(type(a) is np.ndarray and a.dtype == np.float32 for a in arrays)


def _chunks(rows, tw, a, width):
    """Tile rows cut into chunks of at most :data:`chunk_budget` bytes of (a*a, tiles, width) floats,
    dealt out to the threads: a list (per thread) of (g0, g1), and the most tiles in a chunk.

    The number of chunks is a multiple of the number of threads and the chunks are of equal size
    (to a tile row), so that every thread gets the same work: the layer waits for the slowest.
    """
    per = max(1, min(rows, chunk_budget // (4 * a * a * tw * width)))
    t = max(1, min(threads.get_num_threads(), rows))
    count = -(-rows // per)
    count = -(-count // t) * t
    per = -(-rows // count)
    spans = [(g0, min(rows, g0 + per)) for g0 in range(0, rows, per)]
    return [spans[k::t] for k in range(t)], per * tw


class NumbaWinogradImpl:
    """Winograd F(m x m, 3 x 3) with Numba transforms and OpenBLAS GEMMs (see the module docstring).

    ``forward(x, w, stride, padding, bias=None)``, ``backward_data(gy, w, x_shape, stride, padding)``,
    ``backward_weight(x, gy, w_shape, stride, padding)``: the maps of
    :class:`tinysr.functional.conv_reference.WinogradImpl`, for stride-1 3x3 layers with padding 0-2.
    """

    fuses_bias = True
    fuses_relu = True

    def __init__(self, m):
        self.m, self.a = m, m + 2
        self.name = f"numba-winograd{m}"
        self.twin = WinogradImpl(m)
        at, g, bt = winograd_matrices(m, dtype=np.float32)
        self.at, self.g, self.bt = np.ascontiguousarray(at), g, np.ascontiguousarray(bt)
        self.g32 = np.ascontiguousarray(g)
        self.a_mat = np.ascontiguousarray(at.T)      # (a, m): the adjoint of the inverse transform

    def _conv(self, x, u, pad, o, bias=None, relu=False):
        """y = the Winograd convolution of ``x`` with transformed filters ``u`` (a*a, C, O) (+ bias, ReLU)."""
        x = np.ascontiguousarray(x)
        n, c, h, w = x.shape
        oh, ow = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
        th, tw = winograd_tiles(oh, ow, self.m)
        y = memory.empty((n, o, oh, ow))
        has_bias = bias is not None
        b = np.ascontiguousarray(bias, dtype=np.float32) if has_bias else np.zeros(1, np.float32)
        parts, tiles = _chunks(n * th, tw, self.a, max(c, o))
        aa = self.a * self.a

        def work(items):
            v = np.empty((aa, tiles, c), dtype=np.float32)
            mm = np.empty((aa, tiles, o), dtype=np.float32)
            for g0, g1 in items:
                k = (g1 - g0) * tw
                tiles_in(x, g0, g1, th, tw, self.m, pad[0], pad[1], self.bt, v, NO_MASK, NO_LT, NO_OUT)
                np.matmul(v[:, :k], u, out=mm[:, :k])
                tiles_out(mm, g0, g1, th, tw, self.at, b, has_bias, relu, y)

        threads.run_parallel(work, parts)
        return y

    def _u(self, w, flipped=False):
        def transform(w_):
            o, c = w_.shape[0], w_.shape[1]
            u = np.empty((self.a * self.a, o, c) if flipped else (self.a * self.a, c, o), dtype=np.float32)
            filter_transform(np.ascontiguousarray(w_), self.g32, flipped, u)
            return u
        return filter_cache.get(w, ("U_flipped" if flipped else "U", self.m), transform)

    def forward(self, x, w, stride, padding, bias=None, relu=False):
        if not _fast(x, w) or (bias is not None and not _fast(bias)):
            y = self.twin.forward(x, w, stride, padding)
            if bias is not None:
                y += bias.reshape(1, -1, 1, 1)
            return np.maximum(y, 0, out=y) if relu else y
        return self._conv(x, self._u(w), padding, w.shape[0], bias, relu)

    def backward_data(self, gy, w, x_shape, stride, padding):
        if not _fast(gy, w):
            return self.twin.backward_data(gy, w, x_shape, stride, padding)
        return self._conv(gy, self._u(w, flipped=True), (2 - padding[0], 2 - padding[1]), w.shape[1])

    def backward(self, x, w, gy, stride, padding, need_x=True):
        """``(gx, gw)``: both gradients of a training step (see :meth:`backward_fused`)."""
        return self.backward_fused(x, w, gy, stride, padding, need_x, need_bias=False)[:2]

    def backward_fused(self, x, w, gy, stride, padding, need_x=True, relu_out=None, need_bias=True):
        """``(gx, gw, gb)``: the gradients of ``y = conv(x, w) + b``, or of ``y = relu(conv(x, w) + b)`` when
        ``relu_out`` is that ``y`` (``gy`` is then masked by ``y > 0`` as the transforms read it).  ``gb`` is
        None when ``need_bias`` is false and it would cost a pass over ``gy``.

        With padding 1 the input gradient's tiles are the output gradient's, so one pass over the chunks
        computes all three: each chunk of ``gy`` is transformed for the input gradient and, still in
        cache, for the weight gradient (VDSR's layer, 2 threads: 16.4-17.1 -> 15.5-16.1 ms; EDSR's 48 x 48
        the same).  The bias gradient is free there: point 1 of the transforms has ``A[1, :] = (1, ..., 1)``,
        so position (1, 1) of the output gradient's transform is the sum of each tile's pixels.
        """
        if not need_x or tuple(padding) != (1, 1) or not _fast(x, w, gy) or (
                relu_out is not None and not _fast(relu_out)):
            if relu_out is not None:
                gy = gy * (relu_out > 0)
            gx = self.backward_data(gy, w, x.shape, stride, padding) if need_x else None
            return gx, self.backward_weight(x, gy, w.shape, stride, padding), bias_grad(gy) if need_bias else None
        x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
        mask = NO_MASK if relu_out is None else np.ascontiguousarray(relu_out)
        n, c, h, wd = x.shape
        o = gy.shape[1]
        th, tw = winograd_tiles(h, wd, self.m)
        parts, tiles = _chunks(n * th, tw, self.a, max(c, o))
        m, uf = self.m, self._u(w, flipped=True)
        gx = memory.empty((n, c, h, wd))
        zero = np.zeros(1, np.float32)
        sums = [(np.zeros((self.a * self.a, c, o), dtype=np.float32), np.zeros(o, dtype=np.float64)) for _ in parts]

        def work(job):
            items, (total, bias_total) = job
            vc, vo, prod = self._weight_buffers(tiles, c, o)
            dm = np.empty_like(vo)
            for g0, g1 in items:
                k = (g1 - g0) * tw
                # gy's two transforms from one gather: for the input gradient (gy * U_flipped) and, in
                # the windows inside those, for the weight gradient.
                tiles_in(gy, g0, g1, th, tw, m, 1, 1, self.bt, vo, mask, self.a_mat, dm)
                np.matmul(vo[:, :k], uf, out=vc[:, :k])
                tiles_out(vc, g0, g1, th, tw, self.at, zero, False, False, gx)
                tiles_in(x, g0, g1, th, tw, m, 1, 1, self.bt, vc, NO_MASK, NO_LT, NO_OUT)
                self._accumulate(vc, dm, k, prod, total)
                bias_total += dm[self.a + 1, :k].sum(axis=0, dtype=np.float64)

        threads.run_parallel(work, list(zip(parts, sums)))
        gb = sums[0][1]
        for _, part in sums[1:]:
            gb += part
        return gx, self._gradient_from([t for t, _ in sums], c, o), gb.astype(np.float32)

    def _weight_buffers(self, tiles, c, o):
        """A thread's buffers for the weight gradient: V (a*a, tiles, C), dM (a*a, tiles, O), a product (a*a, C, O)."""
        aa = self.a * self.a
        return (np.empty((aa, tiles, c), dtype=np.float32), np.empty((aa, tiles, o), dtype=np.float32),
                np.empty((aa, c, o), dtype=np.float32))

    def _add_weight_chunk(self, x, gy, g0, g1, th, tw, pad, v, dm, prod, total):
        """``total += V^T dM`` over the tile rows ``g0..g1``: one chunk's share of ``dU``."""
        k = (g1 - g0) * tw
        tiles_in(x, g0, g1, th, tw, self.m, pad[0], pad[1], self.bt, v, NO_MASK, NO_LT, NO_OUT)
        tiles_in(gy, g0, g1, th, tw, self.m, 0, 0, self.a_mat, dm, NO_MASK, NO_LT, NO_OUT)
        self._accumulate(v, dm, k, prod, total)

    @staticmethod
    def _accumulate(v, dm, k, prod, total):
        """``total += V^T dM`` for the first ``k`` tiles: one GEMM per position."""
        np.matmul(v[:, :k].transpose(0, 2, 1), dm[:, :k], out=prod)
        total += prod

    def _gradient_from(self, sums, c, o):
        """``dW = G^T dU G`` from the threads' partial sums of ``dU`` (a*a, C, O)."""
        du = sums[0]
        for part in sums[1:]:
            du += part
        gw = np.empty((o, c, 3, 3), dtype=np.float32)
        filter_gradient(du, self.g32, gw)
        return gw

    def backward_weight(self, x, gy, w_shape, stride, padding):
        if not _fast(x, gy):
            return self.twin.backward_weight(x, gy, w_shape, stride, padding)
        x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
        n, c = x.shape[0], x.shape[1]
        o, oh, ow = gy.shape[1], gy.shape[2], gy.shape[3]
        th, tw = winograd_tiles(oh, ow, self.m)
        parts, tiles = _chunks(n * th, tw, self.a, max(c, o))
        sums = [np.zeros((self.a * self.a, c, o), dtype=np.float32) for _ in parts]

        def work(job):
            items, total = job
            buffers = self._weight_buffers(tiles, c, o)
            for g0, g1 in items:
                self._add_weight_chunk(x, gy, g0, g1, th, tw, padding, *buffers, total)

        threads.run_parallel(work, list(zip(parts, sums)))
        return self._gradient_from(sums, c, o)


WINOGRAD2 = NumbaWinogradImpl(2)
WINOGRAD4 = NumbaWinogradImpl(4)
WINOGRAD6 = NumbaWinogradImpl(6)
