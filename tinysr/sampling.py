"""The training data of a run: the images, and the batches of patches cut from them.

::

    images = load_training_images("T91", scale=3, min_side=33)
    sample, per_epoch = training_sampler(model, images, 3, recipe=FAST_RECIPES["srcnn"], recipe_name="fast",
                                         patch_size=33, batch_size=64)
    x, y = sample(np.random.default_rng(0))        # NCHW float32 input patches and their labels

What a network learns from depends on what it is fed (its input convention): bicubic-upsampled Y crops
for pre-upsampling networks, LR crops with HR labels ``scale`` times larger for networks that upsample
themselves.  A recipe adds its augmentations (:data:`tinysr.recipes.AUGMENTATIONS`) and, for SRCNN's
paper recipe, the fixed grid of sub-images of the authors' script.  Every random choice comes from the
generator the Trainer passes in and checkpoints, so a resumed run draws the same batches.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .evaluation import input_convention
from .recipes import AUGMENTATIONS

__all__ = ["load_training_images", "training_sampler", "run_sampler"]


def _log_default(msg):
    print(msg, flush=True)


def load_training_images(data, scale, min_side, log=_log_default):
    """The uint8 training images ``data`` names: a data set (``"T91"``, ``"builtin"``: its train split), a
    folder, an array, or a list of these.  Images too small for a ``min_side`` patch at ``scale`` after
    modcrop are skipped (and counted in the log); none left is refused in one sentence.
    """
    from .data import datasets
    from .data.datasets import named_images
    names = [data] if isinstance(data, (str, os.PathLike, np.ndarray)) else list(data)
    images = []
    for d in names:
        if isinstance(d, np.ndarray):
            images.append(d)
            continue
        if isinstance(d, os.PathLike) or (isinstance(d, str) and Path(d).is_dir() and d not in datasets.REGISTRY):
            images.extend(im for _, im in named_images(d)[1])
            continue
        split = "train" if str(d).lower() == "builtin" else None
        images.extend(datasets.load(d, split=split))
    kept = [im for im in images if min(im.shape[:2]) // scale * scale >= min_side]
    if len(kept) < len(images):
        log(f"  {len(images) - len(kept)} training image(s) smaller than {min_side} px skipped")
    if not kept:
        raise ValueError(f"no training image is large enough for {min_side}x{min_side} px patches at x{scale}")
    return kept


def training_sampler(model, images, scale, *, recipe, recipe_name, patch_size, batch_size, log=_log_default):
    """``(sample(rng) -> (x, y), patches_per_epoch)``: the training batches for ``model`` under ``recipe``.

    * ``bicubic-y`` networks: crops of the bicubic-upsampled Y (``make_pair(upsample=True)``) and the
      HR Y at the same place; a valid-convolution SRCNN gets the label's centre (33 -> 21 for 9-1-5).
      SRCNN's paper recipe takes the fixed grid of 33x33 sub-images every 14 px (``dense_pairs``).
    * ``lr-y`` networks: LR Y crops and the aligned HR crops ``scale`` times larger; FSRCNN's "scale"
      augmentation adds each image downscaled by 0.9..0.6.
    * ``lr-rgb`` networks: the same with RGB (MATLAB uint8 bicubic LR).

    Every random choice comes from the ``rng`` passed in, which the Trainer checkpoints: that is what
    makes a resumed run identical to an uninterrupted one.
    """
    from .data import patches
    from .data.datasets import make_pair
    conv = input_convention(model)
    aug = tuple(recipe.augment)
    unknown = [a for a in aug if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"the recipe's augmentation {', '.join(map(repr, unknown))} is not implemented; use "
                         f"{', '.join(map(repr, AUGMENTATIONS))}")
    pre = conv == "bicubic-y"
    if "scale" in aug:
        images = patches.scale_augment(images)
        images = [im for im in images if min(im.shape[:2]) // scale * (scale if pre else 1) >= patch_size]
    border = int(getattr(model, "border", 0) or 0)
    label = patch_size - 2 * border if pre else patch_size * scale
    if recipe.label_size is not None and recipe_name == "custom" and int(recipe.label_size) != label:
        raise ValueError(f"the recipe's label_size {recipe.label_size} does not match what {type(model).__name__} "
                         f"makes of {patch_size} px patches ({label} px); drop label_size or change patch_size")
    pairs = [make_pair(im, scale, upsample=pre, channel="rgb" if conv == "lr-rgb" else "y") for im in images]
    flips = "flip" in aug or "rot90" in aug
    modes = tuple(range(8)) if "flip" in aug else (0, 1, 2, 3)
    grid = getattr(model, "paper_grid_stride", None)
    if grid and recipe_name == "paper":
        # The paper's fixed grid of sub-images (generate_train.m), sampled with replacement.
        xs, ys = [], []
        for a, b in pairs:
            x, y = patches.dense_pairs(a, b, size=patch_size, stride=grid, label_size=patch_size - 2 * border)
            xs.append(x)
            ys.append(y)
        X, Y = np.concatenate(xs), np.concatenate(ys)
        log(f"  {len(X):,} sub-images {patch_size}x{patch_size} (stride {grid}), labels "
            f"{patch_size - 2 * border}x{patch_size - 2 * border}")

        def sample(rng):
            idx = rng.integers(0, len(X), batch_size)
            return patches.to_nchw(X[idx]), patches.to_nchw(Y[idx])
        return sample, len(X)

    # PatchSampler's checks (every image at least one patch large, targets aligned) before sampling
    patches.PatchSampler(pairs, patch_size, batch_size, scale=1 if pre else scale, augment=False, label_crop=border)

    def sample(rng):
        xs, ys = [], []
        for _ in range(batch_size):
            a, b = pairs[int(rng.integers(0, len(pairs)))]
            x, y = patches.random_crop(a, b, patch_size, 1 if pre else scale, rng=rng)
            if flips:
                x, y = patches.random_augment(x, y, rng=rng, modes=modes)
            if border:
                y = y[border:-border, border:-border]
            xs.append(x)
            ys.append(y)
        return patches.to_nchw(np.stack(xs)), patches.to_nchw(np.stack(ys))

    per_epoch = sum((a.shape[0] // patch_size) * (a.shape[1] // patch_size) for a, _ in pairs)
    return sample, max(per_epoch, 1)


def run_sampler(net, data, rec, recipe_name, ps, scales, log=_log_default):
    """``(sample(rng) -> (x, y), steps_per_epoch)``: the batches a run of :func:`tinysr.train` trains on.

    ``rec`` is the run's recipe, ``ps`` its patch size per scale (:func:`tinysr.recipes.patch_for`).

    The images are read once (:func:`load_training_images`, skipping those smaller than the largest
    patch in HR pixels) and one :func:`training_sampler` is made per scale.  With several scales each
    batch is drawn at one of them, chosen by the Trainer's generator (so a resumed run repeats it), and
    MDSR is routed through that scale's branches before the Trainer runs it on the batch.  An epoch is
    one pass over the sub-images (or non-overlapping patches) of every scale.
    """
    conv = input_convention(net)
    min_side = max(ps[s] * (s if conv != "bicubic-y" else 1) for s in scales)
    images = load_training_images(data, max(scales), min_side, log)
    samplers = {s: training_sampler(net, images, s, recipe=rec, recipe_name=recipe_name, patch_size=ps[s],
                                    batch_size=rec.batch_size, log=log) for s in scales}
    per_epoch = sum(n for _, n in samplers.values())
    if len(scales) == 1:
        sample = samplers[scales[0]][0]
    else:
        def sample(rng):
            s = scales[int(rng.integers(len(scales)))]
            if hasattr(net, "set_scale"):
                net.set_scale(s)
            return samplers[s][0](rng)
    return sample, max(1, math.ceil(per_epoch / rec.batch_size))
