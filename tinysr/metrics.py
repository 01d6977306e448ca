"""PSNR and SSIM under the protocol that the SR papers use, plus the bicubic baseline.

The protocol (SRCNN/VDSR/EDSR/RCAN tables, "author MATLAB protocol")
--------------------------------------------------------------------
1. HR is ``modcrop``-ed to a multiple of the scale ``s``; LR = MATLAB ``imresize(HR, 1/s, 'bicubic')``.
2. The SR output is rounded to 8 bits (it is saved as an image before it is measured).
3. Both images are converted to the **Y channel** of BT.601 studio-range YCbCr, unrounded:
   ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` in float64.  Grayscale images are Y.
4. ``s`` pixels are **shaved** from every border (the border is where bicubic and networks with
   zero padding are unreliable; all papers drop it).
5. PSNR = ``20 log10(255 / RMSE)`` per image; SSIM = Wang et al. (IEEE TIP 2004) with an 11x11
   Gaussian window (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``, over the 'valid' region.
6. The dataset score is the mean over images (not the PSNR of the mean MSE).

Each of these steps changes the numbers by more than the differences between methods; the
most common "my PSNR is lower than the paper" reports come from RGB instead of Y, full-range Y,
PIL bicubic, or a missing shave.  :data:`PROTOCOL` names the protocol; every report prints it.

Run ``python -m tinysr.metrics bicubic --dataset Set5 --scale 3`` for the bicubic baseline table.
"""
from __future__ import annotations

import math

import numpy as np

from .data.color import y_from_uint8

__all__ = ["psnr", "ssim", "to_uint8", "PROTOCOL", "protocol", "evaluate_bicubic", "evaluate_pairs", "bicubic_sr", "ssim_map",
           "format_report", "main", "BICUBIC_PAPER"]

#: One line that names the evaluation protocol; printed with every reported number.
PROTOCOL = ("protocol: Y of BT.601 studio-range YCbCr (MATLAB rgb2ycbcr), SR rounded to uint8, "
            "{border} px shaved per border, LR = MATLAB bicubic imresize of modcrop(HR, s), "
            "SSIM Gaussian 11x11 sigma 1.5 (Wang et al. 2004), mean over images")


#: The published Bicubic row (PSNR dB, SSIM) under this protocol: VDSR CVPR16 Table 3, copied by
#: EDSR and RCAN.  ``evaluate_bicubic`` reproduces every Set5/Set14/B100 cell within 0.01 dB.
BICUBIC_PAPER = {
    "Set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
    "Set14": {2: (30.24, 0.8688), 3: (27.55, 0.7742), 4: (26.00, 0.7027)},
    "B100": {2: (29.56, 0.8431), 3: (27.21, 0.7385), 4: (25.96, 0.6675)},
    "Urban100": {2: (26.88, 0.8403), 3: (24.46, 0.7349), 4: (23.14, 0.6577)},
}


def protocol(scale=None, *, channel: str = "y", border=None) -> str:
    """The one-line description of the evaluation protocol for ``scale`` (and the chosen options).

    >>> protocol(3)  # doctest: +ELLIPSIS
    'protocol: Y of BT.601 studio-range YCbCr (MATLAB rgb2ycbcr), SR rounded to uint8, 3 px shaved...'
    """
    b = border if border is not None else (scale if scale is not None else "s")
    text = PROTOCOL.format(border=b)
    if channel.lower() == "rgb":
        text = text.replace("Y of BT.601 studio-range YCbCr (MATLAB rgb2ycbcr)", "RGB (all 3 channels)")
    if border is not None and scale is not None and border != scale:
        text += f" (non-standard border: the papers shave {scale})"
    return text


