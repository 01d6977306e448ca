"""Helpers for the last section of lessons 03-09, "the real thing": a trained network of the lesson's design.

* :func:`load_into` -- copy a zoo model's weights into the learner's own class under a renaming, and check
  that both compute the same function;
* :func:`show_crops` -- bicubic, networks and HR side by side on crops of one photo (``tinysr.compare``);
* :func:`comparison_table` -- Y-PSNR of the rows on this lesson's test images (computed here) beside the full
  Set5 / Set14 figures recorded in ``results/public_weights.json`` (by ``results/measure_public.py``, with
  ``tinysr.evaluate``) and the papers' numbers from ``paper_psnr.json``.
"""
import json
from pathlib import Path

import numpy as np

import tinysr

RECORDED = Path(__file__).with_name("results") / "public_weights.json"


def load_into(mine, zoo, rename, x):
    """Load ``zoo``'s weights into ``mine`` (``rename(zoo_state) -> mine_state``, strict) and return the
    largest output difference of the two networks on the input array ``x``.

    ``mine`` also gets the zoo model's ``receptive_field``, so that ``tinysr.evaluate`` extends the image
    borders for both in the same way (without it, a network is run on its own zero padding)."""
    mine.load_state_dict(rename(dict(zoo.state_dict())))
    if getattr(zoo, "receptive_field", None) is not None and getattr(mine, "receptive_field", None) is None:
        mine.receptive_field = zoo.receptive_field
    mine.eval()
    with tinysr.no_grad():
        a = mine(tinysr.tensor(x)).numpy()
        b = zoo(tinysr.tensor(x)).numpy()
    return float(np.abs(a - b).max())


def show_crops(photo, name, models, scale, crops, plt):
    """One row per crop ``(top, left, size)`` of the HR photo: bicubic, each ``(label, model)``, HR."""
    results = [tinysr.compare(photo, model=m, scale=scale) for _, m in models]
    bic, _, gt = results[0]["images"]
    columns = [(bic, f"bicubic {results[0]['bicubic']['psnr']:.2f} dB")]
    columns += [(r["images"][1], f"{label} {r['model']['psnr']:.2f} dB") for (label, _), r in zip(models, results)]
    columns.append((gt, "HR"))
    fig, ax = plt.subplots(len(crops), len(columns), figsize=(3.5 * len(columns), 3.7 * len(crops)), squeeze=False)
    for row, (t, l, s) in enumerate(crops):
        for col, (im, title) in enumerate(columns):
            ax[row, col].imshow(im[t:t + s, l:l + s], cmap="gray" if im.ndim == 2 else None, interpolation="nearest")
            ax[row, col].set_title(f"{name} x{scale}: {title}", fontsize=9)
            ax[row, col].axis("off")
    plt.tight_layout()
    plt.show()


def _paper(shared, method, dataset, scale):
    f = None if shared is None else Path(shared) / "reference" / "paper_psnr.json"
    if not method or f is None or not f.is_file():
        return None
    cell = (json.loads(f.read_text()).get(method, {}).get(dataset) or {}).get(f"x{scale}")
    return None if not cell else cell[0]


def comparison_table(rows, scale, test_items, test_label, shared):
    """Print one line per row ``(label, model or "bicubic" or None, recorded key or None, paper method or None)``:
    PSNR on ``test_items`` (computed now), the recorded full Set5 and Set14 (``public_weights.json``, or the
    manifest for weights shipped with tinysr), the paper's Set5 and Set14.
    Returns ``{label: PSNR here}`` (None for a row without a model)."""
    recorded = json.loads(RECORDED.read_text()) if RECORDED.is_file() else {}
    # weights shipped with tinysr carry their own measured numbers in the package's manifest
    recorded.update({k: {"psnr_ssim": {ds: [v, e["ssim"].get(ds)] for ds, v in e["psnr"].items()}}
                     for k, e in tinysr.api.shipped_weights().items()})
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    print(f"x{scale}, Y-PSNR (dB)   here: {test_label}   Set5/Set14: recorded full test sets (tinysr.evaluate)   "
          "paper: the design's published figure")
    print(f"{'method':<50}{'here':>8}{'Set5':>8}{'Set14':>8}{'paper Set5':>12}{'paper Set14':>12}")
    out = {}
    for label, model, key, method in rows:
        here = out[label] = None if model is None else tinysr.evaluate(model, test_items, scale=scale, ssim=False)["psnr"]
        rec = recorded.get(key, {}).get("psnr_ssim", {}) if key else {}
        cells = [here, (rec.get("Set5") or [None])[0], (rec.get("Set14") or [None])[0],
                 _paper(shared, method, "Set5", scale), _paper(shared, method, "Set14", scale)]
        print(f"{label:<50}" + "".join(f"{fmt(v):>{w}}" for v, w in zip(cells, (8, 8, 8, 12, 12))))
    return out
