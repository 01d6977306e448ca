"""A tiled shared-memory GEMM kernel: the teaching piece of the GPU backend.

tinysr multiplies matrices on the GPU with ``cupy.matmul`` (cuBLAS), which is tuned per GPU by
NVIDIA and hard to beat.  This kernel shows the one idea that gets a hand-written GEMM within
reach of it -- *tiling through shared memory* -- in about thirty lines, and ``benchmarks/gpu.py``
measures how far it stays behind cuBLAS.

The naive kernel gives each thread one element ``C[i, j]`` and lets it read row i of A and column j
of B from global memory: 2*K loads per 2*K flops, and the same A row is loaded by every thread of
that row.  Global memory is ~100x slower than the arithmetic, so the naive kernel waits on memory.

Tiled: a block of TILE x TILE threads owns a TILE x TILE tile of C.  It walks along K one TILE at a
time; at each step every thread loads *one* element of A's tile and *one* of B's tile into shared
memory (on-chip, next to the cores), the block synchronises, and then each thread does TILE
multiply-adds reading only shared memory.  Each global load is reused TILE times.  (cuBLAS goes
further: each thread computes a small register tile, loads are vectorised and double-buffered, and
on recent GPUs tensor cores do the products -- TF32 for float32 when allowed.)

Batches and transposes.  The kernel computes ``C[b] = op(A[b]) @ op(B[b])`` for a batch (blockIdx.z
picks b; a batch of 1 broadcasts, like ``matmul``), where ``op`` is an optional transpose -- read
with swapped indices rather than copied, as BLAS's ``transa``/``transb`` flags do.  With
``reduce_batch`` it instead sums over the batch, ``C = sum_b op(A[b]) @ op(B[b])``: the weight
gradient of a convolution is exactly that sum over images.
"""
import math
from functools import lru_cache

import numpy as np
from numba import cuda

from . import _runtime as rt


@lru_cache(maxsize=None)
def sgemm_kernel(tile, dtype=np.float32):
    """Compile (once per tile size and dtype) the tiled GEMM kernel for TILE x TILE thread blocks.

    Thread (ty, tx) of block (bx, by, bz) computes ``C[bz, by*TILE + ty, bx*TILE + tx]``.  The tile
    size fixes the shared arrays' shape, which CUDA needs at compile time, hence this factory.
    16 (256 threads, 2 KiB of shared memory per operand in float32) suits every NVIDIA GPU; the
    simulator uses 4 so that each block is 16 Python threads.
    """
    nb_type = rt.numba_dtype(dtype)

    @cuda.jit
    def kernel(a, b, c, m, n, k, trans_a, trans_b, n_batch, reduce_batch, zero):
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        tile_a = cuda.shared.array((tile, tile), nb_type)
        tile_b = cuda.shared.array((tile, tile), nb_type)
        if reduce_batch:
            b_first, b_last = 0, n_batch
        else:
            b_first, b_last = cuda.blockIdx.z, cuda.blockIdx.z + 1
        acc = zero
        for bi in range(b_first, b_last):
            ia = bi if a.shape[0] > 1 else 0  # a batch of one is shared by all (broadcast)
            ib = bi if b.shape[0] > 1 else 0
            for k0 in range(0, k, tile):
                # Each thread fetches one element of each tile; threads past the matrix edge store 0
                # so that the inner loop needs no bounds checks.
                ka = k0 + tx
                if row < m and ka < k:
                    tile_a[ty, tx] = a[ia, ka, row] if trans_a else a[ia, row, ka]
                else:
                    tile_a[ty, tx] = zero
                kb = k0 + ty
                if kb < k and col < n:
                    tile_b[ty, tx] = b[ib, col, kb] if trans_b else b[ib, kb, col]
                else:
                    tile_b[ty, tx] = zero
                cuda.syncthreads()  # the whole tile must be loaded before anyone reads it
                for kk in range(tile):
                    acc += tile_a[ty, kk] * tile_b[kk, tx]
                cuda.syncthreads()  # ... and fully used before the next iteration overwrites it
        if row < m and col < n:
            c[cuda.blockIdx.z, row, col] = acc

    return kernel


def default_tile():
    return 4 if rt.simulator_enabled() else 16


def _as3d(x):
    x = rt.contiguous(x)
    return x if x.ndim == 3 else x.reshape((1,) + tuple(x.shape))


def sgemm(a, b, trans_a=False, trans_b=False, reduce_batch=False, tile=None):
    """``op(a) @ op(b)`` with the tiled kernel; ``op`` transposes the last two axes when asked.

    ``a`` is (M, K) or (Ba, M, K) (or (K, M) / (Ba, K, M) with ``trans_a``), likewise ``b``
    (K, N) or (Bb, K, N); batches broadcast as in ``matmul`` (Ba, Bb equal or 1).  Returns (M, N)
    when neither operand has a batch axis or with ``reduce_batch`` (sum over the batch), else
    (B, M, N).  Launch: grid (ceil(N/TILE), ceil(M/TILE), B) of TILE x TILE blocks.
    Inputs are made contiguous first (a transpose is better expressed with ``trans_a/trans_b``).
    """
    tile = tile or default_tile()
    batched = a.ndim == 3 or b.ndim == 3
    a3, b3 = _as3d(a), _as3d(b)
    dtype = rt.check_float(a3, b3)
    m, ka = (a3.shape[2], a3.shape[1]) if trans_a else (a3.shape[1], a3.shape[2])
    kb, n = (b3.shape[2], b3.shape[1]) if trans_b else (b3.shape[1], b3.shape[2])
    if ka != kb:
        raise ValueError(f"sgemm: inner dimensions differ ({ka} vs {kb}) for shapes {tuple(a.shape)}, "
                         f"{tuple(b.shape)} (trans_a={trans_a}, trans_b={trans_b})")
    n_batch = max(a3.shape[0], b3.shape[0])
    if a3.shape[0] not in (1, n_batch) or b3.shape[0] not in (1, n_batch):
        raise ValueError(f"sgemm: batch sizes {a3.shape[0]} and {b3.shape[0]} do not broadcast")
    out_batch = 1 if reduce_batch else n_batch
    c = rt.empty((out_batch, m, n), dtype, like=a3)
    grid = (math.ceil(n / tile), math.ceil(m / tile), out_batch)
    sgemm_kernel(tile, dtype)[grid, (tile, tile), rt.stream_for(a3)](
        rt.kernel_arg(a3), rt.kernel_arg(b3), rt.kernel_arg(c), m, n, ka, bool(trans_a), bool(trans_b),
        n_batch, bool(reduce_batch), dtype.type(0))
    if reduce_batch or not batched:
        return c.reshape((m, n))
    return c
