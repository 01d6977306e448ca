"""Winograd F(2x2,3x3), F(4x4,3x3) and F(6x6,3x3) on the CPU: Numba tile transforms around batched
OpenBLAS GEMMs.

The algorithm and its NumPy twin are in :class:`tinysr.functional.conv_reference.WinogradImpl`; this
module computes the same maps for float32 arrays.  Output tiles are m x m pixels (m = 2, 4 or 6), input
tiles a x a (a = m + 2).  For one chunk of tiles:

1. :func:`~.winograd_transforms.tiles_in` (the input transform) reads, for one row of tiles, the a
   input rows of every channel into a small buffer -- in cache -- laid out by *phase*: phase k of a row
   holds column k of every tile, all channels, as one contiguous (tiles, C) vector.  It writes
   ``V[xi, tile, :] = (BT d B)[xi]`` for all tiles and channels of the row at once: down the rows,
   then along the columns, each pass a loop over long contiguous vectors, which the compiler turns
   into SIMD.  Zero padding and the overhang of the last tiles are read as zeros; no padded copy of
   the image is made.
2. One GEMM per position xi (a*a of them): ``M[xi] (tiles, O) = V[xi] (tiles, C) @ U[xi] (C, O)``,
   where ``U = G w G^T`` is the transformed filter (cached per weight version).
3. :func:`~.winograd_transforms.tiles_out` (the inverse transform) computes ``AT M A`` for every tile,
   a row of tiles at a time, crops the overhang, adds the bias (and applies a fused ReLU) and writes
   the NCHW output.

The transforms are Numba kernels in :mod:`.winograd_transforms`; this module cuts the work into
chunks and runs the GEMMs.

The weight gradient stays in the Winograd domain: the output gradient goes through the adjoint of
the inverse transform (``tiles_in`` with ``A`` in place of ``BT``, tiles of m pixels),
``dU[xi] += V[xi]^T @ dM[xi]`` sums over the chunks, and ``dW = G^T dU G`` at the end.  The input
gradient is the forward algorithm on the flipped, transposed filters with padding 2 - p; with padding 1
its tiles are the output gradient's, and :meth:`NumbaWinogradImpl.backward_fused` computes all the
gradients in one pass over the chunks: one gather of the output gradient (masked by a fused ReLU's
output as it is read) feeds both of its transforms, and the bias gradient falls out of the weight
gradient's transform.  The filter transforms run three times a layer: a training step changes every
weight.

Work is cut into chunks of whole tile rows (:data:`chunk_budget` bytes of V), and each thread of
:func:`.threads.run_parallel` runs its chunks through all three steps with its own buffers and a
single-threaded BLAS: the buffers stay small, and there is one synchronisation per layer.  Only
float32 NumPy arrays reach the kernels; anything else goes to the NumPy twin.
"""
import numpy as np

from tinysr.functional.conv_reference import WinogradImpl, filter_cache, winograd_matrices, winograd_tiles

from . import memory, threads
from .pointwise import bias_grad
from .winograd_transforms import (NO_LT, NO_MASK, NO_OUT, check_paired, filter_gradient, filter_transform,
                                  tiles_in, tiles_out)

#: Bytes of transformed input per chunk: with the GEMM output beside it (as large for O = C), a chunk
#: stays within a core's share of L3 (it is twice the 1 MiB L2 of the benchmark machine's cores) while
#: each of the a*a GEMMs still gets about a hundred rows.  Training steps with 2 threads, medians of
#: interleaved repetitions: VDSR 0.62-0.68 s at 1 MiB, 0.74-0.85 at 2 MiB, 0.82-1.09 at 4 MiB;
#: EDSR-baseline x2 1.77-1.86 / 1.67-1.91 / 2.22-2.38 s.  Smaller chunks, down to 256 KiB, were no
#: faster on VDSR's layer at one thread (forward 14.0-16.8 ms, both gradients 29.7-36.4, within noise).
chunk_budget = 1 << 20


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
        check_paired(self.bt)
        check_paired(self.a_mat)

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
