"""Reading and writing images with Pillow, robust to what users actually have on disk.

``imread`` always gives the rest of tinysr one of two things: ``(H, W, 3)`` uint8 for colour images
and ``(H, W)`` uint8 for grayscale ones (or ``(H, W, 3)`` for everything with ``mode="RGB"``).
Whatever the file holds is brought to that form, and anything that loses information says so:

=====================  ==========================================================================
file                   what ``imread`` does
=====================  ==========================================================================
RGB, L                 returned as they are
1 (bilevel)            0/255 grayscale
RGBA, LA, PA, P+alpha  alpha dropped (a ``UserWarning`` says so; composite yourself if it matters)
P (palette)            expanded through the palette to RGB (or L when the palette is gray)
CMYK, YCbCr, LAB, HSV  converted to RGB by Pillow
I;16, I, 16-bit RGB    scaled to 8 bits (``round(v / 257)``) with a warning
F (float)              values read as 0..255, rounded, clipped, with a warning
EXIF orientation       applied, so the array looks like the photo does in a viewer
=====================  ==========================================================================

A missing, unreadable or truncated file raises :class:`ImageError` naming the file and what to do;
:func:`check_size` raises it when an image is too small for the chosen scale.  ``imwrite`` writes
atomically (a temporary file renamed into place), so an interrupted write never leaves a half file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["ImageError", "imread", "imwrite", "check_size", "convert", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


class ImageError(ValueError):
    """An image file could not be used.  The message names the file, the problem and what to do."""

    def __init__(self, path, problem: str, hint: str = ""):
        self.path = str(path) if path is not None else None
        self.problem = problem
        msg = f"{self.path}: {problem}" if self.path else problem
        if hint:
            msg += f" — {hint}"
        super().__init__(msg)


def _warn(path, what):
    warnings.warn(f"{path}: {what}", UserWarning, stacklevel=3)


def _sixteen_to_eight(a):
    # 65535 -> 255 exactly and the midpoints split evenly: v/257 is the inverse of 8->16 bit v*257.
    return np.clip(np.floor(a.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)


def _png_bit_depth(path):
    # Pillow decodes 16-bit-per-channel RGB(A) PNGs straight to 8 bits without telling; the PNG
    # header (IHDR, bytes 24 and 25) tells us the depth and colour type so we can warn about it.
    try:
        with open(path, "rb") as f:
            head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return head[24], head[25]
    except OSError:
        pass
    return None, None


def _to_array(img, path):
    """Pillow image (already loaded and oriented) -> uint8 (H, W) or (H, W, 3)."""
    mode = img.mode
    if mode in ("RGB", "L"):
        if mode == "RGB":
            depth, _ = _png_bit_depth(path)
            if depth == 16:
                _warn(path, "16-bit RGB image: reduced to 8 bits per channel")
        return np.asarray(img, dtype=np.uint8)
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        rgb = img.convert("RGBA" if has_alpha else "RGB")
        if has_alpha:
            _warn(path, "palette image with transparency: alpha channel dropped")
            rgb = rgb.convert("RGB")
        a = np.asarray(rgb, dtype=np.uint8)
        if np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]):
            return a[..., 0].copy()
        return a
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        _warn(path, f"{mode} image: alpha channel dropped (composite it onto a background first "
                    "if transparent areas matter)")
        if mode in ("LA", "La"):
            return np.asarray(img.getchannel("L"), dtype=np.uint8)
        if mode == "PA":
            img = img.convert("RGBA")
        depth, _ = _png_bit_depth(path)
        if depth == 16:
            _warn(path, "16-bit RGBA image: reduced to 8 bits per channel")
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        if mode == "I" and a.size and a.min() >= 0 and a.max() <= 255:
            return a.astype(np.uint8)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(path, f"{mode} image with values outside 0..65535",
                             "convert it to an 8-bit PNG first")
        _warn(path, f"16-bit image ({mode}): scaled to 8 bits (v / 257)")
        return _sixteen_to_eight(a)
    if mode == "F":
        _warn(path, "32-bit float image: values taken as 0..255, rounded and clipped to 8 bits")
        a = np.asarray(img, dtype=np.float64)
        return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # pragma: no cover - exotic modes
        raise ImageError(path, f"unsupported image mode {mode!r} ({e})",
                         "convert it to an 8-bit RGB or grayscale PNG") from e


def imread(path, mode=None):
    """Read an image file into a uint8 NumPy array.

    Parameters
    ----------
    path : str or Path
    mode : None, ``"RGB"`` or ``"L"``
        ``None`` (default): ``(H, W, 3)`` for colour files, ``(H, W)`` for grayscale ones (L, 1,
        16-bit gray, LA, gray palettes).  ``"RGB"``: always ``(H, W, 3)`` (gray replicated).
        ``"L"``: always ``(H, W)``; colour is reduced to BT.601 studio-range Y, rounded (MATLAB
        ``rgb2ycbcr``), the channel SR networks such as SRCNN work on.

    Raises
    ------
    ImageError
        The file does not exist, is not an image, or is truncated/corrupt; the message names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if mode not in (None, "RGB", "L"):
        raise ValueError(f"mode must be None, 'RGB' or 'L', got {mode!r}")
    p = Path(path)
    if not p.exists():
        raise ImageError(p, "file not found", "check the path (and the working directory)")
    if p.is_dir():
        raise ImageError(p, "is a folder, not an image file", "give the path of an image inside it")
    try:
        with Image.open(p) as im:
            im.load()
            try:
                oriented = ImageOps.exif_transpose(im)
            except Exception:                         # a broken EXIF block must not lose the pixels
                oriented = im
            if oriented is im:
                oriented = im.copy()
    except UnidentifiedImageError as e:
        raise ImageError(p, "not an image file that Pillow can read",
                         "check that it is a PNG/JPEG/BMP/TIFF image and not, e.g., an HTML error page "
                         "saved by a failed download") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(p, f"truncated or corrupt image ({e})",
                         "download or export the file again") from e
    except Image.DecompressionBombError as e:
        raise ImageError(p, str(e), "resize the image first") from e
    a = _to_array(oriented, p)
    if mode == "RGB" and a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif mode == "L" and a.ndim == 3:
        from .color import rgb_to_y
        a = rgb_to_y(a)
    return np.ascontiguousarray(a)


