"""The evaluation protocol's first half: an HR image -> (network input, reference), in one place.

Every super-resolution paper measures a network the same way: take a high-resolution (HR) image,
make the low-resolution (LR) image the network would see, run the network, and compare its output
with the HR image.  How the LR image is made decides the numbers to a tenth of a dB, so tinysr makes
it in exactly one function, :func:`prepare`, which training pairs (:func:`tinysr.data.make_pair`),
the bicubic baseline (:func:`tinysr.metrics.bicubic_sr`), :func:`tinysr.evaluate` and the checks of
the authors' public weights (:func:`tinysr.models.official.prepare_pair`) all call.

Two choices name a pipeline:

* the **input convention** of the network -- what it is fed (:data:`CONVENTIONS`): ``"lr-y"``
  (FSRCNN, SRDenseNet), ``"bicubic-y"`` (SRCNN, VDSR, DRCN, RED, DRRN), ``"lr-rgb"`` (SRResNet,
  EDSR, MDSR), and ``"bicubic-rgb"`` (the RGB bicubic baseline);
* the **source protocol** (:data:`PROTOCOLS`): ``"matlab"`` is the SRCNN/VDSR MATLAB scripts'
  pipeline that tinysr uses everywhere; ``"vdsr"``, ``"pytorch"`` and ``"yjn870"`` reproduce other
  authors' test scripts, only to check their published weights against their own numbers.

The ``"matlab"`` pipeline: the HR image is ``modcrop``-ed to a multiple of the scale ``s``.  For Y
networks ``Y = rgb2ycbcr(HR)`` is rounded to 8 bits (a grayscale image is its own Y), and in double
precision ``LR = imresize(Y / 255, 1/s)``, unrounded (bicubic may overshoot [0, 1] slightly, as in
the papers); a pre-upsampling network sees ``imresize(LR, s)``.  RGB networks see MATLAB's uint8
bicubic LR of the RGB image (EDSR's ``LR_bicubic`` files).
"""
import numpy as np

from .color import rgb_to_y
from .resize import imresize, modcrop

__all__ = ["CONVENTIONS", "PROTOCOLS", "prepare"]

#: What a network is fed, by input convention.
CONVENTIONS = {
    "lr-y": "the LR luminance Y, (H/s, W/s), float64 in [0, 1]",
    "bicubic-y": "the LR Y upsampled back by bicubic, (H, W), float64 in [0, 1]",
    "lr-rgb": "MATLAB's uint8 bicubic LR of the RGB image, (H/s, W/s, 3) uint8",
    "bicubic-rgb": "that uint8 LR upsampled back by uint8 bicubic, (H, W, 3) uint8",
}

#: The source protocols and the input convention each one serves.
PROTOCOLS = {
    "matlab": ("lr-y", "bicubic-y", "lr-rgb", "bicubic-rgb"),
    "vdsr": ("bicubic-y",),
    "pytorch": ("bicubic-y",),
    "yjn870": ("lr-y",),
}


def _y01(img, rounded):
    """Y in [0, 1]: from the rounded uint8 Y (MATLAB on uint8) or from double RGB, unrounded."""
    if rounded:
        return rgb_to_y(img).astype(np.float64) / 255.0
    a = np.asarray(img)
    if a.ndim == 2:
        return a.astype(np.float64) / 255.0
    return rgb_to_y(a.astype(np.float64) / 255.0)


def _matlab(hr, s, convention):
    hr = modcrop(hr, s)
    if convention.endswith("-rgb"):
        rgb = np.repeat(hr[..., None], 3, axis=2) if hr.ndim == 2 else hr
        lr = imresize(rgb, 1.0 / s)                        # uint8 in, uint8 out: rounded like MATLAB
        return (lr if convention == "lr-rgb" else imresize(lr, float(s))), hr
    y = rgb_to_y(hr)                                       # uint8 Y, rounded like rgb2ycbcr
    lr = imresize(y.astype(np.float64) / 255.0, 1.0 / s)
    return (lr if convention == "lr-y" else imresize(lr, float(s))), y


def _yjn870(hr, s):
    # Pillow's bicubic is not MATLAB's; this pipeline only checks that source's own numbers.
    from PIL import Image
    im = Image.fromarray(np.asarray(hr)).convert("RGB")
    w, h = (im.width // s) * s, (im.height // s) * s
    hr_im = im.resize((w, h), resample=Image.BICUBIC)
    lr_im = hr_im.resize((w // s, h // s), resample=Image.BICUBIC)

    def y(a):
        a = np.asarray(a).astype(np.float32)
        return (16.0 + (64.738 * a[..., 0] + 129.057 * a[..., 1] + 25.064 * a[..., 2]) / 256.0) / 255.0
    return y(lr_im), y(hr_im)


def prepare(hr, scale, convention, *, protocol="matlab"):
    """``(network input, reference)`` for one uint8 HR image ``(H, W, 3)`` or ``(H, W)``.

    ``convention`` is one of :data:`CONVENTIONS` (what the network is fed), ``protocol`` one of
    :data:`PROTOCOLS` (whose pipeline makes the LR image; see the module docstring).  The arrays are
    as the pipeline makes them, not converted, so that each caller adds only its own layout:

    * ``"matlab"``, Y conventions: input float64 ``(H', W')``; reference the uint8 HR Y ``(H, W)``.
    * ``"matlab"``, RGB conventions: input uint8 ``(H', W', 3)`` (a grayscale image is repeated into
      three channels); reference the uint8 ``modcrop``-ped HR image as given (grayscale stays 2-D).
    * ``"vdsr"``, ``"pytorch"``: input float64 ``(H, W)``; reference the unrounded float64 HR Y in
      [0, 1] (VDSR: Y of the uint8 LR RGB, then bicubic; PyTorch ports: ``modcrop`` for 2..s in turn).
    * ``"yjn870"``: input and reference float32 Y in [0, 1] from Pillow's bicubic.

    ``H' = H/s`` for the ``lr-*`` conventions and ``H`` for the ``bicubic-*`` ones (after ``modcrop``).
    """
    s = int(scale)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if convention not in PROTOCOLS[protocol]:
        raise ValueError(f"protocol {protocol!r} makes inputs for {', '.join(PROTOCOLS[protocol])}, "
                         f"not {convention!r}")
    if protocol == "matlab":
        return _matlab(np.asarray(hr), s, convention)
    if protocol == "vdsr":
        hr = modcrop(hr, s)
        lr_rgb = imresize(hr, 1.0 / s)                     # uint8 path: rounded like MATLAB
        return imresize(_y01(lr_rgb, rounded=False), s), _y01(hr, rounded=False)
    if protocol == "pytorch":
        for k in range(2, s + 1):
            hr = modcrop(hr, k)
        gt = _y01(hr, rounded=False)
        return imresize(imresize(gt, 1.0 / s), s), gt
    return _yjn870(hr, s)
