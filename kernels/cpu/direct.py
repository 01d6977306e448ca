"""Direct convolution for layers with few output channels (SRCNN's 32->1 5x5 output layer, VDSR's
64->1, EDSR's 64->3 and SRResNet's 9x9 64->3 tails).

Through im2col such a layer is a GEMM with 1-3 rows: all the cost is building a column matrix
kh*kw times larger than the input (172 MiB for SRCNN's last layer at batch 128) that is then read
once.  Here every output value is accumulated straight from the input instead.  The loops are
ordered so that the innermost one walks a contiguous row of the input and of the output (``j``),
which LLVM vectorises.  Two layouts of the work, by plane size (:data:`rows_min_pixels`):

* **small planes** (training patches of SRCNN and VDSR): the output plane of one (sample, channel)
  stays in L1 while all C*kh*kw taps are added into it; the input is zero-padded first, the input
  gradient is written padded (``gxp``) and cropped by the caller a slice of the batch at a time, and
  the weight gradient is one long dot product per weight that visits only the output positions whose
  input pixel lies inside the image;
* **large planes** (SRResNet's and EDSR's tails on 96x96 patches, whole images): blocks of output rows
  for up to three output channels, which share every input row they load and pad the rows they read
  themselves; the input gradient is the same forward pass on the padded output gradient with the
  filters turned by 180 degrees; the weight gradient goes row by row inside a small padded plane.

Neither layout makes a padded copy of a whole batch for the gradients (for EDSR-baseline's tail, 64
channels of 96x96 at batch 16, padded copies of the input and of its gradient would add 115 MiB to the
peak of a training step).  Twin: :class:`tinysr.functional.conv.NumpyConvImpl` (the same three maps via
im2col + GEMM).
"""
import numpy as np
from numba import njit, prange

from .im2col import _valid_range


# Output planes larger than this (in pixels) go through :func:`_forward_rows`.  A 21x21 training patch
# fits L1 whole; a 256x256 inference plane (256 KiB) does not, and with one sample and one output
# channel the per-plane kernel would also run on a single thread.
rows_min_pixels = 4096
row_block_floats = 2048     # output floats per row block of _forward_rows: 8 KiB, well inside L1


@njit(inline="always", fastmath=True)
def _add_taps(yr, xr, w_row, ow):
    """``yr[j] += sum_v w_row[v] * xr[j + v]`` for the kw taps of one filter row (stride 1).

    Three taps per pass over ``yr``: each pass loads and stores the output row once for three
    multiply-adds, where one pass per tap spent a load and a store on each (2.2x faster on SRResNet's
    9x9 tail at 96x96; on rows of 21-41 pixels the three row views cost more than they save, so
    :func:`_forward_planes` keeps one tap per pass).
    """
    kw = w_row.shape[0]
    v = 0
    while v + 3 <= kw:
        a0, a1, a2 = w_row[v], w_row[v + 1], w_row[v + 2]
        s0, s1, s2 = xr[v:v + ow], xr[v + 1:v + 1 + ow], xr[v + 2:v + 2 + ow]
        for j in range(ow):
            yr[j] += a0 * s0[j] + a1 * s1[j] + a2 * s2[j]
        v += 3
    while v < kw:
        a0 = w_row[v]
        s0 = xr[v:v + ow]
        for j in range(ow):
            yr[j] += a0 * s0[j]
        v += 1


