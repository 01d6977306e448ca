"""Convolution and transposed convolution as differentiable ops.

A 2-D convolution (cross-correlation, as in PyTorch and Caffe) of ``x`` (N, C, H, W) with weights
``W`` (O, C, kh, kw) is

    y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x_pad[n, c, s*i + u, s*j + v].

It is linear in ``x`` and in ``W``, so its backward is two more linear maps: the input gradient (the
adjoint in x) and the weight gradient (the adjoint in W).  The input gradient of a convolution is the
forward pass of a *transposed* convolution, and the reverse: the two ops below are each other's
backward and share the same three maps.

How the maps are computed -- im2col + GEMM or Winograd's minimal filtering, in NumPy
(:mod:`.conv_reference`, the version to read) or in Numba/CUDA kernels -- is chosen per layer by
:mod:`.dispatch`; the ops here only call what it returns.
"""
from ..autograd import Function, Tensor
from .activation import relu_, relu_grad
from .dispatch import conv_impl, cpu_kernels, register_conv_impl, set_conv_impl  # noqa: F401
from .conv_reference import (NumpyConvImpl, WinogradImpl, col2im, conv_output_size,  # noqa: F401
                             conv_transpose_output_size, im2col)
from .sizes import pair


def _bias_grad(gy, impl=None):
    fast = getattr(impl, "bias_grad", None)
    return fast(gy) if fast is not None else gy.sum(axis=(0, 2, 3))


class Conv2d(Function):
    """2-D convolution, optionally followed by a ReLU; forward and backward side by side (see the module
    docstring).

    With ``activation="relu"`` the op is ``relu(conv(x, w) + b)`` in one step: where the implementation
    can (``fuses_relu``), the ReLU is applied as the output is written and its gradient mask as the
    output gradient is read, so neither pass over memory of a separate ReLU op happens.  Otherwise the
    same numbers come from the plain convolution and ``max(y, 0)``.
    """

    def __init__(self, stride=1, padding=0, activation=None):
        if activation not in (None, "relu"):
            raise ValueError(f"conv2d: activation must be None or 'relu', got {activation!r}")
        self.stride, self.padding = pair(stride), pair(padding)
        self.relu = activation == "relu"

    def forward(self, x, w, b=None):
        if x.ndim != 4 or w.ndim != 4:
            raise ValueError(f"conv2d needs x (N, C, H, W) and w (O, C, kh, kw); got {x.shape} and {w.shape}")
        if x.shape[1] != w.shape[1]:
            raise ValueError(f"conv2d: the input has {x.shape[1]} channels but the weight expects {w.shape[1]}")
        self.save_for_backward(x, w)
        self.impl = conv_impl(x, w.shape, self.stride, self.padding)
        if self.relu and b is not None and getattr(self.impl, "fuses_relu", False):
            self.y = self.impl.forward(x, w, self.stride, self.padding, bias=b, relu=True)
            return self.y
        if b is not None and getattr(self.impl, "fuses_bias", False):
            y = self.impl.forward(x, w, self.stride, self.padding, bias=b)  # bias added in the kernel
        else:
            y = self.impl.forward(x, w, self.stride, self.padding)
            if b is not None:
                y += b.reshape(1, -1, 1, 1)
        if self.relu:
            # The output, not a mask, is kept: it is alive anyway as the next layer's input.
            self.y = y = relu_(y)
        return y

    def backward(self, gy):
        x, w = self.saved
        fused = getattr(self.impl, "backward_fused", None)
        if fused is not None and len(self.inputs) == 3 and all(t.requires_grad for t in self.inputs[1:]):
            return fused(x, w, gy, self.stride, self.padding, self.inputs[0].requires_grad,
                         self.y if self.relu else None)
        if self.relu:
            gy = relu_grad(self.y, gy)
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
        self.stride, self.padding = pair(stride), pair(padding)
        self.output_padding = pair(output_padding)
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
        self.impl = conv_impl(x, w.shape, self.stride, self.padding, x_shape=self.out_shape)
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


def conv2d(x, weight, bias=None, stride=1, padding=0, activation=None):
    """2-D convolution (cross-correlation) of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw).

    Returns (N, O, OH, OW) with ``OH = (H + 2*padding - kh) // stride + 1``.  Zero padding; for the
    replicate borders of the SRCNN/FSRCNN authors' code, :func:`tinysr.functional.pad` first.
    ``activation="relu"`` returns ``relu(conv2d(x, weight, bias))``, the same numbers, computed as one op
    (see :class:`Conv2d`): VDSR's twenty layers are this pair.
    """
    args = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(stride, padding, activation)(*args)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Transposed convolution of ``x`` (N, C_in, H, W) with ``weight`` (C_in, C_out, kh, kw).

    Returns (N, C_out, (H-1)*stride - 2*padding + kh + output_padding, ...).  FSRCNN's 9x9
    "deconvolution" with stride = scale is this op (Dong et al., ECCV 2016).
    """
    args = (x, weight) if bias is None else (x, weight, bias)
    return ConvTranspose2d(stride, padding, output_padding)(*args)


__all__ = ["conv2d", "conv_transpose2d", "im2col", "col2im", "Conv2d", "ConvTranspose2d",
           "register_conv_impl", "set_conv_impl", "conv_output_size", "conv_transpose_output_size",
           "NumpyConvImpl", "WinogradImpl", "conv_impl", "cpu_kernels", "Tensor"]
