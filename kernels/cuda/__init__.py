"""CUDA kernels for tinysr's hot path, written in Python with Numba (``numba.cuda``).

Each kernel has a host-side *launcher* (the function you call) that takes device arrays -- CuPy
arrays, or Numba device arrays (also under the simulator) -- chooses the grid, and launches on
CuPy's current stream.  Each has a NumPy twin in ``tinysr`` that the tests compare it against:

==========================  =============================================  =================================
launcher                    what                                           NumPy twin
==========================  =============================================  =================================
``im2col`` / ``col2im``     unfold / fold for conv and transposed conv     ``tinysr.functional.conv``
``pixel_shuffle`` /         sub-pixel upsampling and its inverse           ``tinysr.functional.shape``
``pixel_unshuffle``
``bias_act_forward`` /      bias + ReLU/PReLU/LeakyReLU, fused             ``F.relu(x + b)`` etc.
``bias_act_backward``
``batchnorm_stats``         per-channel sum and sum of squares             ``x.sum``, ``(x*x).sum``
``sgemm``                   tiled shared-memory GEMM (teaching)            ``a @ b``
``CudaConvImpl``            conv maps: im2col + ``cupy.matmul`` + col2im   ``NumpyConvImpl``
==========================  =============================================  =================================

Run them without a GPU (every CUDA thread becomes a Python thread, so keep shapes small)::

    NUMBA_ENABLE_CUDASIM=1 python -m tinysr_kernels.cuda.selftest          # all kernels
    NUMBA_ENABLE_CUDASIM=1 python -m tinysr_kernels.cuda.selftest im2col   # one

The simulator must be switched on before ``numba.cuda`` is first imported, which is why the tests
run it in a separate process.
"""
from ._runtime import contiguous, kernels_usable, simulator_enabled
from .batchnorm import batchnorm_mean_var, batchnorm_stats
from .bias_act import bias_act_backward, bias_act_forward
from .conv import CudaConvImpl, matmul
from .im2col import col2im, im2col
from .pixel_shuffle import pixel_shuffle, pixel_unshuffle
from .sgemm import sgemm

__all__ = ["im2col", "col2im", "pixel_shuffle", "pixel_unshuffle", "bias_act_forward", "bias_act_backward",
           "batchnorm_stats", "batchnorm_mean_var", "sgemm", "matmul", "CudaConvImpl", "contiguous",
           "kernels_usable", "simulator_enabled"]
