"""Inference: tiled forward passes for big images, the x8 self-ensemble, and colour handling.

**Tiling.** A convolutional network's output pixel depends only on the input pixels inside its
receptive field.  So a big image can be cut into tiles, each tile run with a *margin* of context of at
least the receptive-field radius on every side, and the centre of each result pasted into the output:
the pasted pixels are exactly those of the untiled run (up to float32 rounding of the GEMMs), while
memory is bounded by the tile size.  At the image border the margin is simply cut off, where the
untiled run sees the same border (see **Borders**).

**Self-ensemble** (Timofte et al., CVPR 2016; EDSR, Lim et al. 2017): run the network on the 8 flips
and rotations of the input, undo each transform on the output, and average.  It costs 8 passes and
gains ~0.1 dB for free at test time.

**Colour.** Networks trained on luminance (SRCNN to DRRN) see only Y of BT.601 YCbCr; the chroma
channels Cb and Cr are upsampled with bicubic interpolation and the three are recombined, as the
papers' demos do.  RGB networks (SRResNet, EDSR) take the RGB image as it is.

**Borders.** A network trained on patches with zero padding sees black beyond the image edge, and its
output darkens along the border (a visible line on the right and bottom of an FSRCNN upscale).  So by
default (``border="replicate"``) the network input is first extended by its receptive-field radius with
copies of the edge pixels -- what the SRCNN/FSRCNN authors' test code does inside every layer -- and
the extra output is cropped off.  Only pixels within that radius of the edge change; networks that pad
with replicate borders themselves are run as they are; ``border="zeros"`` gives the raw network.
"""
import numpy as np

from . import backend
from .autograd import Tensor, no_grad

_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _transform(x, k, flip):
    x = np.rot90(x, k, axes=(-2, -1))
    return x[..., ::-1] if flip else x


def _untransform(x, k, flip):
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, -k, axes=(-2, -1))


def _zero_padded(model):
    """True when some convolution of ``model`` pads with zeros (so its output darkens at the borders)."""
    from .nn import Conv2d
    return any(isinstance(m, Conv2d) and m.padding_mode == "zeros" and any(m.padding) for m in model.modules())


def _run(model, x, device):
    with no_grad():
        y = model(Tensor(backend.to_device(np.ascontiguousarray(x, dtype=np.float32), device)))
    return backend.as_numpy(y.data)


def _place(model, device):
    """The device to run on; moves ``model`` there first when it lives elsewhere (its input will be there)."""
    have = getattr(model, "device", "cpu")
    if device is None:
        return have
    want = backend.check_device(device)
    if want == have or (want == "cuda" and have.startswith("cuda")):
        return have
    model.to(want)
    return want


def default_margin(model):
    """Context (input pixels) added around each tile: the receptive-field radius plus a safety pixel."""
    rf = getattr(model, "receptive_field", None)
    if rf is None:
        raise ValueError(f"{type(model).__name__} does not say its receptive field; pass margin= to tile safely")
    return int(rf) // 2 + 2


def run_tiled(run, size, tile, margin, *, axes=(-2, -1), dtype=None):
    """Stitch ``run`` over overlapping tiles of an image of ``size = (H, W)`` pixels: the one tiling loop.

    The image is cut into ``tile`` x ``tile`` tiles; ``run(top, bottom, left, right)`` computes the
    result for the window of the tile widened by ``margin`` pixels of context on each side (cut off at
    the image's edges), and only the tile's own part of that result is kept.  The spatial axes of the
    results are ``axes``; their scale ``s`` (output pixels per input pixel) is read off the first tile
    and must be an integer.  Returns an array of ``(H*s, W*s)`` on ``axes`` (``dtype``, default the
    results' own), equal to ``run`` on the whole image wherever ``margin`` covers the reach of a pixel.
    """
    h, w = size
    tile = int(tile)
    if tile <= 0:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    ax_h, ax_w = axes

    def at(arr, rows, cols):
        idx = [slice(None)] * arr.ndim
        idx[ax_h], idx[ax_w] = rows, cols
        return tuple(idx)
    out, s = None, None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(top - margin, 0), max(left - margin, 0)
            b1, r1 = min(bottom + margin, h), min(right + margin, w)
            y = run(t0, b1, l0, r1)
            if out is None:
                s = y.shape[ax_w] / (r1 - l0)
                if s != int(s) or y.shape[ax_h] != int(s) * (b1 - t0):
                    raise ValueError("tiled inference needs an output that is an integer multiple of the input "
                                     f"size; this model maps {(b1 - t0, r1 - l0)} to "
                                     f"{(y.shape[ax_h], y.shape[ax_w])} (for SRCNN, use padding='same')")
                s = int(s)
                shape = list(y.shape)
                shape[ax_h], shape[ax_w] = h * s, w * s
                out = np.empty(shape, dtype=dtype or y.dtype)
            out[at(out, slice(top * s, bottom * s), slice(left * s, right * s))] = \
                y[at(y, slice((top - t0) * s, (bottom - t0) * s), slice((left - l0) * s, (right - l0) * s))]
    return out


