"""Draw the layer map of tinysr as ``docs/layers.svg`` (the picture in ``docs/architecture.md``).

    python docs/layers.py

One row per layer, top (what a learner meets first) to bottom (the kernels); each row names its
modules. A module imports only from rows below its own (or from its own row, without a cycle).
Edit ``LAYERS`` when a module moves, then run this script and commit the SVG with it.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# (layer, modules, colour): top to bottom
LAYERS = [
    ("lessons", "lessons/*.ipynb  ·  lessons/run.py  ·  lessons/results/", "#f6e7c1"),
    ("command line", "cli.py  ·  __main__.py  ·  demo.py", "#f3d9d9"),
    ("what users call", "api.py (the calls)  ·  fit.py (train)  ·  sampling.py  ·  upscaling.py  ·  evaluation.py\n"
                        "shipped.py  ·  recipes.py  ·  gan.py (SRGAN)  ·  leaderboard.py  ·  viz.py  ·  lesson.py  ·  "
                        "report.py  ·  options.py", "#f3d9d9"),
    ("training and inference", "trainer.py (Trainer)  ·  distributed.py (MPI / NCCL)\n"
                               "infer.py (tiles, ensemble, borders)",
     "#e2d9f3"),
    ("networks", "models/: srcnn, fsrcnn, vdsr, drcn, red, drrn, srdensenet, srresnet, edsr, vgg\n"
                 "common.py  ·  registry.py (@register)  ·  official.py, public.py", "#d9e8f3"),
    ("data and protocol", "data/: io, color, resize, protocol, datasets, patches  ·  metrics.py\n"
                          "checkpoint.py (atomic files)  ·  readers/ (weight files, no pickle)", "#d9f3e0"),
    ("building blocks", "nn/: Module, Parameter, layers, init  ·  optim.py  ·  gradcheck.py", "#d9f3f0"),
    ("differentiable ops", "functional/: conv, dispatch, conv_reference (NumPy twins, Winograd)\n"
                           "activation, shape, sizes, norm, pool, linear, loss", "#e8f3d9"),
    ("engine", "autograd.py (Tensor, Function, backward)  ·  backend.py (cpu / cuda, xp)  ·  version.py",
     "#eeeeee"),
    ("kernels (tinysr_kernels)", "cpu/: conv, winograd, im2col, direct, shifted, pointwise, threads\n"
                                 "cuda/: conv, im2col, pixel_shuffle, bias_act, batchnorm, sgemm", "#fde2c8"),
]


def draw(path):
    """Draw ``LAYERS`` into ``path`` (SVG or PNG, by its suffix)."""
    row_h, gap, width = 0.9, 0.25, 12.5
    height = len(LAYERS) * (row_h + gap)
    fig, ax = plt.subplots(figsize=(11, height * 0.62))
    for i, (name, modules, colour) in enumerate(LAYERS):
        y = height - (i + 1) * (row_h + gap) + gap
        ax.add_patch(FancyBboxPatch((0, y), width, row_h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=colour, edgecolor="#555555", linewidth=0.8))
        ax.text(0.2, y + row_h / 2, name, ha="left", va="center", fontsize=11, fontweight="bold")
        ax.text(3.2, y + row_h / 2, modules, ha="left", va="center", fontsize=9, family="monospace",
                linespacing=1.4)
    ax.add_patch(FancyArrowPatch((width + 0.45, height - 0.2), (width + 0.45, 0.2), arrowstyle="-|>",
                                 mutation_scale=14, color="#555555", linewidth=1.2))
    ax.text(width + 0.65, height / 2, "imports point down", rotation=-90, ha="center", va="center", fontsize=9,
            color="#555555")
    ax.set_xlim(-0.1, width + 1.0)
    ax.set_ylim(-0.1, height + 0.1)
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    # a fixed hash salt and no date keep the SVG byte-identical from run to run
    plt.rcParams["svg.hashsalt"] = "tinysr-layers"
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable, selectable
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(__file__).resolve().parent / "layers.svg")
