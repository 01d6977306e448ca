"""The differentiable ops of tinysr.  Each is a :class:`tinysr.Function` with its forward and backward
side by side; the lower-case functions here are what models call.

Shapes follow PyTorch: images are (N, C, H, W); conv weights (O, C, kh, kw); transposed-conv weights
(C_in, C_out, kh, kw); linear weights (out, in).
"""
from .activation import leaky_relu, prelu, relu, sigmoid, tanh
from .conv import col2im, conv2d, conv_transpose2d, im2col
from .linear import linear
from .loss import bce_with_logits, l1_loss, mse_loss
from .norm import batch_norm
from .pool import max_pool2d
from .shape import concat, flatten, pad, pixel_shuffle

__all__ = ["conv2d", "conv_transpose2d", "im2col", "col2im", "relu", "leaky_relu", "prelu", "sigmoid",
           "tanh", "batch_norm", "concat", "pad", "pixel_shuffle", "flatten", "linear", "mse_loss",
           "l1_loss", "bce_with_logits", "max_pool2d"]