def forward_tiled(model, x, tile, margin=None, device="cpu"):
    """Run ``model`` on ``x`` (N, C, H, W) in tiles of ``tile`` x ``tile`` input pixels.

    Each tile is run with ``margin`` extra input pixels of context on each side (default: from the
    model's receptive field), and only its centre is kept (:func:`run_tiled`).  The output scale (1
    for networks fed a bicubic-upsampled image, ``s`` for those that upsample themselves) is read off
    the first tile.  Returns a NumPy array equal to ``model(x)`` up to float32 rounding.
    """
    margin = default_margin(model) if margin is None else int(margin)
    return run_tiled(lambda t0, b1, l0, r1: _run(model, x[:, :, t0:b1, l0:r1], device), x.shape[-2:], tile,
                     margin, dtype=np.float32)


def predict(model, x, *, tile=None, margin=None, self_ensemble=False, device=None, border="replicate",
            sides=(True, True, True, True)):
    """The model's output for ``x`` (N, C, H, W) as a float32 NumPy array, without recording gradients.

    ``tile`` (input pixels) bounds memory for big images (see :func:`forward_tiled`);
    ``self_ensemble=True`` averages the 8 dihedral transforms; ``border`` see the module docstring.
    ``sides`` (top, bottom, left, right) says which edges of ``x`` are the image's own edges (a tile cut
    from a bigger image has context, not a border, on its inner sides); only those are extended.
    ``device`` (default: where the model is) runs it there; a model elsewhere is moved (``model.to``).
    """
    if border not in ("replicate", "zeros"):
        raise ValueError(f"border must be 'replicate' or 'zeros', got {border!r}")
    device = _place(model, device)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        x = np.asarray(x, dtype=np.float32)
        pads = (0, 0, 0, 0)
        if border == "replicate" and _zero_padded(model):
            # Extended once, before tiling and the ensemble's flips, so both see the same picture.
            r = int(getattr(model, "receptive_field", 1) or 1) // 2
            pads = tuple(r if side else 0 for side in sides)
            x = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]), mode="edge")
        run = (lambda a: forward_tiled(model, a, tile, margin, device)) if tile else (lambda a: _run(model, a, device))
        if not self_ensemble:
            y = run(x)
        else:
            acc = None
            for k, flip in _DIHEDRAL:
                yk = _untransform(run(np.ascontiguousarray(_transform(x, k, flip))), k, flip)
                acc = yk.astype(np.float64) if acc is None else acc + yk
            y = (acc / len(_DIHEDRAL)).astype(np.float32)
        if any(pads):
            s = y.shape[-1] // x.shape[-1]          # 1 for pre-upsampling networks, the scale otherwise
            t, b, l, r = (p * s for p in pads)
            y = y[..., t:y.shape[-2] - b, l:y.shape[-1] - r]
        return y
    finally:
        model.train(was_training)


def super_resolve(model, image, scale, *, tile=None, self_ensemble=False, device=None, border="replicate",
                  sides=(True, True, True, True)):
    """Upscale a uint8 image (H, W, 3) RGB or (H, W) grayscale by ``scale`` with ``model``.

    The model's ``input_convention`` decides what it is fed:

    * ``"bicubic-y"`` (SRCNN, VDSR, DRCN, RED30, DRRN): Y upsampled by MATLAB bicubic first;
    * ``"lr-y"`` (FSRCNN, SRDenseNet): the low-resolution Y itself;
    * ``"lr-rgb"`` (SRResNet, EDSR, MDSR): the RGB image in [0, 1].

    Y networks get Cb/Cr upsampled by bicubic.  Returns uint8 of shape (H*scale, W*scale[, 3]).
    """
    from .data.color import rgb_to_ycbcr, ycbcr_to_rgb
    from .data.resize import imresize

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"super_resolve expects a uint8 image, got {image.dtype} (read files with tinysr.imread)")
    convention = getattr(model, "input_convention", "lr-y")
    kw = dict(tile=tile, self_ensemble=self_ensemble, device=device, border=border, sides=sides)
    gray = image.ndim == 2
    if convention == "lr-rgb":
        rgb = np.repeat(image[..., None], 3, axis=2) if gray else image
        x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255
        y = predict(model, x, **kw)[0].transpose(1, 2, 0)
        out = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
        return out[..., 0] if gray else out
    ycc = image.astype(np.float64) / 255 if gray else rgb_to_ycbcr(image.astype(np.float64) / 255)
    lum = ycc if gray else ycc[..., 0]
    net_in = imresize(lum, scale) if convention == "bicubic-y" else lum
    y = predict(model, net_in[None, None].astype(np.float32), **kw)[0, 0].astype(np.float64)
    if gray:
        return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    chroma = imresize(ycc[..., 1:], scale)
    out = ycbcr_to_rgb(np.concatenate([y[..., None], chroma], axis=2))
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)
