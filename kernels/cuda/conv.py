"""The GPU convolution: our im2col/col2im kernels around a batched GEMM.

Same three linear maps as :class:`tinysr.functional.conv.NumpyConvImpl` (read it first), with two
changes that matter on a GPU:

1. Columns are laid out per image, (N, K, P) with K = C*kh*kw and P = OH*OW (``layout="nk"``), so
   that one batched GEMM ``W (O, K) @ cols (N, K, P)`` writes (N, O, P) -- already the NCHW output.
   The teaching layout (K, N*P) would need a transpose pass over the output afterwards.
2. The GEMMs are ``cupy.matmul`` (cuBLAS) for CuPy arrays.  For Numba device arrays (the CUDA
   simulator, or a GPU without CuPy) they are the teaching kernel :func:`~.sgemm.sgemm`, so that the
   whole convolution -- kernels and products -- runs and is tested under ``NUMBA_ENABLE_CUDASIM=1``.

tinysr picks this class up by itself: the first time a CuPy array reaches ``conv2d`` or
``conv_transpose2d``, ``tinysr.functional.conv`` imports this module and registers
:class:`CudaConvImpl` for device "cuda" (if :meth:`CudaConvImpl.available` says Numba can compile
kernels here; otherwise the CuPy version of the NumPy code is used, with a warning).
"""
from . import _runtime as rt
from .im2col import col2im, im2col
from .sgemm import sgemm


def _out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def matmul(a, b, trans_a=False, trans_b=False, reduce_batch=False):
    """``op(a) @ op(b)`` (optionally summed over the batch) -- cuBLAS for CuPy, the tiled kernel otherwise.

    Transposes are views for cuBLAS (it reads them with its own transpose flags) and index swaps
    for the tiled kernel; neither copies.
    """
    if rt.is_cupy(a):
        cp = rt._cupy()
        at = a.swapaxes(-1, -2) if trans_a else a
        bt = b.swapaxes(-1, -2) if trans_b else b
        out = cp.matmul(at, bt)
        # The weight gradient: a batch of (O, K) products summed over images.  The (N, O, K) temporary
        # is small next to the columns (O*K per image against K*P).
        return out.sum(axis=0) if reduce_batch else out
    return sgemm(a, b, trans_a=trans_a, trans_b=trans_b, reduce_batch=reduce_batch)


class CudaConvImpl:
    """Conv2d / ConvTranspose2d maps on the GPU (interface of ``NumpyConvImpl``).

    * ``forward(x, w, stride, padding)``:  y (N, O, OH, OW) = W (O, K) @ im2col(x) (N, K, P)
    * ``backward_data(gy, w, x_shape, ...)``:  col2im(W^T (K, O) @ gy (N, O, P)), an (N, C, H, W) image
    * ``backward_weight(x, gy, w_shape, ...)``:  sum over n of gy[n] (O, P) @ im2col(x)[n]^T (P, K)

    ``stride`` and ``padding`` are pairs.  Arrays are CuPy arrays (or Numba device arrays, see the
    module docstring); results are contiguous arrays of the same kind.
    """

    name = "cuda-numba"

    @staticmethod
    def available():
        """Whether Numba can compile CUDA kernels on this machine (see ``_runtime.kernels_usable``)."""
        return rt.kernels_usable()

    @staticmethod
    def forward(x, w, stride, padding):
        n, _, h, wd = x.shape
        o, c, kh, kw = w.shape
        oh, ow = _out_size(h, kh, stride[0], padding[0]), _out_size(wd, kw, stride[1], padding[1])
        cols = im2col(x, kh, kw, stride, padding, layout="nk")
        w2 = rt.contiguous(w).reshape((o, c * kh * kw))
        return matmul(w2, cols).reshape((n, o, oh, ow))

    @staticmethod
    def backward_data(gy, w, x_shape, stride, padding):
        o, c, kh, kw = w.shape
        n, _, oh, ow = gy.shape
        w2 = rt.contiguous(w).reshape((o, c * kh * kw))
        gy3 = rt.contiguous(gy).reshape((n, o, oh * ow))
        dcols = matmul(w2, gy3, trans_a=True)
        return col2im(dcols, x_shape, kh, kw, stride, padding, layout="nk")

    @staticmethod
    def backward_weight(x, gy, w_shape, stride, padding):
        o, c, kh, kw = w_shape
        n, _, oh, ow = gy.shape
        cols = im2col(x, kh, kw, stride, padding, layout="nk")
        gy3 = rt.contiguous(gy).reshape((n, o, oh * ow))
        return matmul(gy3, cols, trans_b=True, reduce_batch=True).reshape(tuple(w_shape))
