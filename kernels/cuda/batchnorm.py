"""BatchNorm statistics on the GPU: per-channel sum and sum of squares in one pass.

Batch normalisation in training needs, for each channel c, the mean and variance over N, H and W.
The NumPy twin (:class:`tinysr.functional.norm.BatchNorm`) calls ``x.mean`` and ``x.var``: two
passes over the tensor.  Here one pass collects ``S1 = sum x`` and ``S2 = sum x^2`` per channel, and
then ``mean = S1/m``, ``var = S2/m - mean^2`` (m = N*H*W).

That formula loses digits when the mean is large compared with the spread (it subtracts two nearly
equal numbers), so the sums are kept in float64 whatever the input's precision: for float32
activations that is exact enough, and the extra cost is nil in a kernel limited by memory reads.
"""
import math
from functools import lru_cache

import numpy as np
from numba import cuda, float64

from . import _runtime as rt
from .bias_act import block_sum_pair, reduction_grid


@lru_cache(maxsize=None)
def _stats_kernel(tpb):
    """Compile (once per block size) the statistics kernel.

    Grid: (blocks_per_channel, C) blocks of ``tpb`` threads.  The same reduction scheme as the fused
    bias backward (see ``bias_act._backward_kernel``): registers, then a shared-memory tree per
    block, then one atomic add per block into the channel's float64 total.
    """

    @cuda.jit
    def kernel(x, s1, s2, n_img, c_in, hw):
        c = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        part1 = cuda.shared.array(tpb, float64)
        part2 = cuda.shared.array(tpb, float64)
        acc1 = 0.0
        acc2 = 0.0
        m = n_img * hw
        for e in range(cuda.blockIdx.x * tpb + tid, m, cuda.gridDim.x * tpb):
            v = float64(x[((e // hw) * c_in + c) * hw + e % hw])
            acc1 += v
            acc2 += v * v
        part1[tid] = acc1
        part2[tid] = acc2
        block_sum_pair(part1, part2, tid, tpb)
        if tid == 0:
            cuda.atomic.add(s1, c, part1[0])
            cuda.atomic.add(s2, c, part2[0])

    return kernel


def batchnorm_stats(x):
    """Per-channel ``(sum, sum of squares)`` of ``x`` (N, C, H, W) or (N, C), as two float64 (C,) arrays.

    Launch: a (blocks_per_channel, C) grid; each block reduces a slice of one channel (see
    ``_stats_kernel``).  ``x`` may be a strided view.
    """
    if x.ndim not in (2, 4):
        raise ValueError(f"batchnorm_stats needs (N, C, H, W) or (N, C), got {tuple(x.shape)}")
    x = rt.contiguous(x)
    rt.check_float(x)
    n, c = x.shape[:2]
    hw = int(np.prod(x.shape[2:])) if x.ndim == 4 else 1
    s1 = rt.zeros((c,), np.float64, like=x)
    s2 = rt.zeros((c,), np.float64, like=x)
    tpb = rt.threads_per_block()
    grid = (reduction_grid(n * hw, c, tpb), c)
    _stats_kernel(tpb)[grid, tpb, rt.stream_for(x)](rt.kernel_arg(rt.flat(x)), rt.kernel_arg(s1),
                                                    rt.kernel_arg(s2), n, c, hw)
    return s1, s2


def batchnorm_mean_var(x):
    """Per-channel mean and biased variance (float64) of a CuPy array, from :func:`batchnorm_stats`.

    The arithmetic on the two (C,) vectors is CuPy's (tiny); the pass over ``x`` is the kernel.
    Needs CuPy arrays (Numba device arrays have no arithmetic): use ``batchnorm_stats`` for those.
    """
    if not rt.is_cupy(x):
        raise TypeError("batchnorm_mean_var needs a CuPy array; use batchnorm_stats for Numba device arrays")
    s1, s2 = batchnorm_stats(x)
    m = x.size // x.shape[1]
    mean = s1 / m
    var = s2 / m - mean * mean
    return mean, var.clip(0, math.inf)