def to_uint8(img, *, name: str = "image"):
    """Round an image to 8 bits as the protocol requires; ``uint8`` passes through unchanged.

    Float input is read as ``[0, 1]`` (the network side of tinysr) and becomes
    ``clip(floor(x * 255 + 0.5), 0, 255)`` — MATLAB's ``im2uint8``.  A float image whose values go
    well beyond 1 is almost certainly in ``0..255`` units; that is refused rather than guessed.
    """
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{name}: expected a uint8 or float image, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"{name}: integer image with values outside 0..255")
        return a.astype(np.uint8)
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    if a.size and a.max() > 2.0:
        raise ValueError(f"{name}: float images must be in [0, 1] (max is {a.max():.3g}); "
                         "pass uint8 for 0..255 data")
    return np.clip(np.floor(a * 255.0 + 0.5), 0, 255).astype(np.uint8)


def _prepare(sr, hr, scale, channel, border):
    sr = to_uint8(sr, name="sr")
    hr = to_uint8(hr, name="hr")
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"sr {sr.shape} and hr {hr.shape} differ in size; modcrop the HR image "
                         "to a multiple of the scale before comparing")
    channel = channel.lower()
    if channel == "y":
        a, b = y_from_uint8(sr), y_from_uint8(hr)
    elif channel == "rgb":
        if sr.shape != hr.shape:
            raise ValueError(f"sr {sr.shape} and hr {hr.shape}: RGB comparison needs equal channels")
        a, b = sr.astype(np.float64), hr.astype(np.float64)
    else:
        raise ValueError(f"channel must be 'y' or 'rgb', got {channel!r}")
    bd = int(scale if border is None else border)
    if bd < 0:
        raise ValueError(f"border must be >= 0, got {bd}")
    if bd:
        if 2 * bd >= a.shape[0] or 2 * bd >= a.shape[1]:
            raise ValueError(f"image {a.shape[:2]} is too small to shave {bd} px from each border")
        a, b = a[bd:-bd, bd:-bd], b[bd:-bd, bd:-bd]
    return a, b


def psnr(sr, hr, scale: int, *, channel: str = "y", border=None) -> float:
    """Peak signal-to-noise ratio in dB, ``20 log10(255 / RMSE)``, under the papers' protocol.

    Parameters
    ----------
    sr, hr : ndarray ``(H, W, 3)`` or ``(H, W)``
        ``uint8``, or float in ``[0, 1]`` (then rounded to 8 bits first, as the SR output is saved as
        an image before it is measured).  Same height and width (modcrop ``hr`` first).
    scale : int
        The SR scale; ``scale`` pixels are shaved from each border unless ``border`` says otherwise.
    channel : ``"y"`` (default, BT.601 studio-range luma, unrounded) or ``"rgb"`` (all channels).
    border : int, optional
        Pixels shaved from each border; default ``scale``.  (SRGAN used 4 at every scale; some
        code bases shave ``scale + 6``.)

    Identical images give ``inf``.
    """
    a, b = _prepare(sr, hr, scale, channel, border)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20.0 * math.log10(255.0 / math.sqrt(mse)))


def _gaussian_1d(sigma=1.5, truncate=3.5):
    # 11 taps for sigma 1.5 (radius int(3.5 * 1.5 + 0.5) = 5), the same window as MATLAB's
    # fspecial('gaussian', 11, 1.5) in Wang's ssim_index.m and scikit-image's gaussian_weights.
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _filter_valid(img, g):
    # Separable correlation keeping only the 'valid' part, like MATLAB filter2(w, img, 'valid').
    from numpy.lib.stride_tricks import sliding_window_view
    k = g.size
    rows = sliding_window_view(img, k, axis=0) @ g           # (H-k+1, W)
    return sliding_window_view(rows, k, axis=1) @ g          # (H-k+1, W-k+1)


