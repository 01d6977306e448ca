"""Which code runs a convolution: the one place that registers implementations and chooses among them.

Two choices are made for every convolution, here and nowhere else:

* the **backend**, by the array's device: ``"numpy"`` (the readable twins of
  :mod:`.conv_reference`, always present), ``"numba"`` (``tinysr_kernels.cpu``, loaded at the first
  CPU convolution) or ``"cuda"`` (``tinysr_kernels.cuda``, loaded at the first CuPy convolution);
* the **algorithm**, by the layer's shape: ``"im2col"`` (any convolution), ``"winograd2"``,
  ``"winograd4"`` or ``"winograd6"`` (Winograd's F(2x2,3x3) / F(4x4,3x3) / F(6x6,3x3), stride-1 3x3
  layers only; see :func:`choose`).

Ops ask :func:`conv_impl` for an object with the three maps of :class:`.conv_reference.NumpyConvImpl`
and call it; they never ask which backend it is.  Activations and pixel shuffle ask :func:`cpu_kernels`.

Environment variables (read at every choice, so a test may set them):

``TINYSR_KERNELS=numpy``
    keep the CPU on the NumPy twins (convolutions, activations, pixel shuffle).
``TINYSR_CONV=im2col|winograd2|winograd4|winograd6`` (default ``auto``)
    force the algorithm of every layer it applies to (other layers keep im2col).

Global state.  Importing tinysr changes nothing in NumPy or Numba.  The first CPU convolution that
uses the Numba backend imports ``tinysr_kernels.cpu``, which (see its ``threads`` module) picks Numba's
threading layer, starts its workers with sleeping idle threads, and sets NumPy's OpenBLAS to one
thread (tinysr splits its GEMMs over threads itself; ``TINYSR_BLAS_THREADS=keep`` leaves OpenBLAS
alone).  That is the whole list.
"""
import os
import warnings

from .. import backend
from ..autograd import is_grad_enabled
from .conv_reference import NumpyConvImpl, WinogradImpl, filter_cache, winograd_tiles, winograd_usable

ALGORITHMS = ("im2col", "winograd2", "winograd4", "winograd6")

# (backend, algorithm) -> implementation.  The NumPy twins are always registered.
_registry = {("numpy", "im2col"): NumpyConvImpl,
             ("numpy", "winograd2"): WinogradImpl(2),
             ("numpy", "winograd4"): WinogradImpl(4),
             ("numpy", "winograd6"): WinogradImpl(6)}
_chosen = {"cpu": None, "cuda": None}   # set_conv_impl's backend per device kind; None = the default
_loaded = {}                            # "cpu"/"cuda" -> the kernel module once tried (or False)

# Winograd's transformed filters are kept between calls only at inference (see FilterCache).
filter_cache.active = lambda: not is_grad_enabled()


