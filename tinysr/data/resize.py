"""MATLAB-compatible bicubic resizing (``imresize(img, scale, 'bicubic')``) and ``modcrop``.

Why this file exists
--------------------
Every super-resolution paper from SRCNN (Dong et al., ECCV 2014) to SwinIR makes its low-resolution
test images with MATLAB's ``imresize(HR, 1/s, 'bicubic')``.  PIL, OpenCV and ``torch.nn.functional.
interpolate`` all implement *a* bicubic filter, but not MATLAB's: MATLAB **antialiases** when it
shrinks (the cubic kernel is stretched by ``1/scale`` so that it acts as a low-pass filter), it
extends the image by **mirroring** at the border, and for ``uint8`` images it **rounds to uint8
after each of the two 1-D passes**.  Any of these differences moves PSNR by 0.1 dB or more, which is
larger than the gap between many published methods.  This module reproduces the algorithm exactly;
``../shared/data/Set5/LR_bicubic`` (made by MATLAB) comes out bit-identical.

The algorithm (MATLAB ``imresize.m``, ``contributions`` and ``resizeAlongDim``)
--------------------------------------------------------------------------------
For one dimension of length ``n_in`` resized by ``scale`` to ``n_out`` samples:

1. Output sample ``x = 1..n_out`` (1-based) sits at input coordinate ``u = x/scale + 0.5(1 - 1/scale)``
   (pixel *centres* are aligned, not pixel corners).
2. The Keys cubic kernel with ``a = -0.5`` has support ``[-2, 2]``.  When shrinking (``scale < 1``)
   it is widened: ``h(t) = scale * cubic(scale * t)``, support ``4/scale``.
3. The taps are ``floor(u - width/2) + 0..ceil(width)+1``; their weights ``h(u - tap)`` are divided
   by their sum, so a constant image stays constant.
4. Taps outside ``1..n_in`` are mirrored (``symmetric`` padding: ``... 2 1 | 1 2 ... n | n n-1 ...``).
5. The dimension with the smaller scale factor is resized first; for equal factors rows (the
   vertical axis) go first, then columns.
6. ``uint8`` input: each pass accumulates in double and is rounded half away from zero and clipped
   to ``0..255`` before the next pass.  Floating-point input stays floating point (no rounding).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["imresize", "modcrop", "cubic", "contributions", "round_half_away"]


def cubic(x):
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``'bicubic'``).

    ``W(t) = 1.5|t|^3 - 2.5|t|^2 + 1`` for ``|t| <= 1``,
    ``-0.5|t|^3 + 2.5|t|^2 - 4|t| + 2`` for ``1 < |t| <= 2``, ``0`` otherwise.
    Keys, "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981.
    """
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    # Written exactly like MATLAB's cubic() so that weights agree to the last bit.
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((1 < ax) & (ax <= 2)))