def ssim_map(a, b, *, data_range: float = 255.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03):
    """Wang et al.'s SSIM index map of two float images (already Y, already shaved), 'valid' region.

    ``SSIM = ((2 mu_a mu_b + C1)(2 cov_ab + C2)) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))`` with
    Gaussian-weighted local statistics (11x11, sigma 1.5) and ``C_i = (K_i L)^2``.  Output shape
    ``(H - 10, W - 10)``.  Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error
    visibility to structural similarity", IEEE TIP 2004.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    g = _gaussian_1d(sigma)
    if a.shape[0] < g.size or a.shape[1] < g.size:
        raise ValueError(f"SSIM needs at least {g.size}x{g.size} pixels after shaving, got {a.shape}")
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    # Local (co)variances as E[xy] - E[x]E[y], the population form (no N/(N-1) correction).
    var_a = _filter_valid(a * a, g) - mu_a * mu_a
    var_b = _filter_valid(b * b, g) - mu_b * mu_b
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den


def ssim(sr, hr, scale: int, *, channel: str = "y", border=None) -> float:
    """Structural similarity (Wang et al. 2004) under the papers' protocol; same arguments as :func:`psnr`.

    Y channel (or each RGB channel, averaged), ``border`` (default ``scale``) pixels shaved, SR
    rounded to 8 bits, Gaussian 11x11 window with sigma 1.5, ``L = 255``, mean of the SSIM map over
    the 'valid' region.  Equal to scikit-image's ``structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)`` on the same Y images.
    """
    a, b = _prepare(sr, hr, scale, channel, border)
    if a.ndim == 3:
        return float(np.mean([ssim_map(a[..., c], b[..., c]).mean() for c in range(a.shape[-1])]))
    return float(ssim_map(a, b).mean())


def evaluate_pairs(pairs, scale: int, *, channel: str = "y", border=None, dataset: str = "images",
                   method: str = "?"):
    """Score ``(name, sr, hr)`` triples; returns the report dict used by :func:`format_report`."""
    rows = []
    for name, sr, hr in pairs:
        rows.append({"name": name,
                     "psnr": psnr(sr, hr, scale, channel=channel, border=border),
                     "ssim": ssim(sr, hr, scale, channel=channel, border=border)})
    return {"method": method, "dataset": dataset, "scale": int(scale), "channel": channel,
            "border": int(scale if border is None else border),
            "protocol": protocol(scale, channel=channel, border=border),
            "images": rows,
            "psnr": float(np.mean([r["psnr"] for r in rows])) if rows else float("nan"),
            "ssim": float(np.mean([r["ssim"] for r in rows])) if rows else float("nan")}


def bicubic_sr(hr, scale: int, *, channel: str = "y"):
    """The bicubic baseline for one HR image; returns ``(sr, hr_reference)`` ready for :func:`psnr`.

    ``channel="y"`` (default) follows the SRCNN/VDSR MATLAB scripts that produced the published
    Bicubic rows: ``Y = rgb2ycbcr(uint8 HR)`` (rounded to uint8), then in double
    ``SR = imresize(imresize(Y/255, 1/s), s)``; returns (float SR Y in [0, 1], uint8 HR Y), both
    ``modcrop``-ed.  Grayscale HR is used as Y directly.
    ``channel="rgb"`` runs MATLAB's uint8 pipeline on the RGB image, i.e. upsamples exactly the LR
    files of ``Set5/LR_bicubic``; returns (uint8 SR RGB, uint8 HR RGB).
    Both variants are within 0.015 dB of the published Y-PSNR on Set5/Set14/B100; the ``"y"`` one is
    within 0.01 dB and 0.001 SSIM in every cell.
    """
    from .data.protocol import prepare
    hr = to_uint8(np.asarray(hr), name="hr")
    ch = channel.lower()
    if ch not in ("y", "rgb"):
        raise ValueError(f"channel must be 'y' or 'rgb', got {channel!r}")
    sr, ref = prepare(hr, scale, "bicubic-" + ch)
    if ch == "rgb" and ref.ndim == 2:
        sr = sr[..., 0]                     # a grayscale image was run as three equal channels
    return sr, ref


def evaluate_bicubic(dataset, scale: int, *, split=None, channel: str = "y", border=None,
                     pipeline=None):
    """PSNR/SSIM of bicubic upsampling on a dataset: the "Bicubic" row of every SR paper's table.

    ``dataset`` is a registered name (``"Set5"``, ``"Set14"``, ``"B100"``, ``"builtin"``, ...), or a
    list of HR images, or of ``(name, image)`` pairs.  ``pipeline`` picks how the bicubic image is
    made (see :func:`bicubic_sr`): ``"y"`` (the default for ``channel="y"``: SRCNN/VDSR's Y-first
    double pipeline) or ``"rgb"`` (uint8 RGB, like the published LR files; the only choice for
    ``channel="rgb"``).  With the defaults this reproduces the published row (Set5 33.66/30.39/28.42
    dB at x2/x3/x4, Set14 30.24/27.55/26.00, B100 29.56/27.21/25.96) within 0.01 dB.

    Returns a dict: ``method``, ``dataset``, ``scale``, ``protocol`` (the one-line description),
    ``images`` (a list of ``{"name", "psnr", "ssim"}``), and the means ``psnr`` and ``ssim``.
    """
    from .data.datasets import named_images
    label, items = named_images(dataset, split)
    pipe = (pipeline or channel).lower()
    if channel.lower() == "rgb" and pipe != "rgb":
        raise ValueError("an RGB evaluation needs the RGB pipeline (pipeline='rgb')")

    def gen():
        for name, hr in items:
            sr, ref = bicubic_sr(hr, scale, channel=pipe)
            yield name, sr, ref
    rep = evaluate_pairs(gen(), scale, channel=channel, border=border, dataset=label, method="bicubic")
    rep["pipeline"] = pipe
    return rep


def format_report(report, *, per_image: bool = True, paper=None) -> str:
    """A plain-text table of one report from :func:`evaluate_bicubic` / :func:`evaluate_pairs`.

    ``paper`` may be a published ``(psnr, ssim)`` pair (e.g. from ``paper_psnr.json``); the table then
    shows the difference.  The last line is always the protocol.
    """
    lines = [f"{report['method']} on {report['dataset']} x{report['scale']}"]
    if per_image:
        width = max([len(r["name"]) for r in report["images"]] + [5])
        lines.append(f"  {'image':<{width}}  {'PSNR':>8}  {'SSIM':>7}")
        for r in report["images"]:
            lines.append(f"  {r['name']:<{width}}  {r['psnr']:8.3f}  {r['ssim']:7.4f}")
    mean = f"  mean  PSNR {report['psnr']:.3f} dB  SSIM {report['ssim']:.4f}  ({len(report['images'])} images)"
    if paper is not None and paper[0] is not None:
        mean += f"  | paper {paper[0]:.2f}"
        if len(paper) > 1 and paper[1] is not None:
            mean += f" / {paper[1]:.4f}"
        mean += f"  diff {report['psnr'] - paper[0]:+.3f} dB"
    lines.append(mean)
    lines.append("  " + report["protocol"])
    return "\n".join(lines)


def main(argv=None):
    """``python -m tinysr.metrics bicubic --dataset Set5 --scale 3``: print the bicubic baseline."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m tinysr.metrics", description=main.__doc__)
    p.add_argument("what", choices=["bicubic"])
    p.add_argument("--dataset", "-d", action="append", help="Set5, Set14, B100, builtin, ... (repeatable)")
    p.add_argument("--scale", "-s", type=int, action="append", help="2, 3, 4 (repeatable)")
    p.add_argument("--split", default=None)
    p.add_argument("--channel", default="y", choices=["y", "rgb"])
    p.add_argument("--border", type=int, default=None)
    p.add_argument("--summary", action="store_true", help="means only, no per-image rows")
    args = p.parse_args(argv)
    for ds in args.dataset or ["Set5"]:
        for s in args.scale or [2, 3, 4]:
            try:
                rep = evaluate_bicubic(ds, s, split=args.split, channel=args.channel, border=args.border)
            except Exception as e:      # DatasetError, ImageError: the message says what to do
                import sys
                print(f"error: {e}", file=sys.stderr)
                return 2
            paper = None
            if args.channel == "y" and args.border in (None, s):
                paper = BICUBIC_PAPER.get(rep["dataset"], {}).get(s)
            print(format_report(rep, per_image=not args.summary, paper=paper))
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
