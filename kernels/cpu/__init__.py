"""Numba CPU kernels for tinysr (package ``tinysr_kernels.cpu``).

Importing this module compiles nothing: every kernel is ``@njit(cache=True)`` and compiles on first
use (seconds), then loads from Numba's on-disk cache in later processes.  :data:`CONV_IMPLS` lists the
convolution algorithms offered (tinysr's ``functional.dispatch`` registers them and chooses per layer);
:func:`enable` settles the thread pools (:mod:`.threads`).  tinysr imports this package and calls
:func:`enable` on the first CPU convolution unless ``TINYSR_KERNELS=numpy``.  Nothing here imports
tinysr's ops: the kernels depend only on :mod:`tinysr.functional.conv_reference` (their NumPy twins).

Modules: :mod:`.im2col` (im2col/col2im and layout moves), :mod:`.direct` (convolution for 1-3 output
channels), :mod:`.shifted` (stride-1 convolution as GEMMs on shifted views, no column matrix),
:mod:`.pointwise` (activations, bias gradient, pixel shuffle), :mod:`.conv` (``NumbaConvImpl``),
:mod:`.winograd` (Winograd F(2x2,3x3), F(4x4,3x3) and F(6x6,3x3)), :mod:`.threads` (who owns the cores),
:mod:`.memory` (large outputs from a pool of recycled buffers).
"""
from . import threads

threads.configure()  # before any parallel kernel can run

from . import direct, memory, pointwise  # noqa: E402
from .conv import NumbaConvImpl, release_buffers  # noqa: E402
from .im2col import col2im, im2col  # noqa: E402
from .pointwise import bias_grad, pixel_shuffle, pixel_unshuffle_array  # noqa: E402
from .winograd import WINOGRAD2, WINOGRAD4, WINOGRAD6, NumbaWinogradImpl  # noqa: E402

#: The convolution algorithms of this backend, by the names tinysr's dispatch uses.
CONV_IMPLS = {"im2col": NumbaConvImpl, "winograd2": WINOGRAD2, "winograd4": WINOGRAD4, "winograd6": WINOGRAD6}


def enable():
    """Settle the thread pools before the first kernel runs (idempotent); returns :data:`CONV_IMPLS`."""
    threads.configure()
    return CONV_IMPLS


__all__ = ["NumbaConvImpl", "NumbaWinogradImpl", "CONV_IMPLS", "enable", "im2col", "col2im", "bias_grad",
           "pixel_shuffle", "pixel_unshuffle_array", "release_buffers", "threads", "memory"]
