"""What every CUDA launcher shares: array families, allocation, streams and launch shapes.

A launcher in this package accepts arrays of one of three *families* and returns arrays of the same
family:

* ``"cupy"``   -- CuPy arrays (how tinysr runs on a GPU).  Numba sees them through the CUDA Array
  Interface (``__cuda_array_interface__``): a dict with the device pointer, shape, strides and
  dtype, so no byte is copied.  Kernels are launched on CuPy's *current stream*, so they are ordered
  with the CuPy operations before and after them exactly as a CuPy kernel would be.
* ``"numba"``  -- Numba device arrays (``numba.cuda.to_device``), on a real GPU without CuPy.
* ``"sim"``    -- the same arrays under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where a
  "device array" is a NumPy array in disguise and every CUDA thread is a Python thread.  This is how
  CI tests the kernels without a GPU, and how a learner can put a breakpoint inside a kernel.

Nothing here imports CuPy: if a CuPy array reaches a launcher, CuPy is already imported.
"""
import math
import sys
import warnings
from functools import lru_cache

import numpy as np

if not hasattr(np, "row_stack"):
    # numba-cuda (the CUDA target that Numba delegates to; 0.30.4 does this) registers an overload for
    # np.row_stack, which NumPy 2.5 removed, when it compiles its first kernel -- so every kernel fails
    # with "module 'numpy' has no attribute 'row_stack'".  row_stack is an alias of vstack in the
    # NumPy versions that have it, so restoring the alias lets the kernels compile on NumPy >= 2.5.
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402
from numba.core import config  # noqa: E402

# Numba warns of "GPU under-utilization" whenever a grid has fewer blocks than the GPU has
# multiprocessors: true of every small tile, test batch or 1-channel bias, and nothing a learner can act on.
# The message starts with terminal colour codes (hence the leading .*), and numba-cuda raises its own
# copy of NumbaPerformanceWarning, not numba.core.errors' (hence no category).
warnings.filterwarnings("ignore", message=r".*GPU under-utilization")


def simulator_enabled():
    """True when Numba's CUDA simulator is active (``NUMBA_ENABLE_CUDASIM=1`` before importing numba.cuda)."""
    return bool(config.ENABLE_CUDASIM)


def _cupy():
    return sys.modules.get("cupy")


def is_cupy(x):
    """Whether ``x`` is a CuPy array (without importing CuPy)."""
    cp = _cupy()
    return cp is not None and isinstance(x, cp.ndarray)


def family(x):
    """``"cupy"``, ``"numba"`` or ``"sim"``: which kind of device array ``x`` is (see the module docstring)."""
    if is_cupy(x):
        return "cupy"
    if simulator_enabled():
        return "sim"
    if cuda.is_cuda_array(x):
        return "numba"
    raise TypeError(f"a CUDA kernel needs a device array (CuPy, or numba.cuda.to_device), got {type(x).__name__}; "
                    "move host arrays to the GPU first")


# ---------------------------------------------------------------------------------------------- streams
_external_streams = {}


def stream_for(x):
    """The stream to launch on for arrays like ``x``.

    For CuPy arrays this is CuPy's current stream, wrapped once per pointer with
    ``numba.cuda.external_stream`` (pointer 0 is the legacy default stream, which Numba calls
    ``default_stream()``).  Launching anywhere else would let a kernel run before the CuPy op that
    produced its input has finished.  Numba and simulator arrays use Numba's default stream.
    """
    if not is_cupy(x):
        return 0
    ptr = _cupy().cuda.get_current_stream().ptr
    if ptr == 0:
        return cuda.default_stream()
    s = _external_streams.get(ptr)
    if s is None:
        s = _external_streams[ptr] = cuda.external_stream(ptr)
    return s


def kernel_arg(x):
    """What to hand a Numba kernel for ``x``.

    CuPy arrays are wrapped with ``as_cuda_array(x, sync=False)``: a zero-copy Numba view.  ``sync=False``
    because Numba would otherwise synchronise on the array's stream at every launch; we launch *on*
    that stream, so the ordering is already right and the wait would only stall the CPU.
    """
    if is_cupy(x):
        return cuda.as_cuda_array(x, sync=False)
    return x


# ---------------------------------------------------------------------------------------------- launch shapes
def threads_per_block():
    """Threads per block for 1-D kernels: 256 on a GPU (8 warps, enough to hide memory latency), 32 in
    the simulator (where each thread is an OS thread, so fewer is much faster)."""
    return 32 if simulator_enabled() else 256


def grid_1d(n, threads=None):
    """``(blocks, threads)`` for a grid-stride loop over ``n`` items.

    Every 1-D kernel here loops ``for i in range(cuda.grid(1), n, cuda.gridsize(1))``, so it is correct
    for *any* grid size.  On a GPU we launch about one thread per item (capped: past ~1M threads the
    GPU is full anyway and each thread just does a few items); in the simulator we launch at most three
    blocks, so that the loop really strides (that path is then tested) and the test stays fast.
    """
    threads = threads or threads_per_block()
    blocks = max(1, math.ceil(n / threads))
    cap = 3 if simulator_enabled() else 4096
    return min(blocks, cap), threads


