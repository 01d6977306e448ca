"""Weight initialisers used by the papers, and the seeded generator they draw from.

* ``normal_(w, std)``: Gaussian with a fixed std -- SRCNN (std 0.001), FSRCNN (0.001 for the
  deconvolution).
* ``kaiming_normal_`` / ``kaiming_uniform_``: He et al., ICCV 2015 -- VDSR, DRRN, EDSR; keeps the
  variance of activations constant through ReLU layers (std = gain / sqrt(fan_in)).
* ``xavier_uniform_`` / ``xavier_normal_``: Glorot & Bengio, AISTATS 2010.

All draw from one NumPy generator; :func:`seed` (also ``tinysr.manual_seed``) fixes it, so a seed
fixes every initial weight.
"""
import math

import numpy as np

from .. import backend

_rng = np.random.default_rng(0)


def seed(value):
    """Reset the generator that every initialiser draws from."""
    global _rng
    _rng = np.random.default_rng(value)


def generator():
    return _rng


def fans(shape, transposed=False):
    """(fan_in, fan_out) of a weight: conv (O, C, kh, kw) -> (C*kh*kw, O*kh*kw); linear (out, in).

    For a transposed conv (C_in, C_out, kh, kw) the roles swap, as in PyTorch.
    """
    if len(shape) < 2:
        raise ValueError(f"fan-in/fan-out need at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    return fan_in, fan_out


def _fill(param, values):
    data = param.data
    param.data = backend.to_device(values.astype(data.dtype), param.device)
    return param


def normal_(param, std=0.01, mean=0.0):
    """Fill with N(mean, std^2)."""
    return _fill(param, _rng.normal(mean, std, size=param.shape))


def uniform_(param, low=-0.1, high=0.1):
    return _fill(param, _rng.uniform(low, high, size=param.shape))


def zeros_(param):
    return _fill(param, np.zeros(param.shape))


def constant_(param, value):
    return _fill(param, np.full(param.shape, value))


def _gain(nonlinearity, a=0.0):
    if nonlinearity in ("relu",):
        return math.sqrt(2.0)
    if nonlinearity in ("leaky_relu", "prelu"):
        return math.sqrt(2.0 / (1 + a * a))
    if nonlinearity in ("linear", "identity", "conv", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def kaiming_normal_(param, a=0.0, nonlinearity="relu", mode="fan_in"):
    """He initialisation: N(0, gain^2 / fan), gain = sqrt(2 / (1 + a^2)) for (leaky) ReLU."""
    fan_in, fan_out = fans(param.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    return normal_(param, _gain(nonlinearity, a) / math.sqrt(fan))


def kaiming_uniform_(param, a=0.0, nonlinearity="relu", mode="fan_in"):
    """He initialisation, uniform on [-b, b] with b = gain * sqrt(3 / fan)."""
    fan_in, fan_out = fans(param.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(param, -bound, bound)


def xavier_uniform_(param, gain=1.0):
    """Glorot initialisation, uniform on [-b, b] with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(param.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(param, -bound, bound)


def xavier_normal_(param, gain=1.0):
    """Glorot initialisation, N(0, gain^2 * 2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(param.shape)
    return normal_(param, gain * math.sqrt(2.0 / (fan_in + fan_out)))
