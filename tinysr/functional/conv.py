"""Convolution and transposed convolution as im2col + one GEMM.

A 2-D convolution (cross-correlation, as in PyTorch and Caffe) of ``x`` (N, C, H, W) with weights
``W`` (O, C, kh, kw) is

    y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x_pad[n, c, s*i + u, s*j + v].

*im2col* copies, for every kernel offset (u, v), the strided window of ``x_pad`` that this offset
touches into one row of a "column" matrix of shape (C*kh*kw, N*OH*OW).  The whole convolution is then
one matrix product ``W.reshape(O, -1) @ cols`` -- a GEMM, which BLAS runs near the machine's peak.

The gradient with respect to the input is the *transpose* of that linear map: ``W^T @ dY`` gives
column gradients, and *col2im* adds each column back into the window it was copied from.  That is
exactly the forward pass of a transposed convolution, and the forward pass of a transposed
convolution is the input-gradient of a convolution: the two ops are each other's backward, and this
file implements both from the same three functions.

These NumPy functions are the readable teaching version (vectorised over kernel offsets, never a
Python loop over pixels).  Faster implementations (Numba on the CPU, CUDA on the GPU) live in
``kernels/`` and are tested against these.
"""
import os
import warnings

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from .conv_reference import (NumpyConvImpl, WinogradImpl, _pair, col2im, conv_output_size,  # noqa: F401
                             conv_transpose_output_size, im2col)


_IMPLS = {"numpy": NumpyConvImpl}
_default = {"cpu": None, "cuda": None}    # fast implementation registered for each device kind
_preferred = {"cpu": None, "cuda": None}  # the user's explicit choice (set_conv_impl), None = default
_autoload = {"cpu": None}                 # None: not tried yet; then the loaded module or False

# Values of TINYSR_KERNELS that keep the CPU on the NumPy teaching version.
_OFF = ("numpy", "0", "off", "false", "none")


def register_conv_impl(name, impl, device="cpu", prefer=True):
    """Plug in a faster implementation of the three conv maps (used by ``kernels/``).

    ``impl`` has ``forward``, ``backward_data`` and ``backward_weight`` with the signatures of
    :class:`NumpyConvImpl`; optionally ``fuses_bias = True`` (``forward`` takes ``bias=``), a fused
    ``backward(x, w, gy, stride, padding, need_x)`` and ``bias_grad(gy)``.  With ``prefer`` it becomes
    the default for ``device``; an explicit :func:`set_conv_impl` choice still wins.
    """
    _IMPLS[name] = impl
    if prefer:
        _default[device] = name


def set_conv_impl(name=None, device="cpu"):
    """Choose the implementation by name: ``"numpy"`` for the teaching version (on the CPU this also
    switches the Numba activation and pixel-shuffle kernels off), ``"numba"`` for the fast CPU kernels,
    ``None`` for the default (the fast kernels, unless the environment says ``TINYSR_KERNELS=numpy``).
    """
    if name == "numba" and device == "cpu" and "numba" not in _IMPLS:
        _load_cpu_kernels(force=True)
    if name is not None and name not in _IMPLS:
        raise ValueError(f"unknown convolution implementation {name!r}; registered: {sorted(_IMPLS)}")
    _preferred[device] = name


def _load_cpu_kernels(force=False):
    """Import ``tinysr_kernels.cpu`` once (lazily: Numba costs time to import) and register it."""
    if _autoload["cpu"] is not None and not force:
        return _autoload["cpu"]
    _autoload["cpu"] = False
    if not force and os.environ.get("TINYSR_KERNELS", "").strip().lower() in _OFF:
        return False
    try:
        import tinysr_kernels.cpu as kernels
    except ImportError as exc:  # e.g. Numba missing: the NumPy path still works, just slower
        warnings.warn(f"tinysr: the Numba CPU kernels are unavailable ({exc}); using the NumPy version")
        return False
    kernels.enable()
    _autoload["cpu"] = kernels
    return kernels


def cpu_kernels():
    """The ``tinysr_kernels.cpu`` module when the fast CPU path is in use, else None.

    Activations and pixel shuffle ask this so that ``set_conv_impl("numpy")`` or ``TINYSR_KERNELS=numpy``
    puts the whole CPU path back on the NumPy twins.
    """
    if _preferred["cpu"] == "numpy":
        return None
    kernels = _load_cpu_kernels()
    return kernels or None


_cuda_autoload = []  # [True] once tinysr_kernels.cuda has been tried


def _load_cuda_kernels():
    """Register ``tinysr_kernels.cuda.CudaConvImpl`` for "cuda" the first time a CuPy array reaches a conv.

    Lazy, so that ``import tinysr`` never imports Numba's CUDA support.  When Numba cannot compile
    CUDA kernels here (no NVVM, say), the CuPy run of the NumPy code above is used instead.
    """
    if _cuda_autoload:
        return
    _cuda_autoload.append(True)
    try:
        from tinysr_kernels.cuda.conv import CudaConvImpl
        ok, reason = CudaConvImpl.available()
    except Exception as exc:  # Numba missing, or its CUDA support failing to load
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    if ok:
        register_conv_impl(CudaConvImpl.name, CudaConvImpl, device="cuda")
    else:
        warnings.warn(f"tinysr: the Numba CUDA kernels are unavailable ({reason}); convolutions on the GPU "
                      "use CuPy running the NumPy code (correct, slower)")


