"""tinysr: the classic single-image super-resolution networks, rebuilt from scratch in NumPy.

Import what you need from here::

    import tinysr
    from tinysr import nn, optim, functional as F

The four calls most users need are ``tinysr.train``, ``tinysr.evaluate``, ``tinysr.upscale`` and
``tinysr.load`` (see :mod:`tinysr.api`, which gathers them from the modules that do each job).

Heavy or optional parts (data, metrics, the networks themselves) are imported on first use, so
that ``import tinysr`` stays fast and never needs a GPU.
"""
import importlib

from .version import __version__  # noqa: E402,F401

from .autograd import Tensor, Function, no_grad, enable_grad, is_grad_enabled, tensor  # noqa: E402
from . import functional, nn, optim  # noqa: E402

# ``tinysr.train`` is the training function (tinysr.fit.train); the training loop lives in tinysr.trainer.
from .fit import train  # noqa: E402

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "backend": ("tinysr.backend", None),
    "gradcheck": ("tinysr.gradcheck", None),
    "data": ("tinysr.data", None),
    "datasets": ("tinysr.data.datasets", None),
    "metrics": ("tinysr.metrics", None),
    "imresize": ("tinysr.data.resize", "imresize"),
    "modcrop": ("tinysr.data.resize", "modcrop"),
    "models": ("tinysr.models", None),
    "imread": ("tinysr.data.io", "imread"),
    "imwrite": ("tinysr.data.io", "imwrite"),
    "api": ("tinysr.api", None),
    "evaluate": ("tinysr.evaluation", "evaluate"),
    "upscale": ("tinysr.upscaling", "upscale"),
    "load": ("tinysr.shipped", "load"),
    "compare": ("tinysr.upscaling", "compare"),
}


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        value = m if attr is None else getattr(m, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tinysr' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