def contributions(n_in: int, n_out: int, scale: float, antialiasing: bool = True):
    """Taps and weights of one 1-D MATLAB bicubic resize.

    Returns ``(indices, weights)``, both of shape ``(n_out, P)``: output sample ``i`` is
    ``sum_p weights[i, p] * input[indices[i, p]]`` (0-based indices, already mirrored into
    ``0..n_in-1``).  ``P`` is ``ceil(4/scale) + 2`` when shrinking with antialiasing and 6 otherwise,
    minus the tap columns that are zero for every output (MATLAB drops those too).
    """
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width = kernel_width / scale
        def h(t):
            return scale * cubic(scale * t)
    else:
        h = cubic
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p, dtype=np.float64)[None, :]      # 1-based
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric extension: the sequence 1..n, n..1 repeats.
    aux = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def round_half_away(x):
    """Round to the nearest integer, halves away from zero (MATLAB's ``round``; NumPy rounds to even)."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _resize_axis(img, axis, n_out, scale, antialiasing, to_uint8):
    idx, w = contributions(img.shape[axis], n_out, scale, antialiasing)
    x = np.moveaxis(img, axis, 0)
    # Accumulate tap by tap in double, in MATLAB's order: the sum is then the same floating-point
    # value MATLAB computes, so the rounding below flips the same way even at exact .5 ties.
    acc = np.zeros((n_out,) + x.shape[1:], dtype=np.float64)
    wshape = (n_out,) + (1,) * (x.ndim - 1)
    for j in range(idx.shape[1]):
        acc += w[:, j].reshape(wshape) * x[idx[:, j]]
    if to_uint8:
        # floor(x + 0.5) equals round-half-away for x >= 0, and negatives clip to 0 either way.
        acc = np.clip(np.floor(acc + 0.5), 0, 255).astype(np.uint8)
    return np.moveaxis(acc, 0, axis)


def imresize(img, scale=None, output_shape=None, *, antialiasing: bool = True):
    """Resize an image exactly like MATLAB ``imresize(img, scale, 'bicubic')``.

    Parameters
    ----------
    img : ndarray, ``(H, W)`` or ``(H, W, C)``
        ``uint8`` images follow MATLAB's integer path: each of the two 1-D passes is rounded half
        away from zero and clipped to ``uint8`` (this is what makes the published LR sets
        reproducible bit for bit).  Float images (any range, e.g. ``[0, 1]`` or Y in ``0..255``) are
        resized in float64 with no rounding or clipping, and returned as float64 (float32 input is
        returned as float32).  Other integer types are treated as float.
    scale : float
        Scale factor, e.g. ``1/3`` to make a x3 LR image, ``3`` to upsample it back.  The output is
        ``ceil(H*scale) x ceil(W*scale)``.  For SR, ``modcrop`` the HR image first so that the sizes
        divide exactly.
    output_shape : (int, int), optional
        Output ``(H, W)`` instead of ``scale``; each axis then uses its own factor ``out/in``.
    antialiasing : bool
        MATLAB's ``'Antialiasing'`` option (on by default for bicubic): widen the kernel when shrinking.

    Returns
    -------
    ndarray with the same number of dimensions; dtype ``uint8`` for ``uint8`` input.

    Convention: the dimension with the smaller factor is resized first, rows before columns when the
    factors are equal (MATLAB ``imresize``).  Never use this for anything but ``'bicubic'``.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an (H, W) or (H, W, C) image, got shape {img.shape}")
    h, w = img.shape[:2]
    if output_shape is not None:
        oh, ow = (int(v) for v in output_shape)
        scales = (oh / h, ow / w)
    elif scale is not None:
        if np.ndim(scale) == 0:
            scale = (float(scale), float(scale))
        scales = (float(scale[0]), float(scale[1]))
        if min(scales) <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        # MATLAB: ceil(scale * size); guard against 1/3*9 = 2.9999999999999996 style products.
        oh = int(math.ceil(round(scales[0] * h, 10)))
        ow = int(math.ceil(round(scales[1] * w, 10)))
    else:
        raise ValueError("give either scale or output_shape")
    if oh < 1 or ow < 1:
        raise ValueError(f"imresize of a {h}x{w} image by {scales} gives an empty image ({oh}x{ow})")

    is_uint8 = img.dtype == np.uint8
    if is_uint8:
        out = img
    elif img.dtype == np.float32:
        out = img.astype(np.float64)
    else:
        out = img.astype(np.float64, copy=False)
    targets = (oh, ow)
    # Smallest factor first; the sort is stable, so rows go first on ties.
    order = sorted(range(2), key=lambda d: scales[d])
    for d in order:
        out = _resize_axis(out, d, targets[d], scales[d], antialiasing, is_uint8)
    if img.dtype == np.float32:
        out = out.astype(np.float32)
    return out


def modcrop(img, scale: int):
    """Crop the bottom and right of ``img`` so that its height and width are multiples of ``scale``.

    This is the first step of the SR evaluation protocol (SRCNN's ``modcrop.m``): the HR image must
    divide exactly by the scale so that ``imresize(imresize(HR, 1/s), s)`` has the HR size.
    Works on ``(H, W)`` and ``(H, W, C)`` arrays and returns a view.
    """
    img = np.asarray(img)
    s = int(scale)
    if s != scale or s < 1:
        raise ValueError(f"modcrop needs a positive integer scale, got {scale}")
    h, w = img.shape[:2]
    return img[: h - h % s, : w - w % s]