def forward(x, w, bias, has_bias, sh, sw, ph, pw, y):
    """y (N, O, OH, OW) = conv(x, w) + bias, with ``x`` (N, C, H, W) zero-padded by (ph, pw).

    Small planes: one task per (sample, output channel), on a zero-padded copy of the input.  Large
    planes: one task per block of rows, which pads the rows it reads itself (no padded copy of the
    whole input: 44 MiB for SRResNet's tail at batch 16)."""
    oh, ow = y.shape[2], y.shape[3]
    if oh * ow > rows_min_pixels:
        _forward_rows(x, w, bias, has_bias, sh, sw, ph, pw, max(1, min(oh, row_block_floats // ow)), y)
    elif ph == 0 and pw == 0:
        _forward_planes(np.ascontiguousarray(x), w, bias, has_bias, sh, sw, y)
    else:
        _forward_planes(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), w, bias, has_bias, sh, sw, y)


@njit(parallel=True, fastmath=True, cache=True)
def _forward_planes(xp, w, bias, has_bias, sh, sw, y):
    """One task per output plane, kept in L1 while all C*kh*kw taps sweep it (small training patches)."""
    n_b, c_in = xp.shape[0], xp.shape[1]
    o_ch, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    for t in prange(n_b * o_ch):
        n = t // o_ch
        o = t - n * o_ch
        b = bias[o] if has_bias else 0.0
        for i in range(oh):
            for j in range(ow):
                y[n, o, i, j] = b
        for c in range(c_in):
            for u in range(kh):
                for v in range(kw):
                    wv = w[o, c, u, v]
                    for i in range(oh):
                        r = i * sh + u
                        if sw == 1:
                            for j in range(ow):
                                y[n, o, i, j] += wv * xp[n, c, r, j + v]
                        else:
                            for j in range(ow):
                                y[n, o, i, j] += wv * xp[n, c, r, j * sw + v]


@njit(inline="always", fastmath=True)
def _add_taps_3(y0, y1, y2, xr, w0, w1, w2, ow):
    """:func:`_add_taps` for three output channels at once: ``y_k[j] += sum_v w_k[v] * xr[j + v]``.

    Each input value loaded feeds three channels' multiply-adds, so a pass over the row does nine
    multiply-adds for three input loads and three output loads and stores (one tap of one channel
    per pass would do one multiply-add for two loads and a store)."""
    kw = w0.shape[0]
    v = 0
    while v + 3 <= kw:
        a0, a1, a2 = w0[v], w0[v + 1], w0[v + 2]
        b0, b1, b2 = w1[v], w1[v + 1], w1[v + 2]
        c0, c1, c2 = w2[v], w2[v + 1], w2[v + 2]
        s0, s1, s2 = xr[v:v + ow], xr[v + 1:v + 1 + ow], xr[v + 2:v + 2 + ow]
        for j in range(ow):
            x0, x1, x2 = s0[j], s1[j], s2[j]
            y0[j] += a0 * x0 + a1 * x1 + a2 * x2
            y1[j] += b0 * x0 + b1 * x1 + b2 * x2
            y2[j] += c0 * x0 + c1 * x1 + c2 * x2
        v += 3
    while v < kw:
        a0, b0, c0 = w0[v], w1[v], w2[v]
        s0 = xr[v:v + ow]
        for j in range(ow):
            x0 = s0[j]
            y0[j] += a0 * x0
            y1[j] += b0 * x0
            y2[j] += c0 * x0
        v += 1


@njit(parallel=True, fastmath=True, cache=True)
def _forward_rows(x, w, bias, has_bias, sh, sw, ph, pw, rb, y):
    """One task per block of ``rb`` output rows of up to three output planes (a group), so a single
    large image keeps both threads busy and the block stays in L1 while the C*kh*kw taps are added into
    it.  For each input channel the task copies the input rows under its block into a small zero-padded
    buffer of its own, so no padded copy of the whole input is made.  A group of three output channels
    shares every input row it loads (:func:`_add_taps_3`); the channels left over (O not a multiple of
    3) and strided layers go one channel at a time.  Each tap sweeps one row through 0-indexed row views:
    ``y[n, o, i, j]`` with ``i`` starting at a computed block offset would keep Numba's negative-index
    test in the inner loop and stop it vectorising."""
    n_b, c_in, h, wd = x.shape
    o_ch, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    n_blk = (oh + rb - 1) // rb
    n_grp = (o_ch + 2) // 3
    buf_w = (ow - 1) * sw + kw
    for t in prange(n_b * n_grp * n_blk):
        blk = t % n_blk
        n = t // (n_grp * n_blk)
        o0 = ((t // n_blk) % n_grp) * 3
        o1 = min(o_ch, o0 + 3)
        i0 = blk * rb
        i1 = min(oh, i0 + rb)
        buf = np.zeros(((i1 - i0 - 1) * sh + kh, buf_w), dtype=np.float32)
        for o in range(o0, o1):
            b = bias[o] if has_bias else 0.0
            for i in range(i0, i1):
                yr = y[n, o, i]
                for j in range(ow):
                    yr[j] = b
        for c in range(c_in):
            for a in range(buf.shape[0]):      # the padded input rows i0*sh - ph + a, zero outside the image
                r = i0 * sh - ph + a
                dst = buf[a]
                if r < 0 or r >= h:
                    continue                   # stays zero from the allocation
                src = x[n, c, r]
                for q in range(buf_w):
                    col = q - pw
                    dst[q] = src[col] if 0 <= col < wd else 0.0
            if o1 - o0 == 3 and sw == 1:
                for i in range(i0, i1):
                    for u in range(kh):
                        _add_taps_3(y[n, o0, i], y[n, o0 + 1, i], y[n, o0 + 2, i], buf[(i - i0) * sh + u],
                                    w[o0, c, u], w[o0 + 1, c, u], w[o0 + 2, c, u], ow)
                continue
            for o in range(o0, o1):
                for u in range(kh):
                    for i in range(i0, i1):
                        yr = y[n, o, i]
                        xr = buf[(i - i0) * sh + u]
                        if sw == 1:
                            _add_taps(yr, xr, w[o, c, u], ow)
                            continue
                        for v in range(kw):
                            wv = w[o, c, u, v]
                            for j in range(ow):
                                yr[j] += wv * xr[j * sw + v]


def backward_data_rows(gy, w, ph, pw, gx):
    """gx (N, C, H, W) = the adjoint in x of a stride-1 :func:`forward` with padding (ph, pw) < (kh, kw),
    computed *as* a forward convolution: the output gradient zero-padded by (kh-1-ph, kw-1-pw), correlated
    with the filters turned by 180 degrees and with input and output channels swapped.  With C output
    channels of large planes this runs on :func:`_forward_rows` (several taps per pass over each row);
    :func:`backward_data` adds one tap per pass over a whole padded plane, which on SRResNet's 96x96
    tail planes no longer fits L1.  ``gx`` is the cropped gradient: no padded copy of it is made."""
    kh, kw = w.shape[2], w.shape[3]
    w_turned = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    forward(np.ascontiguousarray(gy), w_turned, np.zeros(1, dtype=np.float32), False, 1, 1, kh - 1 - ph, kw - 1 - pw, gx)


@njit(parallel=True, fastmath=True, cache=True)
def backward_data(gy, w, sh, sw, gxp):
    """gxp (N, C, Hp, Wp) = the adjoint in x of :func:`forward` (overwritten; padding border included)."""
    n_b, c_in = gxp.shape[0], gxp.shape[1]
    o_ch, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    hp, wp = gxp.shape[2], gxp.shape[3]
    for t in prange(n_b * c_in):
        n = t // c_in
        c = t - n * c_in
        for a in range(hp):
            for b in range(wp):
                gxp[n, c, a, b] = 0.0
        for o in range(o_ch):
            for u in range(kh):
                for v in range(kw):
                    wv = w[o, c, u, v]
                    for i in range(oh):
                        r = i * sh + u
                        if sw == 1:
                            for j in range(ow):
                                gxp[n, c, r, j + v] += wv * gy[n, o, i, j]
                        else:
                            for j in range(ow):
                                gxp[n, c, r, j * sw + v] += wv * gy[n, o, i, j]


def backward_weight(x, gy, sh, sw, ph, pw, gw):
    """gw (O, C, kh, kw) = sum over samples and positions of gy * the matching window of ``x`` (N, C, H, W),
    zero-padded by (ph, pw) implicitly.

    Stride 1 on planes larger than ``rows_min_pixels`` (SRResNet's and EDSR's tails on 96x96 training
    patches) goes row by row (:func:`_backward_weight_rows`); small planes (SRCNN's 21x21) one weight
    at a time (:func:`_backward_weight_taps`).
    """
    if sh == 1 and sw == 1 and gy.shape[2] * gy.shape[3] > rows_min_pixels:
        _backward_weight_rows(x, gy, ph, pw, gw)
    else:
        _backward_weight_taps(x, gy, sh, sw, ph, pw, gw)


@njit(parallel=True, fastmath=True, cache=True)
def _backward_weight_taps(x, gy, sh, sw, ph, pw, gw):
    """One task per weight: a long dot product over N*OH*OW values.  The inner loop runs over 1-D views
    indexed from 0 -- indexing ``x[..., j + v - pw]`` with an offset that may be negative would keep
    Numba's negative-index wraparound test in the loop, and LLVM would not vectorise it.  For stride 1
    both views are contiguous slices.
    """
    n_b, h, wd = x.shape[0], x.shape[2], x.shape[3]
    o_ch, c_in, kh, kw = gw.shape
    oh, ow = gy.shape[2], gy.shape[3]
    for t in prange(o_ch * c_in * kh * kw):
        v = t % kw
        u = (t // kw) % kh
        c = (t // (kh * kw)) % c_in
        o = t // (c_in * kh * kw)
        i0, i1 = _valid_range(h, u, sh, ph, oh)
        j0, j1 = _valid_range(wd, v, sw, pw, ow)
        # One partial sum per output column, summed once at the end: a horizontal reduction after every
        # row (SRCNN's rows are 21 pixels) cost more than the row's multiply-adds.
        acc = np.zeros(max(0, j1 - j0), dtype=np.float32)
        for n in range(n_b):
            for i in range(i0, i1):
                row = x[n, c, i * sh + u - ph]
                g = gy[n, o, i, j0:j1]
                if sw == 1:
                    src = row[j0 + v - pw:j1 + v - pw]
                    for k in range(j1 - j0):
                        acc[k] += g[k] * src[k]
                else:
                    for k in range(j1 - j0):
                        acc[k] += g[k] * row[(j0 + k) * sw + v - pw]
        gw[o, c, u, v] = acc.sum()


@njit(inline="always", fastmath=True)
def _dot_taps_3(acc0, acc1, acc2, u, g0, g1, g2, row, ow):
    """``acc_k[u, v] += sum_j g_k[j] * row[j + v]`` for every tap v and three output channels' gradient
    rows ``g_k``: three taps per pass, and every input value loaded feeds three channels' sums (nine
    sums per pass)."""
    kw = acc0.shape[1]
    v = 0
    while v + 3 <= kw:
        p0, p1, p2 = row[v:v + ow], row[v + 1:v + 1 + ow], row[v + 2:v + 2 + ow]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        b0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        c0 = np.float32(0.0)
        c1 = np.float32(0.0)
        c2 = np.float32(0.0)
        for k in range(ow):
            x0, x1, x2 = p0[k], p1[k], p2[k]
            e, f, h = g0[k], g1[k], g2[k]
            a0 += e * x0
            a1 += e * x1
            a2 += e * x2
            b0 += f * x0
            b1 += f * x1
            b2 += f * x2
            c0 += h * x0
            c1 += h * x1
            c2 += h * x2
        acc0[u, v] += a0
        acc0[u, v + 1] += a1
        acc0[u, v + 2] += a2
        acc1[u, v] += b0
        acc1[u, v + 1] += b1
        acc1[u, v + 2] += b2
        acc2[u, v] += c0
        acc2[u, v + 1] += c1
        acc2[u, v + 2] += c2
        v += 3
    while v < kw:
        p0 = row[v:v + ow]
        a0 = np.float32(0.0)
        b0 = np.float32(0.0)
        c0 = np.float32(0.0)
        for k in range(ow):
            x0 = p0[k]
            a0 += g0[k] * x0
            b0 += g1[k] * x0
            c0 += g2[k] * x0
        acc0[u, v] += a0
        acc1[u, v] += b0
        acc2[u, v] += c0
        v += 1


@njit(parallel=True, fastmath=True, cache=True)
def _backward_weight_rows(x, gy, ph, pw, gw):
    """Stride-1 weight gradient, one task per (group of up to three output channels, input channel).
    Each sample's input plane is copied into a zero-padded plane local to the task (so every tap's
    window is a whole row, with no range to clip), then every output-gradient row meets the kh padded
    rows under it in kh*kw dot products, three taps per pass and three output channels per loaded input
    value (:func:`_dot_taps_3`; a group of one or two channels repeats a row).  The rows stay in L1 while all taps read them, where one task per weight
    streams the whole batch from memory once per tap.  Each row's dot product is summed in float32
    (vectorised) and added to a float64 total per tap, so sums over N*OH rows lose no precision to their
    length."""
    n_b, h, wd = x.shape[0], x.shape[2], x.shape[3]
    o_ch, c_in, kh, kw = gw.shape
    oh, ow = gy.shape[2], gy.shape[3]
    n_grp = (o_ch + 2) // 3
    for t in prange(n_grp * c_in):
        o0 = (t // c_in) * 3
        o1 = min(o_ch, o0 + 3)
        c = t % c_in
        acc = np.zeros((3, kh, kw), dtype=np.float64)
        xp = np.zeros((h + 2 * ph, wd + 2 * pw), dtype=np.float32)
        for n in range(n_b):
            for a in range(h):
                xr = x[n, c, a]
                dst = xp[a + ph]
                for b in range(wd):
                    dst[b + pw] = xr[b]
            for i in range(oh):
                for u in range(kh):
                    r = i + u - ph
                    if r < 0 or r >= h:
                        continue        # a row of the zero border adds nothing
                    row = xp[i + u]
                    # a group of one or two channels repeats its last row; the repeats' sums are not written
                    _dot_taps_3(acc[0], acc[1], acc[2], u, gy[n, o0, i], gy[n, min(o0 + 1, o1 - 1), i],
                                gy[n, min(o0 + 2, o1 - 1), i], row, ow)
        for o in range(o0, o1):
            for u in range(kh):
                for v in range(kw):
                    gw[o, c, u, v] = acc[o - o0, u, v]
