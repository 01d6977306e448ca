"""tinysr's hot path, installed as the package ``tinysr_kernels``.

* :mod:`tinysr_kernels.cpu`  -- Numba ``@njit(parallel=True, cache=True)`` kernels for the CPU: im2col /
  col2im, direct convolutions for layers with 1-3 output channels, pixel shuffle, fused bias and
  activations, and :class:`~tinysr_kernels.cpu.conv.NumbaConvImpl`, the fast convolution that tinysr
  plugs in through :func:`tinysr.functional.conv.register_conv_impl`.
* :mod:`tinysr_kernels.cuda` -- the same kernels for NVIDIA GPUs (Numba CUDA).

Every kernel has a readable NumPy twin inside ``tinysr`` and a test that the two agree.  Nothing here
is imported by ``import tinysr``: the CPU kernels load lazily on the first convolution (compiling
costs seconds the first time, then comes from Numba's on-disk cache).
"""
