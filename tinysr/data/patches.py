"""Training patches: aligned random crops, x8 augmentation, FSRCNN's scale augmentation, SRCNN's dense
sub-images, and a seeded batch sampler that yields float32 NCHW arrays.

Conventions
-----------
* Images here are ``(H, W)`` (Y) or ``(H, W, C)`` float32 in ``[0, 1]``, as produced by
  :func:`tinysr.data.datasets.make_pair`; batches are NCHW float32 ``(input, target)``.
* "Aligned to the scale": an LR patch at ``(i, j)`` of size ``p`` pairs with the HR patch at
  ``(s*i, s*j)`` of size ``s*p``.  For pre-upsampled inputs (SRCNN/VDSR) both come from the same
  place at the same size (``scale=1`` here); HR crops then start on multiples of the real scale
  so that the bicubic phase is the same for every patch (``align``).
* Every random choice comes from a ``numpy.random.Generator`` (pass ``seed`` or ``rng``), so a run
  can be repeated exactly.
"""
from __future__ import annotations

import numpy as np

__all__ = ["as_rng", "random_crop", "augment", "inverse_augment", "random_augment", "AUGMENT_MODES", "scale_augment",
           "FSRCNN_SCALES", "dense_subimages", "dense_pairs", "to_nchw", "PatchSampler", "iterate_minibatches"]

#: FSRCNN (Dong, Loy, Tang, ECCV 2016, Sec. 4.1): each HR training image is also used downscaled by
#: these factors, giving 5x the data.  The identity (1.0) is included by :func:`scale_augment`.
FSRCNN_SCALES = (0.9, 0.8, 0.7, 0.6)
#: The 8 symmetries of the square (dihedral group D4): ``k`` quarter turns, then optional flip.
AUGMENT_MODES = tuple(range(8))


