"""Large arrays from a pool of recycled buffers: a caching allocator for the CPU kernels' outputs.

Why.  A training step allocates its large activations and gradients afresh every step, and a fresh
large allocation costs far more than its size suggests.  glibc's ``malloc`` serves a request above
its mmap threshold (which adapts up to 32 MiB) with new pages from the kernel, and gives the top of
its heap back when enough of it is free; either way the kernel zeroes every 4 KiB page at its first
touch, one page fault each.  Measured on the 2-core machine of ``benchmarks/README.md`` (2 threads),
with malloc told to keep all freed memory: SRCNN's training step 106 -> 58 ms and EDSR-baseline's
1.35-1.48 -> 1.12-1.22 s, each with thousands of page faults a step gone.  PyTorch's CUDA caching
allocator answers the same problem on the GPU.

How.  :func:`empty` hands out views of pooled 1-D byte buffers.  A buffer is free when nothing but the
pool refers to it: every array made from it, views and reshapes included, holds a reference to it
(NumPy points a view's ``base`` at the buffer that owns the memory), so its reference count says so
exactly.  A free buffer serves any request of its size or up to half of it (the smallest that fits);
otherwise a new buffer is made.  Requests under :data:`min_bytes` (malloc's heap recycles those well)
or over :data:`max_bytes` go straight to ``np.empty``, and the free buffers kept are limited to
:data:`max_idle_bytes` (the longest-unused go first, at the next request), so inference on images of
changing sizes does not hoard memory.  As with PyTorch's CUDA allocator, memory freed by the program may
stay with the pool until then; :func:`release` hands the free buffers back at once.
"""
import sys
import threading

import numpy as np

#: Requests smaller than this (bytes) are plain ``np.empty`` arrays.
min_bytes = 1 << 20
#: Requests larger than this are plain arrays too: a training step's activations are far smaller, and a
#: one-off giant (a whole photo upscaled without tiles) should go back to the system when it dies.
max_bytes = 64 << 20
#: The most bytes of free buffers kept for reuse.
max_idle_bytes = 256 << 20

_pool = []                  # 1-D uint8 buffers, the most recently used last
_lock = threading.Lock()


def _free(i):
    # the pool's list and getrefcount's own argument are the only references of a free buffer
    return sys.getrefcount(_pool[i]) == 2


def empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, like ``np.empty``; large ones are
    views of a recycled buffer (see the module docstring)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < min_bytes or nbytes > max_bytes:
        return np.empty(shape, dtype=dtype)
    with _lock:
        best = None
        for i in range(len(_pool)):
            size = _pool[i].nbytes
            if nbytes <= size < 2 * nbytes and _free(i) and (best is None or size < _pool[best].nbytes):
                best = i
        if best is None:
            buf = np.empty(nbytes, dtype=np.uint8)
        else:
            buf = _pool.pop(best)
        _pool.append(buf)
        _trim()
    return buf[:nbytes].view(dtype).reshape(shape)


def _trim():
    """Drop the longest-unused free buffers beyond :data:`max_idle_bytes`."""
    idle = [i for i in range(len(_pool)) if _free(i)]
    total = sum(_pool[i].nbytes for i in idle)
    drop = set()
    for i in idle:
        if total <= max_idle_bytes:
            break
        total -= _pool[i].nbytes
        drop.add(i)
    if drop:
        _pool[:] = [b for i, b in enumerate(_pool) if i not in drop]


def idle_bytes():
    """Bytes held in free buffers now."""
    with _lock:
        return sum(_pool[i].nbytes for i in range(len(_pool)) if _free(i))


def release():
    """Give every free buffer back (buffers still in use stay in the pool until they are freed too)."""
    with _lock:
        _pool[:] = [_pool[i] for i in range(len(_pool)) if not _free(i)]
