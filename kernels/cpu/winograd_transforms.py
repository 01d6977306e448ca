"""The Numba transforms of Winograd's F(m x m, 3 x 3) for :mod:`.winograd`: the tile transforms
(:func:`tiles_in`, ``L d L^T`` of every input tile; :func:`tiles_out`, ``AT M A`` back to NCHW) and the
filter transforms (:func:`filter_transform`, ``G w G^T``; :func:`filter_gradient`, its adjoint).

The transforms use the structure of Winograd's matrices: the points come in pairs +-p, whose rows
differ only in the sign of the odd columns (:func:`paired_table`), so each pair of outputs is the sum
and the difference of two half sums -- half the multiplies -- and all the outputs of a transform come
from one loop that reads each input once (:func:`_paired_transform`, :func:`_inverse_transform`).
Two rules keep those loops vectorised: every output is indexed by row in one 2-D array (a loop
writing several separate arrays needs more run-time overlap checks than the compiler makes), and
the indices are unsigned (a signed index that could be negative gets a check per element).  The
NCHW <-> (tile, channel) transposes go through a small staging buffer in L1: a contiguous pass over
each channel's row, then the transpose in cache.
"""
import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def paired_table(lt):
    """``(ce, co)``, each (8, 4) float32: the even and the odd columns of a transform ``lt`` (a, ti),
    zero-padded to 8 rows and 4 columns, for a transform whose rows 1..a-2 come in +-p pairs
    (:func:`check_paired`).

    Row j of a Winograd transform holds the coefficients of a polynomial evaluated at (or
    interpolating) the point p_j; at -p the even powers keep their sign and the odd ones flip, so the
    row of -p is the row of +p with its odd columns negated.  Both rows come from two half sums,
    ``e = ce . d[0::2]`` and ``o = co . d[1::2]``, as ``e + o`` and ``e - o``: half the multiplies, and each
    input read once for both.  Row 0 (the point 0) has only even columns, row a - 1 (the point at
    infinity) only odd ones: they are ``e`` of row 0 and ``o`` of row a - 1.
    """
    a, ti = lt.shape
    ce, co = np.zeros((8, 4), np.float32), np.zeros((8, 4), np.float32)
    for r in range(a):
        for k in range(ti):
            if k % 2 == 0:
                ce[r, k // 2] = lt[r, k]
            else:
                co[r, k // 2] = lt[r, k]
    return ce, co


def check_paired(lt):
    """Raise ValueError unless ``lt`` (a, ti) has the +-p row pairs that :func:`paired_table` relies on."""
    a, ti = lt.shape
    ok = a % 2 == 0 and 4 <= a <= 8 and ti <= 8
    if ok:
        ce, co = paired_table(np.ascontiguousarray(lt, dtype=np.float32))
        ok = not co[0].any() and not ce[a - 1].any() and all(
            np.array_equal(ce[r + 1], ce[r]) and np.array_equal(co[r + 1], -co[r]) for r in range(1, a - 1, 2))
    if not ok:
        raise ValueError(f"a transform of shape {lt.shape} without rows in +-p pairs: build it with "
                         "winograd_matrices")


@njit(nogil=True, cache=True, inline="always")
def _eo(c, q, x):
    """The half sums ``(e, o) = (c . x[0::2], q . x[1::2])`` of :func:`paired_table` for 8 values ``x``."""
    return c[0] * x[0] + c[1] * x[2] + c[2] * x[4] + c[3] * x[6], q[0] * x[1] + q[1] * x[3] + q[2] * x[5] + q[3] * x[7]


@njit(nogil=True, cache=True, inline="always")
def _row4(t, r):
    """Row r of a (8, 4) table as a tuple: scalars the compiler keeps out of the loop."""
    return (t[r, 0], t[r, 1], t[r, 2], t[r, 3])


@njit(nogil=True, cache=True, inline="always")
def _load8(src, rows, i):
    """``src[rows[k], i]`` for the eight source rows, as a tuple."""
    return (src[rows[0], i], src[rows[1], i], src[rows[2], i], src[rows[3], i], src[rows[4], i], src[rows[5], i],
            src[rows[6], i], src[rows[7], i])


@njit(nogil=True, cache=True, inline="always")
def _put_pair(dst, r, i, eo):
    """Rows r and r + 1 of a +-p pair from its half sums ``eo = (e, o)``: ``e + o`` and ``e - o``."""
    dst[r, i], dst[r + 1, i] = eo[0] + eo[1], eo[0] - eo[1]


@njit(nogil=True, cache=True)
def _paired_transform(src, s, n, ce, co, a, dst, d0, d_off):
    """``dst[d0 + p, d_off + i] = sum_k L[p, k] src[s[k], i]`` for p < a and i < n, from the tables
    ``(ce, co)`` of :func:`paired_table` (``s`` holds 8 source rows; those past L's columns have zero
    coefficients).

    Every output row comes from the same eight loads per element in one loop: rows 0 and a - 1 are
    half sums, each +-p pair is ``e + o`` and ``e - o``.  The loop is written out for each size a, with
    the coefficients hoisted out of it: a branch inside it would stop the vectorisation, and one pass
    per output row would read the inputs a times (the row pass of F(6x6)'s ``BT`` on a 44 x 64-float
    strip, one thread: 2.0 us against 7.0 for a pass per row).
    """
    e0, ol = _row4(ce, 0), _row4(co, a - 1)
    c1, q1, c3, q3, c5, q5 = _row4(ce, 1), _row4(co, 1), _row4(ce, 3), _row4(co, 3), _row4(ce, 5), _row4(co, 5)
    o = np.uint64(d_off)
    rows = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
    if a == 8:
        for i in range(np.uint64(n)):
            x = _load8(src, rows, i)
            dst[d0, o + i], dst[d0 + 7, o + i] = _eo(e0, ol, x)
            _put_pair(dst, d0 + 1, o + i, _eo(c1, q1, x))
            _put_pair(dst, d0 + 3, o + i, _eo(c3, q3, x))
            _put_pair(dst, d0 + 5, o + i, _eo(c5, q5, x))
    elif a == 6:
        for i in range(np.uint64(n)):
            x = _load8(src, rows, i)
            dst[d0, o + i], dst[d0 + 5, o + i] = _eo(e0, ol, x)
            _put_pair(dst, d0 + 1, o + i, _eo(c1, q1, x))
            _put_pair(dst, d0 + 3, o + i, _eo(c3, q3, x))
    else:
        for i in range(np.uint64(n)):
            x = _load8(src, rows, i)
            dst[d0, o + i], dst[d0 + 3, o + i] = _eo(e0, ol, x)
            _put_pair(dst, d0 + 1, o + i, _eo(c1, q1, x))


@njit(nogil=True, cache=True)
def _channel_block(n_c, plane):
    """How many channels a transpose between (channel, column) and (column, channel) handles together,
    when one pixel of each channel lies ``plane`` floats from the next.

    Going through all the channels at once is fastest unless their addresses fall on few of L1's 64
    sets (64-byte lines, so the sets repeat every 4 KiB): with planes of 32 x 32, 64 x 64, 96 x 96,
    128 x 128 or 256 x 256 floats every channel lands on the same set, its 8 ways hold 8 of them, and
    the accesses miss.  So all the channels when at most 8 share a set, else 8 at a time.
    """
    sets = min(64, 4096 // math.gcd(4096, plane * 4))   # distinct sets the channels' rows start on
    return n_c if n_c <= 8 * sets else 8


@njit(nogil=True, cache=True, inline="always")
def _gather_row(x, mask, n, r, off_w, s0, s1, cb, dst, stage):
    """``dst[s, c] = x[n, c, r, s - off_w]`` for the buffer columns ``s0..s1`` inside the image, zero on
    the others: the transpose (column, channel) <- (channel, column).  With a ``mask`` of x's shape
    (not a 1-element placeholder), zero also where ``mask <= 0``: the gradient through a ReLU whose
    output is ``mask``, applied as it is read.  ``stage`` (C, >= s1 - s0) is scratch; ``cb`` is
    :func:`_channel_block` for its rows.

    Reading x one channel's row at a time is a contiguous, vectorised pass, where a select inside
    the strided transpose would cost a scalar compare per value (VDSR's 16 x 64 x 41 x 41 gradient,
    one thread: the masked gather and both transforms 4.0-4.2 ms against 6.7-7.2 reading x across
    the channels).
    """
    for s in range(s0):
        dst[s, :] = 0
    for s in range(s1, dst.shape[0]):
        dst[s, :] = 0
    # Each channel's row into ``stage`` (unsigned indices: see the module docstring), then the
    # transpose, in L1.
    w0, cols = np.uint64(s0 - off_w), np.uint64(s1 - s0)
    if mask.size > 1:
        for c in range(x.shape[1]):
            for j in range(cols):
                v, k = x[n, c, r, w0 + j], mask[n, c, r, w0 + j]
                stage[c, j] = v if k > 0 else np.float32(0)
    else:
        for c in range(x.shape[1]):
            for j in range(cols):
                stage[c, j] = x[n, c, r, w0 + j]
    for c0 in range(0, x.shape[1], cb):
        c1 = min(x.shape[1], c0 + cb)
        for j in range(cols):
            d = dst[s0 + j]
            for c in range(c0, c1):
                d[c] = stage[c, j]


@njit(nogil=True, cache=True, inline="always")
def _to_phases(row, step, ti, tw, dst):
    """``dst[k, tc, :] = row[tc*step + k, :]`` (dst flat): one gathered row (column, channel) in phase layout,
    where phase k holds column k of every tile as one (tiles, C) vector."""
    n_c = row.shape[1]
    d2 = dst.reshape(ti * tw, n_c)
    for k in range(ti):
        for tc in range(tw):
            i, j = k * tw + tc, tc * step + k
            for c in range(np.uint64(n_c)):
                d2[i, c] = row[j, c]


@njit(nogil=True, cache=True, inline="always")
def _transform_strip(ring, order, k0, c0, ce, co, a, ti, src, tmp, out, t0, span):
    """One tile row's ``out[p*a + q, t0 + tc, :] = (L d L^T)[p, q]`` from the ring of gathered rows in phase
    layout: tile tc's rows are the slots ``order[k0:k0 + ti]``, its columns the phases ``c0..c0 + ti``.
    ``L`` is given by its :func:`paired_table` ``(ce, co)``; ``src`` is 8 ints of scratch, ``span`` the
    length of a phase (tiles x C)."""
    for k in range(8):                          # down the rows, for phases 0..c0 + ti: tmp = L @ rows
        src[k] = order[k0 + k] if k < ti else order[k0]        # unused sources: zero coefficients
    _paired_transform(ring, src, (c0 + ti) * span, ce, co, a, tmp, 0, 0)
    for k in range(8):                          # along the columns, a phase per column: out = tmp @ L^T
        src[k] = c0 + k if k < ti else c0
    rows = out.reshape(out.shape[0], out.shape[1] * out.shape[2])
    for p in range(a):
        _paired_transform(tmp[p].reshape(tmp.shape[1] // span, span), src, span, ce, co, a, rows, p * a,
                          t0 * out.shape[2])


@njit(nogil=True, cache=True)
def tiles_in(x, g0, g1, th, tw, step, off_h, off_w, lt, out, mask, lt2, out2):
    """``out[p*a + q, t, :] = (L d L^T)[p, q]`` for every tile t of the tile rows ``g0..g1``.

    ``x`` (N, C, H, W), read as ``x * (mask > 0)`` when ``mask`` has x's shape (a gradient through a
    ReLU; :data:`NO_MASK` otherwise).  Tile row g is row ``g % th`` of image ``g // th``; tile (tr, tc)
    is the ti x ti window at row ``tr*step - off_h``, column ``tc*step - off_w`` of ``x`` (zeros
    outside); ``lt`` (a, ti) is the transform; ``out`` (a*a, >= (g1-g0)*tw, C).  Per tile row: gather
    the ti input rows as (column, channel) and lay each out in phases (column k of every tile side by
    side, :func:`_to_phases`), apply L down the rows for the whole strip at once, then along the
    columns, where each column of the tiles is one contiguous phase.  Consecutive tile rows share
    ti - step input rows: the gathered rows live in a ring of ti slots (image row r in slot r mod ti),
    and only the new ones are gathered.

    A second transform ``lt2`` (a, ti2) into ``out2`` (when ``out2`` is not empty) reads the same
    gathered rows: its windows sit at row ``tr*step``, column ``tc*step``, inside the first ones (the
    weight gradient's transform of an output gradient whose input-gradient transform has padding 1).
    """
    n_c, h, w = x.shape[1], x.shape[2], x.shape[3]
    a, ti = lt.shape
    a2, ti2 = lt2.shape
    wb = (tw - 1) * step + ti
    span = tw * n_c
    row = np.zeros((wb, n_c), dtype=np.float32)
    ring = np.empty((ti, ti * span), dtype=np.float32)
    tmp = np.empty((a, ti * span), dtype=np.float32)
    tmp2 = np.empty((a2, ti * span), dtype=np.float32)    # phases 0..off_w + ti2 of the second transform
    held = np.full((ti, 2), -(1 << 30), dtype=np.int64)    # (image, row) in each slot
    s0 = min(wb, max(0, off_w))                         # buffer columns s0..s1 lie inside the image
    s1 = max(s0, min(wb, w + off_w))
    stage = np.empty((n_c, wb), dtype=np.float32)
    cb = _channel_block(n_c, wb)
    order = np.empty(ti, dtype=np.int64)
    src = np.empty(8, dtype=np.int64)
    ce, co = paired_table(lt)
    ce2, co2 = paired_table(lt2)
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
                ring[slot, :] = 0
                continue
            _gather_row(x, mask, n, r, off_w, s0, s1, cb, row, stage)
            _to_phases(row, step, ti, tw, ring[slot])
        t0 = (g - g0) * tw
        _transform_strip(ring, order, 0, 0, ce, co, a, ti, src, tmp, out, t0, span)
        if out2.shape[0] > 0:
            _transform_strip(ring, order, off_h, off_w, ce2, co2, a2, ti2, src, tmp2, out2, t0, span)


@njit(nogil=True, cache=True, inline="always")
def _inverse_coefs(ce, co, a, k):
    """Output rows 2k and 2k + 1 of ``AT`` as weights of ``(x0, S1, S3, S5)`` and ``(D1, D3, D5, x_last)``
    (see :func:`_inverse_transform`), zero where a < 8 has no third pair."""
    zero = np.float32(0)
    even = (ce[0, k], ce[1, k], ce[3, k], ce[5, k] if a == 8 else zero)
    odd = (co[1, k], co[3, k], co[5, k] if a == 8 else zero, co[a - 1, k])
    return even, odd


@njit(nogil=True, cache=True, inline="always")
def _dot4(c, x0, x1, x2, x3):
    """``c . (x0, x1, x2, x3)`` for a tuple ``c`` of four weights."""
    return c[0] * x0 + c[1] * x1 + c[2] * x2 + c[3] * x3


@njit(nogil=True, cache=True)
def _inverse_transform(src, s, s_off, n, ce, co, a, dst, d0, dstep):
    """``dst[d0 + p*dstep, i] = sum_r AT[p, r] src[s[r], s_off + i]`` for p < m = a - 2 and i < n, from the
    :func:`paired_table` ``(ce, co)`` of ``A = AT^T``; ``s[7]`` is the source of the last column (the
    point at infinity), ``s[1..6]`` those of the +-p pairs (zero-weighted repeats where a < 8).

    The columns of ``AT`` pair as the rows of ``A`` do: the even rows of ``AT`` weigh the sums
    ``S = x[2j-1] + x[2j]`` of each pair (and the point 0), the odd rows their differences ``D`` (and
    the point at infinity).  All m rows come from one loop over eight loads, written out per m as in
    :func:`_paired_transform`; the indices are unsigned, which spares each element the negative-index
    check that would stop the vectorisation.
    """
    e0, o0 = _inverse_coefs(ce, co, a, 0)
    e1, o1 = _inverse_coefs(ce, co, a, 1)
    e2, o2 = _inverse_coefs(ce, co, a, 2)
    r0, r1, r2, r3, r4, r5, r6, r7 = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
    off = np.uint64(s_off)
    if a == 8:
        for i in range(np.uint64(n)):
            j = off + i
            x0, x1, x2, x3, x4 = src[r0, j], src[r1, j], src[r2, j], src[r3, j], src[r4, j]
            x5, x6, x7 = src[r5, j], src[r6, j], src[r7, j]
            s1, s3, s5, d1, d3, d5 = x1 + x2, x3 + x4, x5 + x6, x1 - x2, x3 - x4, x5 - x6
            dst[d0, i] = _dot4(e0, x0, s1, s3, s5)
            dst[d0 + dstep, i] = _dot4(o0, d1, d3, d5, x7)
            dst[d0 + 2 * dstep, i] = _dot4(e1, x0, s1, s3, s5)
            dst[d0 + 3 * dstep, i] = _dot4(o1, d1, d3, d5, x7)
            dst[d0 + 4 * dstep, i] = _dot4(e2, x0, s1, s3, s5)
            dst[d0 + 5 * dstep, i] = _dot4(o2, d1, d3, d5, x7)
    elif a == 6:
        for i in range(np.uint64(n)):
            j = off + i
            x0, x1, x2, x3, x4, x7 = src[r0, j], src[r1, j], src[r2, j], src[r3, j], src[r4, j], src[r7, j]
            s1, s3, d1, d3 = x1 + x2, x3 + x4, x1 - x2, x3 - x4
            zero = np.float32(0)
            dst[d0, i] = _dot4(e0, x0, s1, s3, zero)
            dst[d0 + dstep, i] = _dot4(o0, d1, d3, zero, x7)
            dst[d0 + 2 * dstep, i] = _dot4(e1, x0, s1, s3, zero)
            dst[d0 + 3 * dstep, i] = _dot4(o1, d1, d3, zero, x7)
    else:
        for i in range(np.uint64(n)):
            j = off + i
            x0, x1, x2, x7 = src[r0, j], src[r1, j], src[r2, j], src[r7, j]
            zero = np.float32(0)
            dst[d0, i] = _dot4(e0, x0, x1 + x2, zero, zero)
            dst[d0 + dstep, i] = _dot4(o0, x1 - x2, zero, zero, x7)


@njit(nogil=True, cache=True)
def tiles_out(mm, g0, g1, th, tw, at, bias, has_bias, relu, y):
    """Rows of ``y`` (N, O, OH, OW) from ``mm`` (a*a, tiles, O): each tile's ``AT M A``, cropped, plus bias,
    and with ``relu`` through max(., 0) as it is written (a separate ReLU would read and write y again).

    Per tile row: ``AT`` over the first position index, then over the second, each for the whole row
    of tiles at once (contiguous (tiles, O) vectors, :func:`_inverse_transform`), then the cropped
    pixels are written out.
    """
    n_o, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    m, a = at.shape
    ce, co = paired_table(np.ascontiguousarray(at.T))
    span = tw * n_o
    tmp = np.empty((m * a, span), dtype=np.float32)     # tmp[p*a + j] = (AT @ M)[p, j] for the tile row
    buf = np.empty((m * m, span), dtype=np.float32)     # buf[p*m + q, tc*O + o] = tile tc's pixel (p, q)
    rows = mm.reshape(a * a, mm.shape[1] * n_o)
    pos = np.empty(8, dtype=np.int64)                   # the positions in pair order, the last one in 7
    for r in range(8):
        pos[r] = r if r < a - 1 else 0
    pos[7] = a - 1
    s = np.empty(8, dtype=np.int64)
    bias_row = bias if has_bias else np.zeros(n_o, dtype=np.float32)
    cb = _channel_block(n_o, oh * ow)
    for g in range(g0, g1):
        n = g // th
        r0 = (g - n * th) * m
        t0 = (g - g0) * tw
        for j in range(a):                          # tmp = AT @ M over the first position index
            for r in range(8):
                s[r] = pos[r] * a + j
            _inverse_transform(rows, s, t0 * n_o, span, ce, co, a, tmp, j, a)
        for p in range(m):                          # buf = tmp @ A over the second index
            for r in range(8):
                s[r] = p * a + pos[r]
            _inverse_transform(tmp, s, 0, span, ce, co, a, buf, p * m, 1)
        prow = min(m, oh - r0)
        plane = y[n]
        for p in range(prow):
            # Each output pixel's channels are contiguous in buf: read them in order and write each to
            # its channel's plane.  Scattered stores wait in the store buffer where scattered loads
            # stall: VDSR's layer, one thread, 1.8-2.1 ms against 4.1-4.3 writing each channel's row
            # from loads O floats apart.  ``cb`` channels at a time: see :func:`_channel_block`.
            for o0 in range(0, n_o, cb):
                o1 = min(n_o, o0 + cb)
                for col in range(ow):
                    tc, q = col // m, col % m
                    src = buf[p * m + q, tc * n_o:(tc + 1) * n_o]
                    if relu:
                        for o in range(np.uint64(o0), np.uint64(o1)):
                            plane[o, r0 + p, col] = max(src[o] + bias_row[o], np.float32(0))
                    else:
                        for o in range(np.uint64(o0), np.uint64(o1)):
                            plane[o, r0 + p, col] = src[o] + bias_row[o]


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