def as_rng(seed=None):
    """A ``numpy.random.Generator`` from a seed, a Generator (returned as is) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def random_crop(inp, target, patch_size: int, scale: int = 1, *, rng=None, align: int = 1):
    """Crop one aligned patch pair: ``inp[i:i+p, j:j+p]`` and ``target[s*i:s*(i+p), s*j:s*(j+p)]``.

    ``inp`` is the LR image (``scale`` = SR factor) or the bicubic-upsampled one (``scale=1``);
    ``patch_size`` is measured on ``inp``.  With ``align > 1`` the top-left corner is a multiple of
    ``align`` (useful for pre-upsampled inputs: ``align=s`` keeps the bicubic phase).  Returns views.
    """
    rng = as_rng(rng)
    h, w = inp.shape[:2]
    s = int(scale)
    p = int(patch_size)
    if target.shape[0] != h * s or target.shape[1] != w * s:
        raise ValueError(f"target {target.shape[:2]} is not {s}x input {inp.shape[:2]}")
    if h < p or w < p:
        raise ValueError(f"image {h}x{w} is smaller than the patch size {p}")
    i = int(rng.integers(0, (h - p) // align + 1)) * align
    j = int(rng.integers(0, (w - p) // align + 1)) * align
    return inp[i:i + p, j:j + p], target[s * i:s * (i + p), s * j:s * (j + p)]


def augment(img, mode: int):
    """Apply symmetry ``mode`` (0..7) of the square: ``mode % 4`` quarter turns, then a left-right
    flip when ``mode >= 4``.  Mode 0 is the identity.  Works on ``(H, W)`` and ``(H, W, C)``; the
    same mode applied to input and target keeps them aligned.  This is the x8 augmentation of
    EDSR/RCAN training and of "self-ensemble" at test time (Timofte et al., CVPR 2016).
    """
    out = np.rot90(img, k=mode % 4, axes=(0, 1))
    if mode >= 4:
        out = out[:, ::-1]
    return out


def inverse_augment(img, mode: int):
    """Undo :func:`augment` (for self-ensemble: augment, run the network, undo, average)."""
    if mode >= 4:
        img = img[:, ::-1]
    return np.rot90(img, k=-(mode % 4), axes=(0, 1))


def random_augment(*imgs, rng=None, modes=AUGMENT_MODES):
    """Apply the same random symmetry (drawn from ``modes``) to all ``imgs``; returns a tuple."""
    rng = as_rng(rng)
    m = int(modes[int(rng.integers(0, len(modes)))])
    return tuple(augment(im, m) for im in imgs)


def scale_augment(images, factors=FSRCNN_SCALES, *, include_original: bool = True):
    """FSRCNN's data augmentation: each HR image also downscaled by each factor (MATLAB bicubic).

    ``images``: a list of uint8 HR images.  Returns a new list (originals first when
    ``include_original``), all uint8, ready for :func:`tinysr.data.datasets.make_pair`.  With the
    default factors (0.9, 0.8, 0.7, 0.6) the training set becomes 5 times larger.
    """
    from .resize import imresize
    out = list(images) if include_original else []
    for f in factors:
        out.extend(imresize(im, float(f)) for im in images)
    return out


def dense_subimages(img, size: int, stride: int):
    """All ``size x size`` sub-images of ``img`` taken every ``stride`` pixels (SRCNN: 33 and 14).

    Returns ``(N, size, size)`` or ``(N, size, size, C)``, a copy, in row-major order of the
    top-left corners ``0, stride, 2*stride, ...`` (a corner is used only if the sub-image fits,
    as in SRCNN's ``generate_train.m``).
    """
    from numpy.lib.stride_tricks import sliding_window_view
    img = np.asarray(img)
    if img.shape[0] < size or img.shape[1] < size:
        return np.empty((0, size, size) + img.shape[2:], dtype=img.dtype)
    win = sliding_window_view(img, (size, size), axis=(0, 1))[::stride, ::stride]
    # win: (nh, nw, [C,] size, size) -> (N, size, size, [C])
    if img.ndim == 3:
        win = np.moveaxis(win, 2, -1)
    return np.ascontiguousarray(win.reshape((-1, size, size) + img.shape[2:]))


def dense_pairs(inp, target, size: int = 33, stride: int = 14, label_size=None, scale: int = 1):
    """SRCNN-style dense training pairs from one (input, target) image pair.

    With ``scale=1`` (bicubic-upsampled input, SRCNN/VDSR): input sub-images ``size x size`` every
    ``stride`` px; labels are the centred ``label_size x label_size`` part of the target (SRCNN 9-1-5
    without padding: 33 -> 21, i.e. ``label_size = size - 12``; default ``size``).  With ``scale > 1``
    (LR input, FSRCNN): LR sub-images of ``size`` every ``stride`` LR px, labels ``scale*size`` from
    the aligned HR position (FSRCNN uses LR 7/11/ ... with stride ~ size - 1).
    Returns ``(inputs, labels)`` stacked on axis 0.
    """
    s = int(scale)
    ls = size if label_size is None else int(label_size)
    if s == 1:
        x = dense_subimages(inp, size, stride)
        y = dense_subimages(target, size, stride)
        off = (size - ls) // 2
        return x, np.ascontiguousarray(y[:, off:off + ls, off:off + ls])
    x = dense_subimages(inp, size, stride)
    y = dense_subimages(target, size * s, stride * s)
    n = min(len(x), len(y))
    return x[:n], y[:n]


def to_nchw(batch):
    """Stack ``(N, H, W)`` or ``(N, H, W, C)`` into contiguous float32 NCHW."""
    a = np.asarray(batch, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, None]
    else:
        a = a.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a)


class PatchSampler:
    """Endless (or ``steps``-long) seeded stream of random training batches ``(input, target)``.

    Parameters
    ----------
    pairs : list of ``(input, target)`` float32 images from :func:`tinysr.data.datasets.make_pair`
        (LR inputs for ``scale > 1``; bicubic-upsampled inputs with ``scale=1``).
    patch_size : int
        Input patch size (LR pixels when ``scale > 1``).
    batch_size : int
    scale : int
        Ratio target/input size: the SR factor for LR inputs, 1 for pre-upsampled ones.
    augment : bool
        Random x8 symmetry per patch.
    label_crop : int
        Crop this many pixels from each side of the target (SRCNN without padding: 6).
    align : int
        Corner alignment of input crops (see :func:`random_crop`).
    seed : int or Generator

    Yields ``(x, y)``: float32 NCHW, ``x`` ``(B, C, p, p)``, ``y`` ``(B, C, s*p - 2*label_crop, ...)``.
    Pairs are picked uniformly over images, as in EDSR's sampler.
    """

    def __init__(self, pairs, patch_size: int, batch_size: int = 16, *, scale: int = 1, augment: bool = True,
                 label_crop: int = 0, align: int = 1, seed=None, steps=None):
        self.pairs = [(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)) for a, b in pairs]
        if not self.pairs:
            raise ValueError("PatchSampler needs at least one (input, target) pair")
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.scale = int(scale)
        self.augment = augment
        self.label_crop = int(label_crop)
        self.align = int(align)
        self.steps = steps
        self.rng = as_rng(seed)
        small = [i for i, (a, _) in enumerate(self.pairs) if min(a.shape[:2]) < self.patch_size]
        if small:
            raise ValueError(f"{len(small)} image(s) (first: #{small[0]}, input {self.pairs[small[0]][0].shape[:2]})"
                             f" are smaller than the patch size {self.patch_size}; drop them or use smaller patches")

    def sample(self):
        """One batch ``(x, y)``, float32 NCHW."""
        xs, ys = [], []
        for _ in range(self.batch_size):
            a, b = self.pairs[int(self.rng.integers(0, len(self.pairs)))]
            x, y = random_crop(a, b, self.patch_size, self.scale, rng=self.rng, align=self.align)
            if self.augment:
                x, y = random_augment(x, y, rng=self.rng)
            if self.label_crop:
                c = self.label_crop
                y = y[c:-c, c:-c]
            xs.append(x)
            ys.append(y)
        return to_nchw(np.stack(xs)), to_nchw(np.stack(ys))

    def __iter__(self):
        n = 0
        while self.steps is None or n < self.steps:
            yield self.sample()
            n += 1

    def __len__(self):
        if self.steps is None:
            raise TypeError("an endless PatchSampler has no length (pass steps=)")
        return int(self.steps)


def iterate_minibatches(inputs, targets, batch_size: int, *, shuffle: bool = True, seed=None,
                        drop_last: bool = False):
    """One epoch over pre-extracted patches (e.g. from :func:`dense_pairs`), as NCHW float32 batches.

    ``inputs``/``targets``: ``(N, h, w[, C])`` arrays.  Shuffled with ``seed`` when ``shuffle``.
    """
    n = len(inputs)
    if len(targets) != n:
        raise ValueError(f"{n} inputs but {len(targets)} targets")
    order = as_rng(seed).permutation(n) if shuffle else np.arange(n)
    for k in range(0, n, batch_size):
        idx = order[k:k + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        yield to_nchw(inputs[idx]), to_nchw(targets[idx])
