"""Draw what each of tinysr's own deep networks cost to train: Set5 PSNR against CPU hours.

    python docs/training_cost.py

Reads the training curves that ``tinysr.ship_weights`` stores with each shipped network in
``tinysr/weights/manifest.json`` (``curve``: one point per evaluation during training, with the step,
the CPU hours spent so far -- wall seconds times the threads the run used -- and the Set5 PSNR) and
writes ``docs/training_cost.png``, the figure in the README and in ``docs/results.md``.  For a run still
below its target it prints where the straight line through its last points (PSNR against log CPU
hours) reaches the target: an extrapolation of the measured curve, quoted as one.  A dashed
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


def projected_hours(hours, psnr, target, last=4):
    """CPU hours at which the straight line through the ``last`` points of PSNR against log(hours) reaches
    ``target`` (None if that line does not rise): an extrapolation of the measured curve, stated as such."""
    h, p = np.log(np.asarray(hours[-last:], dtype=float)), np.asarray(psnr[-last:], dtype=float)
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
                  + (f"at about {when:.0f} CPU hours on the log-linear trend of its last points" if when else
                     "is not reached on the trend of its last points"))
