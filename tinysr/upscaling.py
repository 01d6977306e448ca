"""Super-resolving a photo: :func:`upscale`, :func:`compare`, and the memory they need.

::

    sr = tinysr.upscale("photo.png", model="fsrcnn", scale=3, out="photo_x3.png")   # uint8 (3H, 3W, 3)
    res = tinysr.compare("builtin:chelsea", model="fsrcnn", scale=3, out="cmp.png")  # bicubic | model | HR

A photo is RGB: a Y network super-resolves the luminance and the chroma is upsampled with bicubic, as
the papers' demos do (:func:`tinysr.infer.super_resolve`).  A large photo runs in overlapping tiles
through :func:`tinysr.infer.run_tiled` (the one tiling loop), with enough context per tile that the
result equals the untiled one, and :func:`upscale_memory` estimates the peak memory before the image
is decoded, so that a photo too large for the machine is refused in one sentence instead of swapping.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from . import checkpoint, infer, options
from .evaluation import check_scale, input_convention
from .models.common import SRModel
from .shipped import resolve_model

__all__ = ["DEFAULT_MAX_MEMORY_GB", "read_image", "image_shape", "auto_tile", "upscale_memory", "tile_margin",
           "upscale", "compare"]

#: the default ceiling of :func:`upscale`'s estimated memory, in GB (1e9 bytes)
DEFAULT_MAX_MEMORY_GB = 4.0


def read_image(image):
    """uint8 array from an array, a file path, or ``"builtin:<photo>"`` (scikit-image's sample photos)."""
    from .data import datasets
    from .data.io import ImageError, imread
    if isinstance(image, np.ndarray):
        return image
    s = os.fspath(image)
    if s.startswith("builtin:"):
        stem = s.split(":", 1)[1]
        files = dict(datasets.list_files("builtin"))
        if stem not in files:
            raise ImageError(s, "no such builtin photo", f"choose one of {', '.join(files)}")
        return imread(files[stem])
    return imread(s)


def image_shape(image):
    """``(H, W[, 3])`` of an image argument without decoding a file (PIL reads only the header)."""
    if isinstance(image, np.ndarray):
        return image.shape
    s = os.fspath(image)
    if s.startswith("builtin:"):
        return read_image(s).shape           # small sample photos
    import warnings

    from PIL import Image
    try:
        # only the header is read here, and upscale() weighs the size itself (and says so), so PIL's
        # decompression-bomb check of the pixel count would only pre-empt that sentence less precisely
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(s)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        with im:
            w, h = im.size
            return (h, w) if im.mode in ("L", "I", "I;16", "F", "1") else (h, w, 3)
    except Exception:   # noqa: BLE001 -- imread then reports the file's problem in its own sentence
        return read_image(s).shape


def auto_tile(model, shape, scale, tile):
    """Tile side in *image* pixels for an image of ``shape``, or None for one pass.

    ``tile="auto"`` tiles an image more than 1.5 tiles a side; a number is the caller's tile; None is
    one pass.
    """
    if tile != "auto":
        return None if tile is None else int(tile)
    # About 256 network-input pixels a side keeps the activations (and im2col buffers) of every zoo
    # network to a few hundred MB; a pre-upsampling network sees the image `scale` times larger.
    side = 256 // scale if getattr(model, "input_convention", "") == "bicubic-y" else 256
    return side if max(shape[:2]) > side + side // 2 else None


def _gb(nbytes):
    """``nbytes`` as a short size to print: GB from 0.1 GB up, MB below."""
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def _whole_image_net(model):
    """The network to run on whole photos: a zoo network's own twin for them, a custom Module as it is."""
    return model.inference_model() if isinstance(model, SRModel) else model


def upscale_memory(shape, model, scale, tile):
    """Estimated peak bytes of :func:`upscale` for an image of ``shape`` ``(H, W[, C])``.

    The sum of: the uint8 input; the uint8 output, counted twice (the array and the copy the PNG
    encoder makes); and the float32 working set of one pass over a tile (or of the whole image when
    ``tile`` is None): 16 bytes per network-input pixel and channel of the widest layer (its input
    and output activations and the convolution's work buffers, float32) and 96 bytes per output
    pixel (the float64 colour planes of the pipeline). Against tracemalloc's peak for the shipped
    SRCNN, FSRCNN and VDSR x3, tiled and untiled, it lies between 0.5x and 2.1x of the measured
    peak (``tests/test_reliability.py`` keeps SRCNN and FSRCNN within 2.5x either way).
    """
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    s = int(scale)
    io_bytes = h * w * c + 2 * (h * s) * (w * s) * c
    side_h, side_w = (h, w) if tile is None else (min(h, tile), min(w, tile))
    pre = getattr(model, "input_convention", "") == "bicubic-y"
    # network-input pixels of one pass, with the tile margin (pre-upsampling networks see s times more)
    margin = 0 if tile is None else 2 * tile_margin(model, s)
    px = (side_h + margin) * (side_w + margin) * (s * s if pre else 1)
    widths = [p.shape[0] for p in model.parameters() if p.ndim == 4] or [64]
    width = max(widths)
    out_px = (side_h * s) * (side_w * s)
    work = 16 * width * px + 96 * out_px
    return int(io_bytes + work)


def tile_margin(net, scale):
    """Image pixels of context each tile needs so that its centre equals the untiled result.

    Two things look past a pixel: the network (half its receptive field, in network-input pixels)
    and MATLAB's bicubic (the upsampled Cb/Cr, and the network input of pre-upsampling networks),
    whose 4-tap kernel reaches 2 pixels; one more pixel each for safety.
    """
    net_margin = infer.default_margin(net)                 # rf // 2 + 2, network-input pixels
    conv = input_convention(net)
    if conv == "bicubic-y":
        return math.ceil(net_margin / scale) + 4
    if conv == "lr-y":
        return net_margin + 4
    return net_margin


def _super_resolve_tiled(net, img, scale, tile, *, self_ensemble=False, device=None):
    """:func:`tinysr.infer.super_resolve` on overlapping tiles of ``tile`` x ``tile`` image pixels.

    The whole colour pipeline (YCbCr, bicubic chroma, bicubic network input, the network, back to
    RGB) runs per tile, with :func:`tile_margin` pixels of context, and only the tile's centre is
    kept.  Every step is local and the same at every position (MATLAB bicubic maps output pixel
    ``u`` to input ``u/s + (1 - 1/s)/2``, so a crop at an integer offset sees the same weights), hence
    the result equals the untiled one (up to float32 rounding in the GEMMs), while memory holds the
    input, the uint8 output and one tile's activations -- not the float64 copies of the whole picture.
    """
    s = int(scale)

    def run(t0, b1, l0, r1):
        # only the image's own edges get the replicate border; inner edges have real context
        h, w = img.shape[:2]
        return infer.super_resolve(net, img[t0:b1, l0:r1], s, self_ensemble=self_ensemble, device=device,
                                   sides=(t0 == 0, b1 == h, l0 == 0, r1 == w))
    return infer.run_tiled(run, img.shape[:2], tile, tile_margin(net, scale), axes=(0, 1), dtype=np.uint8)


def upscale(image, model="fsrcnn", scale=3, *, tile="auto", self_ensemble=False, out=None, device=None,
            max_memory_gb=DEFAULT_MAX_MEMORY_GB, log=None):
    """Super-resolve a photo: returns uint8 ``(scale*H, scale*W[, 3])``; writes it to ``out`` if given.

    Parameters
    ----------
    image : a path, ``"builtin:<photo>"`` (e.g. ``"builtin:chelsea"``), or a uint8 array ``(H, W[, 3])``.
        Files are read with :func:`tinysr.imread` (RGBA loses its alpha with a warning; a missing,
        truncated or non-image file raises :class:`tinysr.data.ImageError` naming it).
    model : a shipped name or registry name (``"fsrcnn"`` means the shipped ``"fsrcnn-x<scale>"``), a
        checkpoint path, or a Module.
    tile : side of a tile in pixels of ``image``; ``"auto"`` (default) tiles big images (about 256
        network-input pixels a tile), ``None`` or ``"off"`` never tiles.  Tiles overlap by the receptive
        field plus the bicubic kernel's reach, so the result equals the untiled one while memory stays
        bounded by the tile size (a 2000x2000 photo at x3: see ``benchmarks/upscale_memory.py``).
    self_ensemble : average the 8 flips/rotations (8x the time, a little sharper).
    max_memory_gb : refuse, before decoding the image, an upscale whose estimated peak memory
        (:func:`upscale_memory`: the image, the output, one tile's activations) exceeds this many GB;
        default :data:`DEFAULT_MAX_MEMORY_GB`.  ``None`` lifts the limit.
    log : a callable that is told the estimate before the work starts (the CLI prints it).

    Colour: Y networks super-resolve the luminance and upsample Cb/Cr with bicubic, as the papers'
    demos do; RGB networks take the RGB image (see :func:`tinysr.infer.super_resolve`).
    """
    from .data.io import imwrite
    scale, tile = options.check("scale", scale), options.check("tile", tile)
    max_memory_gb = options.check("max_memory_gb", max_memory_gb)
    tile = None if tile == "off" else tile
    net = _whole_image_net(resolve_model(model, scale))
    scale = check_scale(net, scale)
    shape = image_shape(image)
    t = auto_tile(net, shape, scale, tile)
    need = upscale_memory(shape, net, scale, t)
    h, w = shape[:2]
    what = (f"upscaling {w}x{h} to {w * scale}x{h * scale} needs about {_gb(need)} of memory "
            f"({'tiles of ' + str(t) + ' px' if t is not None and max(h, w) > t else 'one pass'})")
    if max_memory_gb is not None and need > max_memory_gb * 1e9:
        raise MemoryError(f"{what}, above the {max_memory_gb:g} GB limit: allow it with --max-memory "
                          f"{math.ceil(need / 1e9)} (max_memory_gb= in Python) if this machine has that much free, "
                          "or upscale a crop or a smaller copy of the image")
    if log is not None:
        log(what)
    img = read_image(image)
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {img.shape}")
    if t is None or max(img.shape[:2]) <= t:
        sr = infer.super_resolve(net, img, scale, self_ensemble=self_ensemble, device=device)
    else:
        sr = _super_resolve_tiled(net, img, scale, t, self_ensemble=self_ensemble, device=device)
    if out is not None:
        imwrite(out, sr)
    return sr


def compare(image, model="fsrcnn", scale=3, *, out=None, crop=None, tile="auto", self_ensemble=False, device=None):
    """Treat ``image`` as the ground truth: shrink it by ``scale`` (MATLAB bicubic, uint8), upscale it
    back with bicubic and with ``model``, and measure both against it (Y PSNR/SSIM, ``scale`` px shaved).

    Writes a side-by-side PNG (bicubic | model | original) to ``out`` when given; ``crop`` =
    ``(top, left, size)`` in HR pixels shows a detail instead of the whole picture.  Returns
    ``{"bicubic": {"psnr", "ssim"}, "model": {...}, "images": (bicubic, sr, hr), "out": path}``.
    The LR image here is a real 8-bit image, as a user would have, so the numbers differ slightly from
    :func:`evaluate`, whose LR stays in double precision as in the papers.  ``device`` as in :func:`upscale`.
    """
    from . import metrics
    from .data.io import check_size
    from .data.resize import imresize, modcrop
    scale = options.check("scale", scale)
    hr = read_image(image)
    check_size(hr, scale, image if not isinstance(image, np.ndarray) else None, min_lr=8)
    hr = modcrop(hr, scale)
    lr = imresize(hr, 1.0 / scale)
    bic = imresize(lr, float(scale))
    net = _whole_image_net(resolve_model(model, scale))
    sr = upscale(lr, net, scale, tile=tile, self_ensemble=self_ensemble, device=device, max_memory_gb=None)
    res = {k: {"psnr": metrics.psnr(v, hr, scale), "ssim": metrics.ssim(v, hr, scale)}
           for k, v in (("bicubic", bic), ("model", sr))}
    res["images"] = (bic, sr, hr)
    if out is not None:
        res["out"] = str(_side_by_side(out, (bic, sr, hr), res, model, scale, crop))
    return res


def _side_by_side(path, images, res, model, scale, crop):
    """Draw ``images`` (bicubic, model, original) side by side with their PSNR into the PNG ``path``."""
    # A bare Figure (no pyplot) draws off-screen without touching the session's backend, so a notebook
    # that calls compare() keeps its inline plots.
    from matplotlib.figure import Figure
    name = Path(model).stem if isinstance(model, (str, os.PathLike)) else type(model).__name__
    titles = [f"bicubic  {res['bicubic']['psnr']:.2f} dB", f"{name}  {res['model']['psnr']:.2f} dB", "original (HR)"]
    if crop is not None:
        t, l, s = crop
        images = [im[t:t + s, l:l + s] for im in images]
    h, w = images[0].shape[:2]
    fig = Figure(figsize=(12, 4.2 * h / w + 0.4))
    axes = fig.subplots(1, 3)
    for ax, im, title in zip(axes, images, titles):
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"x{scale}, Y-PSNR with {scale} px shaved", fontsize=9)
    fig.tight_layout()
    checkpoint.atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return Path(path)