def register_conv_impl(name, impl, device="cpu", algorithm="im2col"):
    """Make ``impl`` the ``algorithm`` of backend ``name`` (the default backend of ``device`` unless set).

    ``impl`` has ``forward``, ``backward_data`` and ``backward_weight`` with the signatures of
    :class:`NumpyConvImpl`; optionally ``fuses_bias = True`` (``forward`` takes ``bias=``),
    ``fuses_relu = True`` (``forward`` also takes ``relu=``), a fused ``backward(x, w, gy, stride, padding,
    need_x)`` -> ``(gx, gw)``, ``backward_fused(x, w, gy, stride, padding, need_x, relu_out)`` -> ``(gx,
    gw, gb)`` (the output gradient masked by ``relu_out > 0`` when given) and ``bias_grad(gy)``.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown convolution algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    _registry[(name, algorithm)] = impl


def set_conv_impl(name=None, device="cpu"):
    """Choose the backend by name: ``"numpy"`` for the teaching version (on the CPU this also switches
    the Numba activation and pixel-shuffle kernels off), ``"numba"`` for the fast CPU kernels, ``None``
    for the default (the fast kernels unless ``TINYSR_KERNELS=numpy``)."""
    if name == "numba" and device == "cpu":
        _load("cpu", force=True)
    if name is not None and (name, "im2col") not in _registry:
        names = sorted({b for b, _ in _registry})
        raise ValueError(f"unknown convolution implementation {name!r}; registered: {names}")
    _chosen[device] = name


def _kernels_off():
    value = os.environ.get("TINYSR_KERNELS", "").strip().lower()
    if value not in ("", "numpy", "numba"):
        raise ValueError(f"TINYSR_KERNELS={value!r} is not understood: set it to 'numpy' (the NumPy twins) or unset it")
    return value == "numpy"


def _load(kind, force=False):
    """Import the kernel package for ``kind`` once and register what it offers; the module or False."""
    if kind in _loaded and not (force and not _loaded[kind]):
        return _loaded[kind]
    _loaded[kind] = False
    if kind == "cpu":
        if not force and _kernels_off():
            del _loaded[kind]              # asked again once the variable changes
            return False
        try:
            import tinysr_kernels.cpu as kernels
        except ImportError as exc:  # e.g. Numba missing: the NumPy path still works, just slower
            warnings.warn(f"tinysr: the Numba CPU kernels are unavailable ({exc}); using the NumPy version")
            return False
        kernels.enable()
        for algorithm, impl in kernels.CONV_IMPLS.items():
            register_conv_impl("numba", impl, "cpu", algorithm)
        _loaded[kind] = kernels
        return kernels
    try:
        from tinysr_kernels.cuda.conv import CudaConvImpl
        ok, reason = CudaConvImpl.available()
    except Exception as exc:  # Numba missing, or its CUDA support failing to load
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        warnings.warn(f"tinysr: the Numba CUDA kernels are unavailable ({reason}); convolutions on the GPU "
                      "use CuPy running the NumPy code (correct, slower)")
        return False
    register_conv_impl("cuda", CudaConvImpl, "cuda")
    _loaded[kind] = True
    return True


def _backend(kind):
    name = _chosen[kind]
    if name is not None:
        return name
    if kind == "cuda":
        return "cuda" if _load("cuda") else "numpy"
    return "numba" if not _kernels_off() and _load("cpu") else "numpy"


def cpu_kernels():
    """The ``tinysr_kernels.cpu`` module when the CPU runs the Numba backend, else None."""
    if _chosen["cpu"] == "numpy" or (_chosen["cpu"] is None and _kernels_off()):
        return None
    return _load("cpu") or None


def forced_algorithm():
    """The algorithm ``TINYSR_CONV`` forces, or None for the automatic choice."""
    value = os.environ.get("TINYSR_CONV", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in ALGORITHMS:
        raise ValueError(f"TINYSR_CONV={value!r} is not understood: set it to auto, {', '.join(ALGORITHMS)}")
    return value


def choose(x_shape, w_shape, stride, padding, backend_name="numba"):
    """The algorithm for a convolution of ``x_shape`` with ``w_shape`` on ``backend_name``.

    ``TINYSR_CONV`` wins wherever its algorithm applies (Winograd: stride-1 3x3, padding 0-2).
    Otherwise the rule, measured with the Numba kernels on 3x3 layers (the numbers are in
    ``benchmarks/README.md``, "Winograd"): Winograd pays where the GEMMs carry the cost, i.e. with at
    least 32 input and 32 output channels -- the tile transforms' work grows with the channels, the
    GEMMs' with their square, and at 16 channels the transforms dominate and im2col wins.  F(4x4,3x3)
    (4x fewer multiplies, 36 positions) beats F(2x2,3x3) (2.25x, 16 positions) once the map holds at
    least 4 x 4 output tiles of 4 x 4 pixels (13 x 13 pixels and up); on smaller maps F(4x4)'s
    overhanging tiles waste too much.  F(6x6,3x3) (5.1x, 64 positions) takes over where, overhang
    included, it needs at most 3/4 of F(4x4)'s multiplies (:func:`winograd_multiplies`): its transforms
    cost about as much per pixel as F(4x4)'s, so it pays only where its GEMMs shrink by more than the
    nominal 21%.  A 64 -> 64 layer's forward and all gradients, two threads, interleaved: VDSR's 41 x 41
    (0.72) 7-13% faster on F(6x6); EDSR's 48 x 48 and a 24 x 24 map (0.79) the same on either; one
    256 x 256 image (0.80) 11-15% faster on F(6x6), which the 3/4 rule leaves on F(4x4).  Layers with
    few channels (SRCNN, FSRCNN's mapping, every first and last layer) stay on im2col, whose Numba path
    also has direct kernels for 1-3 output channels.  The NumPy backend keeps im2col unless forced: it
    is the version to read first.
    """
    forced = forced_algorithm()
    if forced is not None:
        return forced if forced == "im2col" or winograd_usable(x_shape, w_shape, stride, padding) else "im2col"
    if backend_name != "numba" or not winograd_usable(x_shape, w_shape, stride, padding):
        return "im2col"
    o, c = w_shape[0], w_shape[1]
    if c < 32 or o < 32:
        return "im2col"
    oh, ow = x_shape[2] + 2 * padding[0] - 2, x_shape[3] + 2 * padding[1] - 2
    th, tw = winograd_tiles(oh, ow, 4)
    if th < 4 or tw < 4:
        return "winograd2"
    return "winograd6" if winograd_multiplies(oh, ow, 6) <= 0.75 * winograd_multiplies(oh, ow, 4) else "winograd4"


def winograd_multiplies(oh, ow, m):
    """Elementwise multiplies per channel pair of F(m x m, 3 x 3) on an OH x OW output, overhanging tiles
    included: ``(m + 2)**2`` per tile.  F(6x6,3x3) needs 64 per 36 pixels against F(4x4,3x3)'s 36 per 16,
    but its larger tiles overhang more (41 x 41: 7 x 7 tiles of 6 cover 42 x 42, 11 x 11 tiles of 4 cover
    44 x 44; 48 x 48: both exact)."""
    th, tw = winograd_tiles(oh, ow, m)
    return (m + 2) ** 2 * th * tw


def conv_impl(x, w_shape=None, stride=(1, 1), padding=(0, 0), x_shape=None):
    """The implementation that runs a convolution of ``x`` (or of an input of ``x_shape``) with weights
    of ``w_shape``; without ``w_shape``, the backend's im2col implementation (which handles any layer)."""
    kind = "cuda" if backend.is_cupy_array(x) else "cpu"
    name = _backend(kind)
    algorithm = "im2col"
    if w_shape is not None and x.dtype.kind == "f":
        algorithm = choose(x.shape if x_shape is None else x_shape, w_shape, stride, padding, name)
    return _registry.get((name, algorithm)) or _registry[(name, "im2col")]


__all__ = ["ALGORITHMS", "register_conv_impl", "set_conv_impl", "cpu_kernels", "forced_algorithm", "choose",
           "conv_impl"]
