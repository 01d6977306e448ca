"""Numba CPU kernels for tinysr (package ``tinysr_kernels.cpu``).

Importing this module compiles nothing: every kernel is ``@njit(cache=True)`` and compiles on first
use (seconds), then loads from Numba's on-disk cache in later processes.  :func:`enable` registers
:class:`NumbaConvImpl` with tinysr as the CPU convolution and settles the thread pools
(:mod:`.threads`); tinysr calls it on the first CPU convolution unless ``TINYSR_KERNELS=numpy``.

Modules: :mod:`.im2col` (im2col/col2im and layout moves), :mod:`.direct` (convolution for 1-3 output
channels), :mod:`.shifted` (stride-1 convolution as GEMMs on shifted views, no column matrix),
:mod:`.pointwise` (activations, bias gradient, pixel shuffle), :mod:`.conv` (``NumbaConvImpl``),
:mod:`.threads` (who owns the cores).
"""
from . import threads

threads.configure()  # before any parallel kernel can run

from . import direct, pointwise  # noqa: E402
from .conv import NumbaConvImpl, release_buffers  # noqa: E402
from .im2col import col2im, im2col  # noqa: E402
from .pointwise import bias_grad, pixel_shuffle, pixel_unshuffle_array  # noqa: E402

_enabled = False


def enable():
    """Register the Numba convolution with tinysr as the preferred CPU implementation."""
    global _enabled
    from tinysr.functional import conv as _conv
    threads.configure()
    _conv.register_conv_impl(NumbaConvImpl.name, NumbaConvImpl, device="cpu")
    _enabled = True
    return NumbaConvImpl


__all__ = ["NumbaConvImpl", "enable", "im2col", "col2im", "bias_grad", "pixel_shuffle", "pixel_unshuffle_array",
           "release_buffers", "threads"]
