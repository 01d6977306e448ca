"""A stand-in for CuPy built on NumPy, strict where CuPy is strict: the whole ``device="cuda"`` path,
run on a machine without a GPU.

What it models:

* ``ndarray`` is its own type (a NumPy subclass), so ``backend.is_cupy_array`` tells device arrays from
  host arrays and tinysr's Numba CPU kernels (which take only exact ``numpy.ndarray``) stay out of the way.
* Mixing a device array with a host array in an operation raises, as CuPy does ("Unsupported type
  <class 'numpy.ndarray'>"): a missing ``to(device)`` fails here instead of silently computing on the host.
* Reductions and scalar indexing give 0-d device arrays, not NumPy scalars.
* ``cupy.asarray`` / ``.get()`` / ``cupy.asnumpy`` are the only ways across, and they are counted.
* ``cuda.runtime.getDeviceCount()`` reports one GPU; streams and devices are no-op context managers.

What it cannot model: real kernels, asynchrony, memory limits.  The Numba CUDA kernels are tested under
Numba's simulator (``test_kernels_cuda_sim.py``); this module tests the plumbing around them.
"""
import contextlib
import sys
import types

import numpy as np

crossings = {"h2d": 0, "d2h": 0}


class ndarray(np.ndarray):
    """A "device" array: NumPy memory, CuPy's rules."""

    @property
    def device(self):
        return types.SimpleNamespace(id=0)

    def get(self):
        crossings["d2h"] += 1
        return np.array(self.view(np.ndarray))

    def __getitem__(self, key):
        return _wrap(super().__getitem__(key))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for a in inputs + tuple(kwargs.get("out", ())):
            if type(a) is np.ndarray and a.ndim > 0:
                raise TypeError(f"Unsupported type {type(a)} in cupy.{ufunc.__name__}: a host array met a "
                                "device array (fake CuPy is as strict as CuPy)")
        args = [a.view(np.ndarray) if isinstance(a, ndarray) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in kwargs["out"])
        result = getattr(ufunc, method)(*args, **kwargs)
        return _wrap(result)


def _wrap(v):
    if type(v) is np.ndarray:
        return v.view(ndarray)
    if isinstance(v, np.generic):
        return np.asarray(v).view(ndarray)  # CuPy's reductions and indexing give 0-d device arrays
    if isinstance(v, tuple):
        return tuple(_wrap(x) for x in v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def _check_args(name, args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if type(a) is np.ndarray and a.ndim > 0:
            raise TypeError(f"Unsupported type {type(a)} in cupy.{name}: a host array met a device array")
        if isinstance(a, (list, tuple)):
            _check_args(name, a, {})


def _device_function(name, fn):
    def call(*args, **kwargs):
        _check_args(name, args, kwargs)
        return _wrap(fn(*args, **kwargs))
    call.__name__ = name
    return call


def asarray(x, dtype=None):
    if isinstance(x, ndarray):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    crossings["h2d"] += 1
    return np.array(x, dtype=dtype).view(ndarray)


def array(x, dtype=None, copy=True):
    if isinstance(x, ndarray):
        return np.array(x.view(np.ndarray), dtype=dtype, copy=True).view(ndarray)
    return asarray(x, dtype)


def asnumpy(x):
    return x.get() if isinstance(x, ndarray) else np.asarray(x)


def get_array_module(*arrays):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in arrays) else np


class _Stream:
    ptr = 0

    def synchronize(self):
        """Nothing to wait for: NumPy work is finished when its call returns."""


class _Device(contextlib.nullcontext):
    def __init__(self, index=0):
        super().__init__()
        self.id = index

    def synchronize(self):
        """Nothing to wait for (see ``_Stream.synchronize``)."""


cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    get_current_stream=lambda: _Stream(),
    Device=_Device,
)


def __getattr__(name):
    # Everything else is NumPy's function, made to return device arrays and to refuse host arrays.
    value = getattr(np, name)
    if isinstance(value, np.ufunc) or isinstance(value, type) or not callable(value):
        return value  # ufuncs go through ndarray.__array_ufunc__; dtypes and constants pass as they are
    return _device_function(name, value)