def conv_impl(x):
    """The implementation used for arrays like ``x``."""
    kind = "cuda" if backend.is_cupy_array(x) else "cpu"
    name = _preferred.get(kind)
    if name is None:
        if kind == "cpu":
            _load_cpu_kernels()
        else:
            _load_cuda_kernels()
        name = _default.get(kind)
    return _IMPLS[name] if name else NumpyConvImpl


def _bias_grad(gy, impl=None):
    fast = getattr(impl, "bias_grad", None)
    return fast(gy) if fast is not None else gy.sum(axis=(0, 2, 3))


class Conv2d(Function):
    """2-D convolution; forward and backward side by side (see the module docstring)."""

    def __init__(self, stride=1, padding=0):
        self.stride, self.padding = _pair(stride), _pair(padding)

    def forward(self, x, w, b=None):
        if x.ndim != 4 or w.ndim != 4:
            raise ValueError(f"conv2d needs x (N, C, H, W) and w (O, C, kh, kw); got {x.shape} and {w.shape}")
        if x.shape[1] != w.shape[1]:
            raise ValueError(f"conv2d: the input has {x.shape[1]} channels but the weight expects {w.shape[1]}")
        self.save_for_backward(x, w)
        self.impl = conv_impl(x)
        if b is not None and getattr(self.impl, "fuses_bias", False):
            return self.impl.forward(x, w, self.stride, self.padding, bias=b)  # bias added in the kernel
        y = self.impl.forward(x, w, self.stride, self.padding)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        x, w = self.saved
        # A network's input needs no gradient: skipping it saves SRCNN's biggest col2im.
        need_x = self.inputs[0].requires_grad
        if not self.inputs[1].requires_grad:       # a frozen weight (VGG inside a perceptual loss)
            gx = self.impl.backward_data(gy, w, x.shape, self.stride, self.padding) if need_x else None
            if len(self.inputs) == 2:
                return gx, None
            return gx, None, _bias_grad(gy, self.impl) if self.inputs[2].requires_grad else None
        if hasattr(self.impl, "backward"):
            gx, gw = self.impl.backward(x, w, gy, self.stride, self.padding, need_x)
        else:
            gx = self.impl.backward_data(gy, w, x.shape, self.stride, self.padding) if need_x else None
            gw = self.impl.backward_weight(x, gy, w.shape, self.stride, self.padding)
        return (gx, gw) if len(self.inputs) == 2 else (gx, gw, _bias_grad(gy, self.impl))


class ConvTranspose2d(Function):
    """Transposed ("de-") convolution: the input-gradient of :class:`Conv2d` used as a forward pass.

    ``w`` has PyTorch's layout (C_in, C_out, kh, kw).  Every input pixel scatters a kh x kw stamp of
    its weights, scaled by its value, at stride ``s`` onto the output, whose size is
    ``(H - 1)*s - 2p + k + output_padding``; ``output_padding`` only resolves which of the several
    sizes that a stride-s convolution maps onto H is meant.
    """

    def __init__(self, stride=1, padding=0, output_padding=0):
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.output_padding = _pair(output_padding)
        for op, s in zip(self.output_padding, self.stride):
            if not 0 <= op < max(s, 1) and op != 0:
                raise ValueError(f"output_padding {op} must be smaller than the stride {s}")

    def forward(self, x, w, b=None):
        if x.ndim != 4 or w.ndim != 4:
            raise ValueError(f"conv_transpose2d needs x (N, C, H, W) and w (C, O, kh, kw); got {x.shape}, {w.shape}")
        if x.shape[1] != w.shape[0]:
            raise ValueError(f"conv_transpose2d: the input has {x.shape[1]} channels but the weight expects {w.shape[0]}")
        n, _, h, wd = x.shape
        _, o, kh, kw = w.shape
        oh = conv_transpose_output_size(h, kh, self.stride[0], self.padding[0], self.output_padding[0])
        ow = conv_transpose_output_size(wd, kw, self.stride[1], self.padding[1], self.output_padding[1])
        self.out_shape = (n, o, oh, ow)
        self.save_for_backward(x, w)
        self.impl = conv_impl(x)
        # A conv from (n, o, oh, ow) to x's size with these weights has x's shape as its output, so
        # its input-gradient is this op's forward.
        y = self.impl.backward_data(x, w, self.out_shape, self.stride, self.padding)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    def backward(self, gy):
        x, w = self.saved
        gx = self.impl.forward(gy, w, self.stride, self.padding) if self.inputs[0].requires_grad else None
        gw = self.impl.backward_weight(gy, x, w.shape, self.stride, self.padding)
        return (gx, gw) if len(self.inputs) == 2 else (gx, gw, _bias_grad(gy, self.impl))


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw).

    Returns (N, O, OH, OW) with ``OH = (H + 2*padding - kh) // stride + 1``.  Zero padding; for the
    replicate borders of the SRCNN/FSRCNN authors' code, :func:`tinysr.functional.pad` first.
    """
    args = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(stride, padding)(*args)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution of ``x`` (N, C_in, H, W) with ``weight`` (C_in, C_out, kh, kw).

    Returns (N, C_out, (H-1)*stride - 2*padding + kh + output_padding, ...).  FSRCNN's 9x9
    "deconvolution" with stride = scale is this op (Dong et al., ECCV 2016).
    """
    args = (x, weight) if bias is None else (x, weight, bias)
    return ConvTranspose2d(stride, padding, output_padding)(*args)


__all__ = ["conv2d", "conv_transpose2d", "im2col", "col2im", "Conv2d", "ConvTranspose2d",
           "register_conv_impl", "set_conv_impl", "conv_output_size", "conv_transpose_output_size",
           "NumpyConvImpl", "conv_impl", "cpu_kernels", "Tensor"]
