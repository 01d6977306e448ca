"""tinysr's hot path, installed as the package ``tinysr_kernels``.

* :mod:`tinysr_kernels.cpu`  -- Numba ``@njit(parallel=True, cache=True)`` kernels for the CPU: im2col /
  col2im, direct convolutions for layers with 1-3 output channels, pixel shuffle, fused bias and
  activations, :class:`~tinysr_kernels.cpu.conv.NumbaConvImpl` (im2col) and Winograd F(2x2,3x3),
  F(4x4,3x3) and F(6x6,3x3), the fast convolutions that :mod:`tinysr.functional.dispatch` registers and chooses from.
* :mod:`tinysr_kernels.cuda` -- the same kernels for NVIDIA GPUs (Numba CUDA).

Every kernel has a readable NumPy twin inside ``tinysr`` and a test that the two agree; the kernels
import only those twins (:mod:`tinysr.functional.conv_reference`), never tinysr's ops.  Nothing here
is imported by ``import tinysr``: the CPU kernels load lazily on the first convolution (compiling
costs seconds the first time, then comes from Numba's on-disk cache).
"""
