"""Aligned crops, x8 symmetries, FSRCNN scale augmentation, SRCNN dense sub-images, seeded batches."""
import numpy as np
import pytest

from tinysr.data.datasets import make_pair
from tinysr.data.patches import (FSRCNN_SCALES, PatchSampler, augment, dense_pairs, dense_subimages,
                                 inverse_augment, iterate_minibatches, random_augment, random_crop,
                                 scale_augment, to_nchw)


def _hr(h=48, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_random_crop_is_aligned_to_the_scale():
    lr = np.arange(10 * 12, dtype=np.float32).reshape(10, 12)
    hr = np.kron(lr, np.ones((3, 3), np.float32))               # each LR pixel -> a 3x3 HR block
    for seed in range(20):
        x, y = random_crop(lr, hr, 4, 3, rng=np.random.default_rng(seed))
        assert x.shape == (4, 4) and y.shape == (12, 12)
        np.testing.assert_array_equal(y[::3, ::3], x)
    x, _ = random_crop(lr, lr, 4, 1, rng=1, align=3)
    assert x[0, 0] % 12 % 3 == 0 and (x[0, 0] // 12) % 3 == 0
    with pytest.raises(ValueError):
        random_crop(lr, hr[:-1], 4, 3)
    with pytest.raises(ValueError):
        random_crop(lr, hr, 11, 3)


def test_eight_symmetries_are_distinct_and_invertible():
    img = np.random.default_rng(0).random((5, 5, 2))
    outs = [augment(img, m) for m in range(8)]
    for i in range(8):
        np.testing.assert_array_equal(inverse_augment(outs[i], i), img)
        for j in range(i):
            assert not np.array_equal(outs[i], outs[j])
    a, b = random_augment(img, img * 2, rng=3)
    np.testing.assert_array_equal(b, a * 2)                     # same symmetry for input and target


def test_fsrcnn_scale_augmentation():
    imgs = [_hr(50, 40)]
    out = scale_augment(imgs)
    assert FSRCNN_SCALES == (0.9, 0.8, 0.7, 0.6)
    assert [o.shape[:2] for o in out] == [(50, 40), (45, 36), (40, 32), (35, 28), (30, 24)]
    assert all(o.dtype == np.uint8 for o in out)


def test_dense_subimages_like_srcnn():
    img = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    subs = dense_subimages(img, 33, 14)
    # corners 0 only vertically (0+33<=40, 14+33>40), 0 and 14 horizontally
    assert subs.shape == (2, 33, 33)
    np.testing.assert_array_equal(subs[1], img[0:33, 14:47])
    rgb = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)
    s3 = dense_subimages(rgb, 20, 10)
    assert s3.shape == (3 * 4, 20, 20, 3)
    np.testing.assert_array_equal(s3[5], rgb[10:30, 10:30])
    x, y = dense_pairs(img, img + 1, size=33, stride=14, label_size=21)
    assert x.shape == (2, 33, 33) and y.shape == (2, 21, 21)
    np.testing.assert_array_equal(y[0], img[6:27, 6:27] + 1)
    lr, hr = make_pair(_hr(), 2)
    x, y = dense_pairs(lr, hr, size=10, stride=7, scale=2)
    assert x.shape[1:] == (10, 10) and y.shape[1:] == (20, 20) and len(x) == len(y)
    assert dense_subimages(img, 64, 1).shape == (0, 64, 64)


def test_sampler_is_seeded_and_nchw():
    pairs = [make_pair(_hr(seed=k), 2, channel="rgb") for k in range(3)]
    a = list(PatchSampler(pairs, 8, 4, scale=2, seed=7, steps=3))
    b = list(PatchSampler(pairs, 8, 4, scale=2, seed=7, steps=3))
    c = list(PatchSampler(pairs, 8, 4, scale=2, seed=8, steps=3))
    assert len(a) == 3
    x, y = a[0]
    assert x.shape == (4, 3, 8, 8) and y.shape == (4, 3, 16, 16)
    assert x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    for (x1, y1), (x2, y2) in zip(a, b):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(a[0][0], c[0][0])
    # Y, pre-upsampled, SRCNN-style label crop
    ypairs = [make_pair(_hr(seed=k), 3, upsample=True) for k in range(2)]
    s = PatchSampler(ypairs, 33, 2, scale=1, label_crop=6, align=3, seed=0)
    x, y = s.sample()
    assert x.shape == (2, 1, 33, 33) and y.shape == (2, 1, 21, 21)
    with pytest.raises(ValueError, match="smaller than the patch size"):
        PatchSampler(ypairs, 64, 2)


def test_sampler_patches_come_from_the_pairs():
    lr, hr = make_pair(_hr(), 2)                                # Y: LR 24x30, HR 48x60
    x, y = PatchSampler([(lr, hr)], 6, 5, scale=2, augment=False, seed=1).sample()
    for k in range(5):
        found = [(i, j) for i in range(24 - 5) for j in range(30 - 5)
                 if np.array_equal(lr[i:i + 6, j:j + 6], x[k, 0])]
        assert found
        i, j = found[0]
        np.testing.assert_array_equal(hr[2 * i:2 * i + 12, 2 * j:2 * j + 12], y[k, 0])


def test_minibatches_and_to_nchw():
    xs = np.random.default_rng(0).random((10, 5, 5)).astype(np.float32)
    batches = list(iterate_minibatches(xs, xs * 2, 4, seed=0))
    assert [b[0].shape for b in batches] == [(4, 1, 5, 5), (4, 1, 5, 5), (2, 1, 5, 5)]
    seen = np.concatenate([b[0][:, 0] for b in batches])
    assert sorted(seen[:, 0, 0].tolist()) == sorted(xs[:, 0, 0].tolist())
    assert len(list(iterate_minibatches(xs, xs, 4, drop_last=True))) == 2
    assert to_nchw(np.zeros((2, 3, 4, 3))).shape == (2, 3, 3, 4)
