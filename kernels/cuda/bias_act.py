"""Bias + activation, fused, forward and backward: ``y = act(x + b[c])`` in one pass over memory.

After a convolution, adding the bias and applying ReLU/PReLU/LeakyReLU are two more trips through
the largest tensor of the layer, each of which does almost no arithmetic: on a GPU they cost memory
bandwidth only.  Fusing them reads ``x`` once and writes ``y`` once.  The backward pass fuses even
more: one pass produces the input gradient *and* the per-channel sums that are the gradients of the
bias and of PReLU's slopes.

NumPy twins: the composition ``F.relu / F.leaky_relu / F.prelu(x + b.reshape(1, -1, 1, 1))`` of
:mod:`tinysr.functional` (forward and autograd backward).  Conventions match them exactly: ReLU and
LeakyReLU pass the gradient where ``z > 0``; PReLU uses the slope where ``z <= 0``.

``x`` is the *pre-bias* input (N, C, H, W) or (N, C); backward takes it again instead of a saved
``z = x + b``, recomputing the add in registers (cheaper than storing a tensor).
"""
from functools import lru_cache

import numpy as np
from numba import cuda

from . import _runtime as rt

IDENTITY, RELU, LEAKY_RELU, PRELU = 0, 1, 2, 3
ACTIVATIONS = {"identity": IDENTITY, None: IDENTITY, "relu": RELU, "leaky_relu": LEAKY_RELU, "prelu": PRELU}