def check_size(img, scale, path=None, *, min_lr: int = 1):
    """Raise :class:`ImageError` if ``img`` is too small to make a x``scale`` LR image of ``min_lr`` px.

    ``img`` is an array ``(H, W[, C])``; after ``modcrop`` its LR version is ``H // scale`` by
    ``W // scale``, which must be at least ``min_lr`` in each direction (e.g. the patch size for
    training).  Returns ``img`` so it can be chained.
    """
    h, w = np.asarray(img).shape[:2]
    s = int(scale)
    if h // s < min_lr or w // s < min_lr:
        need = s * min_lr
        raise ImageError(path if path is not None else "<array>",
                         f"image is {w}x{h} px, too small for scale {s} (needs at least {need}x{need} "
                         f"px to give a {min_lr}x{min_lr} LR image)",
                         "use a larger image or a smaller scale/patch size")
    return img


def imwrite(path, img):
    """Write an image array to ``path`` (format from the extension, usually ``.png``), atomically.

    ``img`` is uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``, or float in ``[0, 1]``
    (rounded to 8 bits like MATLAB's ``im2uint8``).  Parent folders are created.  The data go to a
    temporary file in the same folder that is renamed into place, so a crash never leaves a partial
    image under ``path``.
    """
    from PIL import Image

    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"{path}: cannot write an array of shape {a.shape} as an image "
                         "(expected (H, W), (H, W, 3) or (H, W, 4))")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.floor(np.nan_to_num(a.astype(np.float64)) * 255.0 + 0.5), 0, 255).astype(np.uint8)
        elif np.issubdtype(a.dtype, np.integer) and a.size and a.min() >= 0 and a.max() <= 255:
            a = a.astype(np.uint8)
        else:
            raise ValueError(f"{path}: expected uint8 or float [0, 1] pixels, got {a.dtype}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{p}: unknown image extension {p.suffix!r}; use .png")
    from ..checkpoint import atomic_write_bytes
    atomic_write_bytes(p, lambda f: Image.fromarray(a).save(f, format=fmt), size_hint=a.nbytes)
    return p


def convert(src, dst, mode=None, *, scale=None):
    """Read ``src`` with :func:`imread` (all the conversions above) and write it to ``dst`` as 8-bit.

    With ``scale``, also :func:`check_size`.  Reading and checking happen before anything is
    written: when ``src`` is bad, :class:`ImageError` is raised and ``dst`` is not created.
    """
    a = imread(src, mode=mode)
    if scale is not None:
        check_size(a, scale, src)
    return imwrite(dst, a)
