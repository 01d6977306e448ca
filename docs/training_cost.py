"""Draw what each of tinysr's own deep networks cost to train: Set5 PSNR against CPU hours.

    python docs/training_cost.py

Reads the training curves that ``tinysr.ship_weights`` stores with each shipped network in
``tinysr/weights/manifest.json`` (``curve``: one point per evaluation during training, with the step,
the CPU hours spent so far -- wall seconds times the threads the run used -- and the Set5 PSNR) and
writes ``docs/training_cost.png``, the figure in the README and in ``docs/results.md``.  For a run still
below its target it prints where the straight line through the points of the second half of its CPU
hours (PSNR against log CPU hours) reaches the target: an extrapolation of the measured curve, quoted as
one.  Half the hours, not the last few points: a curve that ends in a learning-rate schedule's tail is
flat there by design, and a line through the tail alone says nothing about more training.  A dashed
line marks each target: VDSR's published Set5 PSNR at that scale, the 20-layer plain network that the
residual designs set out to beat.
"""
import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "tinysr" / "weights" / "manifest.json"
OUT = Path(__file__).resolve().parent / "training_cost.png"

#: VDSR's Set5 PSNR in its paper (Kim, Lee, Lee, CVPR 2016, Table 3), per scale: the targets.
VDSR_PAPER = {2: 37.53, 4: 31.35}


def curves(manifest):
    """``{name: (scale, [cpu_hours], [psnr])}`` for every shipped entry that records a curve."""
    out = {}
    for name, entry in sorted(manifest.items()):
        points = entry.get("curve") or []
        if points:
            out[name] = (entry["scale"], [p["cpu_hours"] for p in points], [p["psnr"] for p in points])
    return out


def projected_hours(hours, psnr, target, since=0.5):
    """CPU hours at which the straight line through the points with at least ``since`` of the final CPU
    hours, PSNR against log(hours), reaches ``target`` (None if that line does not rise): an
    extrapolation of the measured curve, stated as such."""
    h, p = np.asarray(hours, dtype=float), np.asarray(psnr, dtype=float)
    keep = h >= since * h[-1]
    h, p = np.log(h[keep]), p[keep]
    if len(h) < 2 or np.ptp(h) == 0:
        return None
    slope, intercept = np.polyfit(h, p, 1)
    return float(np.exp((target - intercept) / slope)) if slope > 0 else None


def draw(found, path=OUT):
    """One panel per scale: each run's Set5 PSNR over its CPU hours, the VDSR-paper target dashed."""
    scales = sorted({scale for scale, _, _ in found.values()})
    fig, axes = plt.subplots(1, len(scales), figsize=(5.2 * len(scales), 3.6), squeeze=False)
    for ax, scale in zip(axes[0], scales):
        for name, (s, hours, psnr) in found.items():
            if s == scale:
                ax.plot(hours, psnr, marker="o", markersize=3, label=name)
        if scale in VDSR_PAPER:
            ax.axhline(VDSR_PAPER[scale], color="grey", linestyle="--", linewidth=1,
                       label=f"target: VDSR paper x{scale} ({VDSR_PAPER[scale]:.2f} dB)")
        ax.set(title=f"x{scale}", xlabel="CPU hours (wall time x threads)", ylabel="Set5 PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("tinysr's own training runs: what each design costs on a CPU", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    found = curves(json.loads(MANIFEST.read_text()))
    if not found:
        raise SystemExit("no shipped weights in tinysr/weights/manifest.json record a training curve yet")
    print(f"wrote {draw(found).relative_to(ROOT)} ({', '.join(found)})")
    for name, (scale, hours, psnr) in found.items():
        target = VDSR_PAPER.get(scale)
        if target is not None and psnr[-1] < target:
            when = projected_hours(hours, psnr, target)
            print(f"{name}: {psnr[-1]:.2f} dB after {hours[-1]:.1f} CPU hours; {target} dB "
                  + (f"at about {when:.0f} CPU hours on the log-linear trend of its second half" if when else
                     "is not reached on the trend of its second half"))
