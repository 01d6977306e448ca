"""Devices and array modules.

tinysr writes every op once against an *array module* ``xp``: NumPy on the CPU, CuPy on a CUDA
GPU.  This file is the only place that knows which is which.  CuPy is imported lazily, the first
time a GPU is asked for, so that ``import tinysr`` never needs a GPU or CuPy.

Devices are named as in PyTorch: ``"cpu"``, ``"cuda"`` (the current GPU) or ``"cuda:N"``.

Moving data between host and GPU is slow next to the GPU's arithmetic (a PCIe copy runs at
~25 GB/s, the GPU's memory at 1-3 TB/s) and it makes the CPU wait.  So a model moves once
(``model.to("cuda")``), a batch moves once per step, and ops never move anything.  Every move made
through this module is counted (:func:`transfer_counts`, :func:`count_transfers`) so that a test can
check that a training step makes none but the batch's.
"""
import contextlib

import numpy as np

_cupy = None  # the cupy module once imported

# Copies made through to_device / as_numpy: host->device, device->host, device->device, and bytes.
_transfers = {"h2d": 0, "d2h": 0, "d2d": 0, "bytes": 0}

_INSTALL = ("install the GPU extra with `pip install 'tinysr[gpu]'` (CUDA 12) or "
            "`pip install 'tinysr[gpu-cuda13]'` (CUDA 13)")


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
            index = int(name[5:])
        except ValueError:
            pass
        else:
            if index >= 0:
                return "cuda", index
    raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def cupy_module():
    """Import and return CuPy, or raise a :class:`DeviceError` that says in one sentence what to install."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ModuleNotFoundError as e:
        if e.name not in (None, "cupy"):  # CuPy is there but one of its own imports is missing
            raise DeviceError(f"device='cuda' needs CuPy, which is installed but failed to import ({e}): "
                              f"reinstall it, or {_INSTALL}, or use device='cpu'.") from None
        raise DeviceError(f"device='cuda' needs CuPy, which is not installed: {_INSTALL}, "
                          "or use device='cpu'.") from None
    except Exception as e:  # a CUDA library that fails to load, a CuPy built for another CUDA ...
        raise DeviceError(f"device='cuda' needs CuPy, which is installed but failed to load ({type(e).__name__}: "
                          f"{e}): {_INSTALL} for the CUDA version of your driver, or use device='cpu'.") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        n, reason = 0, f"{type(e).__name__}: {e}"
    else:
        reason = "no CUDA device is visible"
    if n == 0:
        raise DeviceError(f"device='cuda' was asked for, but CuPy finds no usable NVIDIA GPU ({reason}): "
                          "run on a machine with an NVIDIA GPU and its driver installed, or use device='cpu'.")
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
    """Whether ``x`` is a CuPy array (False, without importing CuPy, when no GPU was ever asked for)."""
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


def _count(kind, x):
    _transfers[kind] += 1
    _transfers["bytes"] += int(getattr(x, "nbytes", 0))


def to_device(x, device):
    """Move an array to ``device`` (the same object, uncopied, when it is already there).

    ``x`` is a NumPy or CuPy array (or anything ``numpy.asarray`` takes).  Every copy is counted
    (see :func:`transfer_counts`).
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        if is_cupy_array(x):
            _count("d2h", x)
            return x.get()
        return np.asarray(x)
    cp = cupy_module()
    if is_cupy_array(x):
        if index is None or x.device.id == index:
            return x
        with cp.cuda.Device(index):
            _count("d2d", x)
            return cp.array(x, copy=True)
    x = np.asarray(x)
    _count("h2d", x)
    if index is None:
        return cp.asarray(x)
    with cp.cuda.Device(index):
        return cp.asarray(x)


def as_numpy(x):
    """A NumPy copy/view of an array from any device (a GPU array is copied to the host, and counted)."""
    if is_cupy_array(x):
        _count("d2h", x)
        return x.get()
    return np.asarray(x)


def move_batch(batch, device):
    """Move a batch -- an array, a Tensor, or a tuple/list/dict of them -- to ``device`` in one call.

    A training step that moves its batch with one call makes only the batch's own host-to-device
    copies (``(lr, hr)``: two copies).  Arrays go through :func:`to_device`; any other value with a
    ``to(device)`` method (a :class:`~tinysr.autograd.Tensor`, which keeps ``requires_grad``) moves
    itself, so this engine module needs no knowledge of the classes built on it; other values pass
    through.
    """
    if isinstance(batch, np.ndarray) or is_cupy_array(batch):
        return to_device(batch, device)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_batch(v, device) for v in batch)
    if callable(getattr(batch, "to", None)):
        return batch.to(device)
    return batch


def transfer_counts():
    """Copies made so far through :func:`to_device` / :func:`as_numpy`:
    ``{"h2d": ..., "d2h": ..., "d2d": ..., "bytes": ...}`` (a snapshot)."""
    return dict(_transfers)


@contextlib.contextmanager
def count_transfers():
    """Count the copies made inside a ``with`` block::

        with backend.count_transfers() as moved:
            loss = train_step(model, batch)
        assert moved["h2d"] == 2 and moved["d2h"] == 0   # the batch in, nothing out

    The yielded dict is filled in when the block ends.  It sees copies made through this module;
    CuPy itself refuses implicit ones (``numpy.asarray(gpu_array)`` raises), and the GPU tests also
    watch ``cupy.asarray`` and synchronising reads such as ``float(gpu_scalar)``.
    """
    before = dict(_transfers)
    counts = {}
    try:
        yield counts
    finally:
        counts.update({k: _transfers[k] - before[k] for k in _transfers})


def synchronize(device=None):
    """Wait until the GPU has finished the work queued so far (a no-op on the CPU).

    GPU operations are asynchronous: a CuPy call or a kernel launch returns as soon as the work is
    queued.  Time a GPU with ``synchronize()`` before reading the clock, or you time the queueing.
    ``device`` (``"cuda:N"``) waits for that GPU; the default waits for the current stream.
    """
    if _cupy is None:
        return
    kind, index = parse_device(device)
    if kind == "cpu":
        return
    if index is None:
        _cupy.cuda.get_current_stream().synchronize()
    else:
        _cupy.cuda.Device(index).synchronize()