@cuda.jit
def _forward_kernel(x, bias, alpha, y, c_in, hw, act, slope, has_bias, alpha_per_channel, zero):
    # One thread per element.  ``act`` is the same for every thread, so the branches below never
    # diverge inside a warp: they cost one compare, not a second pass.
    start, step = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, x.size, step):
        c = (t // hw) % c_in
        z = x[t]
        if has_bias:
            z += bias[c]
        if act == RELU:
            if not z > 0:
                z = zero  # not the literal 0: an int would widen z to float64 (slow on most GPUs)
        elif act == LEAKY_RELU:
            if not z > 0:
                z = z * slope
        elif act == PRELU:
            if z <= 0:
                z = z * (alpha[c] if alpha_per_channel else alpha[0])
        y[t] = z


@lru_cache(maxsize=None)
def _backward_kernel(tpb, dtype):
    """Compile (once per block size and dtype) the fused backward kernel.

    Grid: (blocks_per_channel, C) blocks of ``tpb`` threads.  Block (bx, c) walks a grid-stride
    slice of channel c's N*H*W elements; each thread writes ``gx`` for its elements and keeps two
    running sums in registers (``gz`` for the bias, ``gy*z`` over z <= 0 for PReLU).  The block then
    adds its ``tpb`` partial sums in shared memory by halving (a tree: log2(tpb) steps instead of
    tpb), and thread 0 adds the block's total to the channel's result with one atomic add -- so
    atomics happen once per block, not once per element.  The shared arrays need their size and type
    at compile time, hence this factory.
    """
    nb_type = rt.numba_dtype(dtype)

    @cuda.jit
    def kernel(gy, x, bias, alpha, gx, gbias, galpha, n_img, c_in, hw, act, slope, has_bias,
               alpha_per_channel, zero):
        c = cuda.blockIdx.y
        tid = cuda.threadIdx.x
        part_b = cuda.shared.array(tpb, nb_type)
        part_a = cuda.shared.array(tpb, nb_type)
        b = bias[c] if has_bias else zero
        a = zero
        if act == PRELU:
            a = alpha[c] if alpha_per_channel else alpha[0]
        acc_b = zero
        acc_a = zero
        m = n_img * hw
        for e in range(cuda.blockIdx.x * tpb + tid, m, cuda.gridDim.x * tpb):
            idx = ((e // hw) * c_in + c) * hw + e % hw
            z = x[idx] + b
            g = gy[idx]
            if act == RELU:
                if not z > 0:
                    g = zero
            elif act == LEAKY_RELU:
                if not z > 0:
                    g = g * slope
            elif act == PRELU:
                if z <= 0:
                    acc_a += g * z
                    g = g * a
            gx[idx] = g
            acc_b += g
        part_b[tid] = acc_b
        part_a[tid] = acc_a
        block_sum_pair(part_b, part_a, tid, tpb)
        if tid == 0:
            if has_bias:
                cuda.atomic.add(gbias, c, part_b[0])
            if act == PRELU:
                cuda.atomic.add(galpha, c if alpha_per_channel else 0, part_a[0])

    return kernel


@cuda.jit(device=True)
def block_sum_pair(part1, part2, tid, tpb):
    """Sum two shared arrays of ``tpb`` per-thread partials (``tpb`` a power of two) into their entry 0:
    a tree, halving the active threads at each level, with the block synchronised between levels.
    Every thread of the block calls it, after writing its own partials ``part1[tid]``, ``part2[tid]``."""
    cuda.syncthreads()
    half = tpb // 2
    while half > 0:
        if tid < half:
            part1[tid] += part1[tid + half]
            part2[tid] += part2[tid + half]
        cuda.syncthreads()
        half //= 2


def reduction_grid(m, channels, tpb):
    """Blocks per channel for a per-channel reduction over ``m`` elements: enough blocks in all to fill
    the GPU (each thread still sums several elements); two in the simulator, to test the atomics."""
    want = max(1, -(-m // (tpb * 8)))
    cap = 2 if rt.simulator_enabled() else max(1, 4096 // max(channels, 1))
    return min(want, cap)


def _check(x, bias, act, alpha):
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of 'identity', 'relu', 'leaky_relu', 'prelu', got {act!r}")
    code = ACTIVATIONS[act]
    if x.ndim not in (2, 4):
        raise ValueError(f"bias_act needs x of shape (N, C, H, W) or (N, C), got {tuple(x.shape)}")
    c = x.shape[1]
    if bias is not None and tuple(bias.shape) != (c,):
        raise ValueError(f"bias must have shape ({c},), got {tuple(bias.shape)}")
    if code == PRELU:
        if alpha is None or alpha.ndim != 1 or alpha.shape[0] not in (1, c):
            raise ValueError(f"prelu needs alpha of shape (1,) or ({c},)")
    return code


def bias_act_forward(x, bias=None, act="relu", alpha=None, negative_slope=0.01):
    """``y = act(x + bias[c])`` for ``x`` (N, C, H, W) or (N, C); returns a new contiguous array.

    ``act``: ``"identity"``, ``"relu"``, ``"leaky_relu"`` (slope ``negative_slope``) or ``"prelu"``
    (slopes ``alpha`` of shape (1,) shared or (C,) per channel).  ``bias`` may be None.
    Launch: 1-D grid-stride loop, one thread per element.
    """
    code = _check(x, bias, act, alpha)
    x = rt.contiguous(x)
    dtype = rt.check_float(x)
    xf = rt.flat(x)
    # Arguments a configuration does not use still need an array of the right type (Numba compiles
    # one machine-code version per argument type); the flat input serves and is never read.
    bf = rt.flat(rt.contiguous(bias)) if bias is not None else xf
    af = rt.flat(rt.contiguous(alpha)) if code == PRELU else xf
    rt.check_float(x, *([bias] if bias is not None else []), *([alpha] if code == PRELU else []))
    y = rt.empty(x.shape, dtype, like=x)
    hw = int(np.prod(x.shape[2:])) if x.ndim == 4 else 1
    blocks, threads = rt.grid_1d(x.size)
    _forward_kernel[blocks, threads, rt.stream_for(x)](
        rt.kernel_arg(xf), rt.kernel_arg(bf), rt.kernel_arg(af), rt.kernel_arg(rt.flat(y)),
        x.shape[1], hw, code, dtype.type(negative_slope), bias is not None,
        code == PRELU and alpha.shape[0] > 1, dtype.type(0))
    return y


def bias_act_backward(gy, x, bias=None, act="relu", alpha=None, negative_slope=0.01):
    """Gradients of :func:`bias_act_forward`: returns ``(gx, gbias, galpha)``.

    ``gx`` has x's shape (it is also the gradient w.r.t. ``z = x + bias``); ``gbias`` (C,) is
    ``gx`` summed over N, H, W (None without a bias); ``galpha`` is PReLU's slope gradient,
    ``sum gy * z`` over ``z <= 0`` per channel or in total (None for other activations).
    Launch: a (blocks_per_channel, C) grid with a shared-memory tree reduction per block; see
    ``_backward_kernel``.
    """
    code = _check(x, bias, act, alpha)
    if tuple(gy.shape) != tuple(x.shape):
        raise ValueError(f"gy has shape {tuple(gy.shape)} but x has {tuple(x.shape)}")
    x, gy = rt.contiguous(x), rt.contiguous(gy)
    dtype = rt.check_float(x, gy, *([bias] if bias is not None else []), *([alpha] if code == PRELU else []))
    n, c = x.shape[:2]
    hw = int(np.prod(x.shape[2:])) if x.ndim == 4 else 1
    gx = rt.empty(x.shape, dtype, like=x)
    xf, gxf = rt.flat(x), rt.flat(gx)
    gbias = rt.zeros((c,), dtype, like=x) if bias is not None else None
    galpha = rt.zeros((alpha.shape[0],), dtype, like=x) if code == PRELU else None
    tpb = rt.threads_per_block()
    grid = (reduction_grid(n * hw, c, tpb), c)
    _backward_kernel(tpb, dtype)[grid, tpb, rt.stream_for(x)](
        rt.kernel_arg(rt.flat(gy)), rt.kernel_arg(xf),
        rt.kernel_arg(rt.flat(rt.contiguous(bias)) if bias is not None else xf),
        rt.kernel_arg(rt.flat(rt.contiguous(alpha)) if code == PRELU else xf),
        rt.kernel_arg(gxf),
        rt.kernel_arg(gbias if gbias is not None else gxf),
        rt.kernel_arg(galpha if galpha is not None else gxf),
        n, c, hw, code, dtype.type(negative_slope), bias is not None,
        code == PRELU and alpha.shape[0] > 1, dtype.type(0))
    return gx, gbias, galpha
