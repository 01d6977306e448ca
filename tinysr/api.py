"""The four calls a user meets first: :func:`train`, :func:`evaluate`, :func:`upscale` and :func:`load`.

::

    import tinysr
    result = tinysr.train("srcnn", scale=3, iterations=2000)      # patches, Adam, checkpoints, PSNR
    print(result.metrics["psnr"])                                  # Set5, under the papers' protocol
    report = tinysr.evaluate(result.model, "Set14", scale=3)       # per image and mean PSNR/SSIM
    sr = tinysr.upscale("photo.png", model=result.model, scale=3)  # uint8 (3H, 3W, 3)
    model = tinysr.load("runs/srcnn-x3-fast-seed0/step_0002000.npz")

Each is a thin layer over the pieces below it: the registry and its recipes (:mod:`tinysr.models`),
the data pipeline (:mod:`tinysr.data`), the training loop (:class:`tinysr.trainer.Trainer`: atomic
checkpoints, exact resume, NaN guard), tiled inference (:mod:`tinysr.infer`) and the protocol
(:mod:`tinysr.metrics`).  They add the *glue a paper leaves implicit*, one job per module:

* :mod:`tinysr.recipes` -- which patches a network is trained on, its optimiser, schedule, clipping, loss;
* :mod:`tinysr.fit` -- :func:`train`, step by step, on the batches of :mod:`tinysr.sampling`;
* :mod:`tinysr.evaluation` -- :func:`evaluate` under the papers' protocol;
* :mod:`tinysr.upscaling` -- :func:`upscale` and :func:`compare` on photos, tiled within a memory limit;
* :mod:`tinysr.shipped` -- :func:`load`, :func:`save_weights` and the weights shipped in ``tinysr/weights``.

This module only gathers the calls users meet, so that ``tinysr.api.train`` and ``tinysr.train`` are
the same function.

Recipes
-------
``recipe="paper"`` follows the paper's training section (``tinysr.models.get_spec(name).recipe``):
SRCNN is plain SGD with momentum at 1e-4 (1e-5 for the last layer) on 33x33 sub-images cut every 14
pixels -- about 8e8 back-propagations in the paper, days on a CPU.  ``recipe="fast"`` (the default)
is tinysr's CPU-friendly recipe for the same network: Adam, a larger learning rate with a cosine
decay, random crops with the x8 flips/rotations, and far fewer steps (see :data:`FAST_RECIPES`, where
each choice is explained).  Both keep the paper's architecture, loss and data.
"""
from .evaluation import evaluate, results_table, ship_weights
from .fit import TrainResult, train, training_sampler
from .recipes import FAST_RECIPES, make_optimizer
from .shipped import WEIGHTS_DIR, load, save_weights, shipped_weights
from .upscaling import compare, upscale

__all__ = ["train", "evaluate", "upscale", "load", "compare", "TrainResult", "FAST_RECIPES", "shipped_weights",
           "save_weights", "ship_weights", "results_table", "training_sampler", "make_optimizer", "WEIGHTS_DIR"]
