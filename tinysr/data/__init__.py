"""Data for super-resolution: image IO, BT.601 colour, MATLAB bicubic, datasets, training patches.

NumPy and Pillow only (no autograd).  The pieces, bottom up:

* :mod:`~tinysr.data.io` — ``imread``/``imwrite`` that cope with RGBA, palettes, 16-bit, CMYK, EXIF.
* :mod:`~tinysr.data.color` — ``rgb_to_ycbcr``, ``ycbcr_to_rgb``, ``rgb_to_y`` (MATLAB ``rgb2ycbcr``).
* :mod:`~tinysr.data.resize` — ``imresize`` (MATLAB bicubic, bit-exact) and ``modcrop``.
* :mod:`~tinysr.data.datasets` — ``load("Set5")``, the resolver/downloader, ``make_pair``.
* :mod:`~tinysr.data.patches` — crops, x8 augmentation, FSRCNN scale augmentation, ``PatchSampler``.
"""
from .io import ImageError, imread, imwrite, check_size, convert
from .color import rgb_to_ycbcr, ycbcr_to_rgb, rgb_to_y, y_from_uint8
from .resize import imresize, modcrop
from . import datasets
from .datasets import DatasetError, load, make_pair, make_pairs, resolve, download
from .patches import (random_crop, augment, inverse_augment, random_augment, scale_augment,
                      dense_subimages, dense_pairs, to_nchw, PatchSampler, iterate_minibatches,
                      FSRCNN_SCALES)

__all__ = ["ImageError", "imread", "imwrite", "check_size", "convert",
           "rgb_to_ycbcr", "ycbcr_to_rgb", "rgb_to_y", "y_from_uint8",
           "imresize", "modcrop",
           "datasets", "DatasetError", "load", "make_pair", "make_pairs", "resolve", "download",
           "random_crop", "augment", "inverse_augment", "random_augment", "scale_augment",
           "dense_subimages", "dense_pairs", "to_nchw", "PatchSampler", "iterate_minibatches",
           "FSRCNN_SCALES"]
