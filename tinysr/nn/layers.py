"""Layers: thin Modules that hold parameters and call :mod:`tinysr.functional`.

Default initialisation follows PyTorch's (uniform in +-1/sqrt(fan_in)), so an untouched layer
behaves like its PyTorch twin; the models re-initialise with their paper's scheme
(:mod:`tinysr.nn.init`).
"""
import math

import numpy as np

from .. import functional as F
from . import init
from ..functional.sizes import pair
from .module import Module, Parameter


def _default_init(shape, fan_in):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return init.generator().uniform(-bound, bound, size=shape).astype(np.float32)


class Conv2d(Module):
    """2-D convolution layer: weight (out, in, kh, kw), bias (out,).

    ``padding_mode`` is ``"zeros"`` (the usual), ``"replicate"`` or ``"reflect"``; the non-zero modes
    pad explicitly before a convolution without padding (the SRCNN/FSRCNN authors' test code uses
    replicate borders).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 padding_mode="zeros"):
        super().__init__()
        kh, kw = pair(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kh, kw), pair(stride), pair(padding)
        if padding_mode not in ("zeros", "replicate", "reflect"):
            raise ValueError(f"padding_mode must be 'zeros', 'replicate' or 'reflect', got {padding_mode!r}")
        self.padding_mode = padding_mode
        fan_in = in_channels * kh * kw
        self.weight = Parameter(_default_init((out_channels, in_channels, kh, kw), fan_in))
        self.bias = Parameter(_default_init((out_channels,), fan_in)) if bias else None

    def forward(self, x, activation=None):
        """``x`` (N, C, H, W) -> (N, O, OH, OW); ``activation="relu"``: the ReLU of that, in the same op."""
        padding = self.padding
        if self.padding_mode != "zeros" and any(padding):
            ph, pw = padding
            x = F.pad(x, (pw, pw, ph, ph), mode=self.padding_mode)
            padding = (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, activation)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + ("" if self.bias is not None else ", bias=False")


class ConvTranspose2d(Module):
    """Transposed convolution layer: weight (in, out, kh, kw) as in PyTorch, bias (out,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True):
        super().__init__()
        kh, kw = pair(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = (kh, kw), pair(stride)
        self.padding, self.output_padding = pair(padding), pair(output_padding)
        fan_in = out_channels * kh * kw  # PyTorch computes fan-in from dim 1 of this layout
        self.weight = Parameter(_default_init((in_channels, out_channels, kh, kw), fan_in))
        self.bias = Parameter(_default_init((out_channels,), fan_in)) if bias else None

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}")


class Linear(Module):
    """Fully connected layer: weight (out, in), bias (out,)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_default_init((out_features, in_features), in_features))
        self.bias = Parameter(_default_init((out_features,), in_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class PixelShuffle(Module):
    """Sub-pixel upsampling by ``upscale_factor`` (ESPCN); no parameters."""

    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x):
        return F.pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self):
        return str(self.upscale_factor)


class MaxPool2d(Module):
    """Max over non-overlapping ``kernel_size`` windows (VGG's 2x2, stride 2). SR networks never pool:
    this exists for the VGG-19 feature extractor of SRGAN's perceptual loss."""

    def __init__(self, kernel_size=2):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return str(self.negative_slope)


class PReLU(Module):
    """PReLU with ``num_parameters`` slopes: 1 (shared, FSRCNN) or C (per channel), initialised to ``init``."""

    def __init__(self, num_parameters=1, init=0.25):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(np.full((num_parameters,), init, dtype=np.float32))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x)


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel, with running statistics as buffers."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=np.float32))
        self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
        self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self):
        return str(self.num_features)
