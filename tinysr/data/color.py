"""BT.601 "studio range" YCbCr, exactly as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb``.

SR papers evaluate on the luminance channel Y of YCbCr (SRCNN, Dong et al. 2014, and everyone
after): humans are most sensitive to luminance, and the early networks were trained on Y only.  The
conversion is ITU-R BT.601 with *studio range*: Y lies in ``16..235`` and Cb, Cr in ``16..240``
(not the full-range JPEG variant that OpenCV's ``COLOR_RGB2YCrCb`` and PIL's ``"YCbCr"`` use — a
classic source of "my PSNR is 0.5 dB off").  For 8-bit RGB::

    Y  =  16 + ( 65.481 R + 128.553 G +  24.966 B) / 255
    Cb = 128 + (-37.797 R -  74.203 G + 112.000 B) / 255
    Cr = 128 + (112.000 R -  93.786 G -  18.214 B) / 255

dtype rules follow MATLAB, because the papers' numbers depend on them:

* ``uint8`` in -> ``uint8`` out, **rounded** (half away from zero).  This is what SRCNN/FSRCNN's
  MATLAB code gets from ``rgb2ycbcr(im)`` on an 8-bit image.
* float in (RGB in ``[0, 1]``) -> float64 out in ``[0, 1]`` units (``Y/255``), **not rounded**.  This is
  ``rgb2ycbcr(im2double(im))``, the VDSR/DRRN variant, and what ``tinysr.metrics`` uses.
"""
from __future__ import annotations

import numpy as np

from .resize import round_half_away

__all__ = ["rgb_to_ycbcr", "ycbcr_to_rgb", "rgb_to_y", "y_from_uint8", "YCBCR_MATRIX", "YCBCR_OFFSET"]

#: Rows give Y, Cb, Cr from R, G, B in ``[0, 255]`` (then divided by 255): MATLAB's ``origT``.
YCBCR_MATRIX = np.array([[65.481, 128.553, 24.966],
                         [-37.797, -74.203, 112.0],
                         [112.0, -93.786, -18.214]], dtype=np.float64)
#: Offsets added in 8-bit units.
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)


def _check_rgb(img, fn):
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"{fn} expects an (H, W, 3) RGB image, got shape {img.shape}")
    return img


def rgb_to_ycbcr(img):
    """RGB ``(H, W, 3)`` -> YCbCr ``(H, W, 3)`` (BT.601 studio range, MATLAB ``rgb2ycbcr``).

    ``uint8`` input gives rounded ``uint8`` output (Y in 16..235); float input is read as ``[0, 1]``
    and gives float64 in ``[0, 1]`` units, unrounded.
    """
    img = _check_rgb(img, "rgb_to_ycbcr")
    if img.dtype == np.uint8:
        out = img.astype(np.float64) @ (YCBCR_MATRIX.T / 255.0) + YCBCR_OFFSET
        return np.clip(round_half_away(out), 0, 255).astype(np.uint8)
    x = img.astype(np.float64)
    return x @ (YCBCR_MATRIX.T / 255.0) + YCBCR_OFFSET / 255.0


def ycbcr_to_rgb(img):
    """YCbCr ``(H, W, 3)`` -> RGB, the inverse of :func:`rgb_to_ycbcr` (MATLAB ``ycbcr2rgb``).

    ``uint8`` in -> ``uint8`` out (rounded, clipped to 0..255); float in (``[0, 1]`` units) -> float64
    RGB in ``[0, 1]``, not clipped (clip yourself before saving).  Used to put a super-resolved Y back
    together with bicubic-upsampled Cb and Cr, as SRCNN-style pipelines do for colour output.
    """
    img = _check_rgb(img, "ycbcr_to_rgb")
    inv = np.linalg.inv(YCBCR_MATRIX)      # (YCbCr - offset) in 0..255 units -> RGB in 0..1
    if img.dtype == np.uint8:
        x = img.astype(np.float64) - YCBCR_OFFSET
        rgb = (x @ inv.T) * 255.0
        return np.clip(round_half_away(rgb), 0, 255).astype(np.uint8)
    x = img.astype(np.float64) * 255.0 - YCBCR_OFFSET
    return x @ inv.T


def rgb_to_y(img):
    """The Y (luma) channel ``(H, W)`` of an RGB image, same dtype rules as :func:`rgb_to_ycbcr`.

    ``uint8`` -> rounded ``uint8`` (SRCNN's Y); float ``[0, 1]`` -> float64 ``Y/255`` (unrounded).
    A 2-D (grayscale) image, or ``(H, W, 1)``, is returned unchanged as its own Y: grayscale test
    images such as Set14's *bridge* are used as Y directly by the papers' scripts.
    """
    img = np.asarray(img)
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[-1] == 1:
        return img[..., 0]
    img = _check_rgb(img, "rgb_to_y")
    if img.dtype == np.uint8:
        y = img.astype(np.float64) @ (YCBCR_MATRIX[0] / 255.0) + 16.0
        return np.clip(round_half_away(y), 0, 255).astype(np.uint8)
    return img.astype(np.float64) @ (YCBCR_MATRIX[0] / 255.0) + 16.0 / 255.0


def y_from_uint8(img):
    """Unrounded Y in ``0..255`` units (float64) of an 8-bit image: the metric's view of an image.

    ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` computed in float64 for ``(H, W, 3)`` uint8; a
    grayscale ``(H, W)`` or ``(H, W, 1)`` image is taken as Y itself.  This is MATLAB's
    ``255 * rgb2ycbcr(im2double(im))(:, :, 1)``, the value that PSNR/SSIM are computed on.
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return img.astype(np.float64)
    img = _check_rgb(img, "y_from_uint8")
    return img.astype(np.float64) @ (YCBCR_MATRIX[0] / 255.0) + 16.0
