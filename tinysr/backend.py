"""Devices and array modules.

tinysr writes every op once against an *array module* ``xp``: NumPy on the CPU, CuPy on a CUDA
GPU.  This file is the only place that knows which is which.  CuPy is imported lazily, the first
time a GPU is asked for, so that ``import tinysr`` never needs a GPU or CuPy.

Devices are named as in PyTorch: ``"cpu"``, ``"cuda"`` (the current GPU) or ``"cuda:N"``.
"""
import numpy as np

_cupy = None  # the cupy module once imported


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide (with what to do about it)."""


def parse_device(device):
    """Split a device name into ``(kind, index)``: ``"cuda:1"`` -> ``("cuda", 1)``, ``"cpu"`` -> ``("cpu", None)``."""
    if device is None:
        return "cpu", None
    if not isinstance(device, str):
        raise DeviceError(f"a device is a string such as 'cpu', 'cuda' or 'cuda:0', not {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu", None
    if name == "cuda" or name == "gpu":
        return "cuda", None
    if name.startswith("cuda:"):
        try:
            return "cuda", int(name[5:])
        except ValueError:
            pass
    raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def cupy_module():
    """Import and return CuPy, or raise a :class:`DeviceError` that says how to install it."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        raise DeviceError(
            "device='cuda' needs CuPy and an NVIDIA GPU: install the GPU extra with "
            "`pip install 'tinysr[gpu]'` (CUDA 12) or `pip install 'tinysr[gpu-cuda13]'` (CUDA 13), "
            f"or use device='cpu' (CuPy failed to import: {e})"
        ) from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        n = 0
        reason = str(e)
    else:
        reason = "no CUDA device is visible"
    if n == 0:
        raise DeviceError(
            f"device='cuda' was asked for but this machine has no usable NVIDIA GPU ({reason}); "
            "use device='cpu', or run on a machine with a GPU and the CUDA driver installed"
        )
    _cupy = cupy
    return cupy


def check_device(device):
    """Validate ``device`` early (before any work is done); returns its canonical name."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return "cpu"
    cp = cupy_module()
    if index is not None and index >= cp.cuda.runtime.getDeviceCount():
        raise DeviceError(f"device 'cuda:{index}' does not exist: this machine has "
                          f"{cp.cuda.runtime.getDeviceCount()} GPU(s)")
    return "cuda" if index is None else f"cuda:{index}"


def is_cupy_array(x):
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def get_array_module(x):
    """The module (``numpy`` or ``cupy``) whose arrays ``x`` is made of."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def device_of(x):
    """The device name of an array: ``"cpu"`` or ``"cuda:N"``."""
    if is_cupy_array(x):
        return f"cuda:{x.device.id}"
    return "cpu"


def to_device(x, device):
    """Move an array to ``device`` (a no-op when it is already there)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        if is_cupy_array(x):
            return x.get()
        return np.asarray(x)
    cp = cupy_module()
    if index is None:
        return cp.asarray(x)
    with cp.cuda.Device(index):
        return cp.asarray(x)


def as_numpy(x):
    """A NumPy copy/view of an array from any device."""
    return x.get() if is_cupy_array(x) else np.asarray(x)