def grid_planes(rows, channels, images):
    """``(blocks, threads)`` for a kernel over the image planes of an (N, C, rows, cols) array.

    Such a kernel (im2col, col2im) strides over images with ``blockIdx.z``, channels with
    ``blockIdx.y``, rows with ``blockIdx.x`` and ``threadIdx.y``, and columns with ``threadIdx.x``, so
    that it never divides a flat index.  Blocks are 32 x 8 threads (a warp along a row); every
    dimension is a grid-stride loop, correct for any grid.  On a GPU the grid covers the planes
    (capped at the hardware's 65535 blocks in y and z); in the simulator blocks are 4 x 2 threads and
    the grid at most 2 x 2 x 2, so that every loop really strides there.
    """
    sim = simulator_enabled()
    tx, ty = (4, 2) if sim else (32, 8)
    cap = 2 if sim else 65535
    bx = max(1, math.ceil(rows / ty))
    return (min(bx, cap), max(1, min(channels, cap)), max(1, min(images, cap))), (tx, ty)


# ---------------------------------------------------------------------------------------------- allocation
def empty(shape, dtype, like):
    """An uninitialised device array of the family of ``like``."""
    if is_cupy(like):
        return _cupy().empty(shape, dtype=dtype)
    return cuda.device_array(shape, dtype=dtype)


@cuda.jit
def _fill_kernel(out, value):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, out.size, step):
        out[i] = value


def zeros(shape, dtype, like):
    """A zero-filled device array of the family of ``like`` (a fill kernel for Numba arrays: no host copy)."""
    if is_cupy(like):
        return _cupy().zeros(shape, dtype=dtype)
    out = cuda.device_array(shape, dtype=dtype)
    flat = out.reshape(out.size)
    blocks, threads = grid_1d(out.size)
    _fill_kernel[blocks, threads](flat, np.dtype(dtype).type(0))
    return out


# ---------------------------------------------------------------------------------------------- contiguity
@cuda.jit
def _copy1(src, dst):
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, dst.shape[0], step):
        dst[i] = src[i]


@cuda.jit
def _copy2(src, dst):
    b = dst.shape[1]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, dst.shape[0] * b, step):
        dst[t // b, t % b] = src[t // b, t % b]


@cuda.jit
def _copy3(src, dst):
    b, c = dst.shape[1], dst.shape[2]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, dst.shape[0] * b * c, step):
        k = t % c
        j = (t // c) % b
        i = t // (b * c)
        dst[i, j, k] = src[i, j, k]


@cuda.jit
def _copy4(src, dst):
    b, c, d = dst.shape[1], dst.shape[2], dst.shape[3]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for t in range(start, dst.shape[0] * b * c * d, step):
        l = t % d  # noqa: E741
        k = (t // d) % c
        j = (t // (c * d)) % b
        i = t // (b * c * d)
        dst[i, j, k, l] = src[i, j, k, l]


_COPY = {1: _copy1, 2: _copy2, 3: _copy3, 4: _copy4}


def contiguous(x):
    """``x`` itself when it is C-contiguous, else a C-contiguous copy made on the device.

    The kernels address their arrays as flat buffers (index arithmetic instead of strides), which is
    also what makes neighbouring threads touch neighbouring addresses (coalesced access).  A strided
    view -- a transpose, a crop, ``x[:, :, ::2]`` -- is therefore copied first.  For CuPy this is
    ``cupy.ascontiguousarray``; for Numba arrays a small copy kernel whose indexing ``src[i, j, k, l]``
    follows the view's strides (Numba device arrays carry them, like NumPy arrays).
    """
    if is_cupy(x):
        return _cupy().ascontiguousarray(x)
    if x.is_c_contiguous():
        return x
    if x.ndim not in _COPY:
        raise ValueError(f"contiguous() supports 1- to 4-D device arrays, got {x.ndim}-D")
    out = cuda.device_array(x.shape, dtype=x.dtype)
    blocks, threads = grid_1d(x.size)
    _COPY[x.ndim][blocks, threads](x, out)
    return out


def flat(x):
    """A 1-D view of a C-contiguous device array (no copy)."""
    return x.reshape(x.size) if not is_cupy(x) else x.reshape(-1)


@lru_cache(maxsize=None)
def numba_dtype(dtype):
    """The Numba type of a NumPy dtype (for ``cuda.shared.array`` declarations, which need a compile-time type)."""
    from numba import from_dtype
    return from_dtype(np.dtype(dtype))


def check_float(*arrays):
    """The common floating dtype of ``arrays`` (float32 or float64), or a clear error."""
    dtype = np.dtype(arrays[0].dtype)
    for a in arrays:
        if np.dtype(a.dtype) != dtype:
            raise TypeError(f"the CUDA kernels need arrays of one dtype, got {dtype} and {np.dtype(a.dtype)}")
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"the CUDA kernels support float32 and float64, got {dtype}")
    return dtype


_usable = None


def kernels_usable():
    """Whether Numba can compile and launch a CUDA kernel here (``(True, "")`` or ``(False, reason)``).

    CuPy can work while Numba cannot -- Numba also needs NVVM and libdevice from a CUDA toolkit
    (``pip install nvidia-cuda-nvcc-cu12`` or a conda ``cuda-nvcc``).  The check compiles and runs the
    fill kernel once and is cached; the convolution hook falls back to the CuPy version of the
    teaching code when it fails.
    """
    global _usable
    if _usable is None:
        try:
            cp = _cupy()
            if cp is not None:
                out = cp.ones(4, dtype=np.float32)
                args = kernel_arg(out)
            else:
                out = args = cuda.device_array(4, dtype=np.float32)
            # Launched directly (not through zeros(), which uses CuPy when it can): this is what
            # makes Numba compile and load a kernel.
            _fill_kernel[1, 32, stream_for(out)](args, np.float32(0))
            host = out.get() if is_cupy(out) else out.copy_to_host()
            _usable = (bool((host == 0).all()), "" if (host == 0).all() else "a test kernel wrote wrong values")
        except Exception as e:  # no driver, no NVVM, an unsupported compute capability ...
            _usable = (False, f"{type(e).__name__}: {e}")
    return _usable
