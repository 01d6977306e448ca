"""Check every CUDA kernel against its NumPy twin in tinysr, on small shapes.

    NUMBA_ENABLE_CUDASIM=1 python -m tinysr_kernels.cuda.selftest [CHECK ...]   # no GPU needed
    python -m tinysr_kernels.cuda.selftest --cupy [CHECK ...]                     # on a GPU, CuPy arrays

Checks: im2col, col2im, pixel_shuffle, bias_act, batchnorm, sgemm, conv, contiguous (all by
default).  The shapes cover what the acceptance list asks for: odd sizes, stride 1/2/3, padding
0/1/4, batches > 1, non-square kernels and non-contiguous (strided view) inputs, in float32 and
float64.  Prints one line per case and exits with status 1 if any case fails.

Under the simulator each CUDA thread is a Python thread, so the shapes are tiny and the launchers
use few threads that loop (see ``_runtime.grid_1d``); the whole run takes well under a minute.
"""
import argparse
import sys
import time
import traceback

import numpy as np

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__.lstrip("_")] = fn
    return fn


class Device:
    """Moves test arrays to and from the device in the chosen family (CuPy or Numba)."""

    def __init__(self, use_cupy):
        self.use_cupy = use_cupy
        if use_cupy:
            import cupy
            self.cp = cupy
        from numba import cuda
        self.cuda = cuda

    def put(self, a):
        a = np.ascontiguousarray(a)
        return self.cp.asarray(a) if self.use_cupy else self.cuda.to_device(a)

    def get(self, d):
        if d is None:
            return None
        return self.cp.asnumpy(d) if self.use_cupy else d.copy_to_host()

    def put_strided(self, a):
        """A device *view* with the values of ``a`` that is not contiguous: every other column of a
        twice-as-wide array, cut on the device (so the launcher's contiguous() path is exercised)."""
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), dtype=a.dtype)
        wide[..., 1::2] = a
        every_other = (slice(None),) * (a.ndim - 1) + (slice(1, None, 2),)
        return self.put(wide)[every_other]


def _close(what, got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    if not err <= tol * scale:
        idx = np.unravel_index(np.argmax(np.abs(got - want)), want.shape)
        raise AssertionError(f"{what}: max error {err:.3g} at {idx}: got {got[idx]!r}, expected {want[idx]!r}")
    print(f"  ok  {what}  (max err {err:.1e})")


def _rng(seed=0):
    return np.random.default_rng(seed)


# (N, C, H, W, kh, kw, stride, padding): odd sizes, stride 1/2/3, padding 0/1/4, batch > 1.
CONV_CASES = [
    (2, 3, 7, 5, 3, 3, 1, 1),
    (1, 2, 9, 8, 3, 2, 2, 0),
    (3, 1, 5, 7, 2, 3, 3, 4),
    (2, 2, 6, 6, 5, 5, (2, 1), (1, 4)),
    (1, 2, 4, 3, 1, 1, 1, 0),
]


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


@check
def _im2col(dev):
    from tinysr.functional.conv_reference import im2col as twin
    from tinysr_kernels.cuda import im2col
    for i, (n, c, h, w, kh, kw, s, p) in enumerate(CONV_CASES):
        dtype = np.float32 if i % 2 == 0 else np.float64
        x = _rng(i).standard_normal((n, c, h, w)).astype(dtype)
        want = twin(x, kh, kw, _pair(s), _pair(p))
        tag = f"im2col x={x.shape} k={kh}x{kw} s={s} p={p} {np.dtype(dtype).name}"
        _close(tag + " layout=kn", dev.get(im2col(dev.put(x), kh, kw, s, p)), want, dtype)
        k, nps = want.shape
        want_nk = want.reshape(k, n, nps // n).transpose(1, 0, 2)
        xs = dev.put_strided(x) if i % 2 else dev.put(x)
        _close(tag + " layout=nk" + (" strided input" if i % 2 else ""),
               dev.get(im2col(xs, kh, kw, s, p, layout="nk")), want_nk, dtype)


@check
def _col2im(dev):
    from tinysr.functional.conv_reference import col2im as twin
    from tinysr.functional.conv_reference import conv_output_size
    from tinysr_kernels.cuda import col2im
    for i, (n, c, h, w, kh, kw, s, p) in enumerate(CONV_CASES):
        dtype = np.float64 if i % 2 == 0 else np.float32
        (sh, sw), (ph, pw) = _pair(s), _pair(p)
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        k, P = c * kh * kw, oh * ow
        cols = _rng(10 + i).standard_normal((k, n * P)).astype(dtype)
        want = twin(cols, (n, c, h, w), kh, kw, _pair(s), _pair(p))
        tag = f"col2im x=({n},{c},{h},{w}) k={kh}x{kw} s={s} p={p} {np.dtype(dtype).name}"
        _close(tag + " layout=kn", dev.get(col2im(dev.put(cols), (n, c, h, w), kh, kw, s, p)), want, dtype)
        cols_nk = cols.reshape(k, n, P).transpose(1, 0, 2)
        d = dev.put_strided(cols_nk) if i % 2 else dev.put(cols_nk)
        _close(tag + " layout=nk" + (" strided input" if i % 2 else ""),
               dev.get(col2im(d, (n, c, h, w), kh, kw, s, p, layout="nk")), want, dtype)


@check
def _pixel_shuffle(dev):
    from tinysr.functional.shape import PixelShuffle, pixel_unshuffle_array
    from tinysr_kernels.cuda import pixel_shuffle, pixel_unshuffle
    for i, (n, c, h, w, r) in enumerate([(2, 2, 3, 5, 2), (1, 1, 2, 3, 3), (3, 3, 1, 2, 4)]):
        dtype = np.float32 if i % 2 == 0 else np.float64
        x = _rng(20 + i).standard_normal((n, c * r * r, h, w)).astype(dtype)
        tag = f"x={x.shape} r={r} {np.dtype(dtype).name}"
        _close("pixel_shuffle " + tag, dev.get(pixel_shuffle(dev.put(x), r)), PixelShuffle(r).forward(x), dtype)
        y = _rng(30 + i).standard_normal((n, c, h * r, w * r)).astype(dtype)
        _close("pixel_unshuffle " + tag, dev.get(pixel_unshuffle(dev.put(y), r)), pixel_unshuffle_array(y, r), dtype)
        _close("pixel_shuffle strided input " + tag, dev.get(pixel_shuffle(dev.put_strided(x), r)),
               PixelShuffle(r).forward(x), dtype)


def _bias_act_twin(x, b, act, alpha, slope, gy):
    """Forward and gradients through tinysr's own autograd, in float64."""
    import tinysr.functional as F
    from tinysr import Tensor
    xt = Tensor(x.astype(np.float64), requires_grad=True)
    bt = Tensor(b.astype(np.float64), requires_grad=True) if b is not None else None
    at = Tensor(alpha.astype(np.float64), requires_grad=True) if alpha is not None else None
    shape = (1, -1) + (1,) * (x.ndim - 2)
    z = xt + bt.reshape(shape) if bt is not None else xt * 1.0
    y = {"identity": lambda: z * 1.0, "relu": lambda: F.relu(z),
         "leaky_relu": lambda: F.leaky_relu(z, slope), "prelu": lambda: F.prelu(z, at)}[act]()
    y.backward(gy.astype(np.float64))
    return y.data, xt.grad, (bt.grad if bt is not None else None), (at.grad if at is not None else None)


@check
def _bias_act(dev):
    from tinysr_kernels.cuda import bias_act_backward, bias_act_forward
    cases = [("relu", (2, 3, 5, 7), True, None), ("leaky_relu", (3, 2, 3, 3), True, None),
             ("prelu", (2, 4, 3, 5), True, 4), ("prelu", (2, 3, 4, 3), False, 1),
             ("identity", (2, 3, 2, 3), True, None), ("relu", (5, 3), True, None)]
    for i, (act, shape, has_bias, n_alpha) in enumerate(cases):
        dtype = np.float32 if i % 2 == 0 else np.float64
        rng = _rng(40 + i)
        x = rng.standard_normal(shape).astype(dtype)
        b = rng.standard_normal(shape[1]).astype(dtype) * 0.5 if has_bias else None
        alpha = (rng.uniform(-0.5, 0.5, n_alpha)).astype(dtype) if n_alpha else None
        gy = rng.standard_normal(shape).astype(dtype)
        slope = 0.2
        y0, gx0, gb0, ga0 = _bias_act_twin(x, b, act, alpha, slope, gy)
        tag = f"{act} x={shape} bias={has_bias} alpha={n_alpha} {np.dtype(dtype).name}"
        db = dev.put(b) if b is not None else None
        da = dev.put(alpha) if alpha is not None else None
        xs = dev.put_strided(x) if i == 2 else dev.put(x)
        y = bias_act_forward(xs, db, act, da, negative_slope=slope)
        _close("bias_act_forward " + tag + (" strided input" if i == 2 else ""), dev.get(y), y0, dtype)
        gx, gb, ga = bias_act_backward(dev.put(gy), xs, db, act, da, negative_slope=slope)
        _close("bias_act_backward gx " + tag, dev.get(gx), gx0, dtype)
        if has_bias:
            _close("bias_act_backward gbias " + tag, dev.get(gb), gb0, dtype)
        elif gb is not None:
            raise AssertionError("gbias should be None without a bias")
        if act == "prelu":
            _close("bias_act_backward galpha " + tag, dev.get(ga), ga0, dtype)


@check
def _batchnorm(dev):
    from tinysr_kernels.cuda import batchnorm_stats
    for i, shape in enumerate([(2, 3, 5, 7), (3, 2, 1, 9), (7, 4)]):
        dtype = np.float32 if i % 2 == 0 else np.float64
        x = (_rng(50 + i).standard_normal(shape) * 2 + 3).astype(dtype)
        axes = (0,) + tuple(range(2, x.ndim))
        xs = dev.put_strided(x) if i == 0 else dev.put(x)
        s1, s2 = batchnorm_stats(xs)
        x64 = x.astype(np.float64)
        tag = f"batchnorm_stats x={shape} {np.dtype(dtype).name}" + (" strided input" if i == 0 else "")
        _close(tag + " sum", dev.get(s1), x64.sum(axis=axes), np.float64)
        _close(tag + " sum of squares", dev.get(s2), (x64 * x64).sum(axis=axes), np.float64)
        # The statistics tinysr's BatchNorm computes from them (mean, biased variance).
        m = x.size // shape[1]
        mean = dev.get(s1) / m
        _close(tag + " -> variance", dev.get(s2) / m - mean ** 2, x64.var(axis=axes), np.float32)


@check
def _sgemm(dev):
    from tinysr_kernels.cuda import sgemm
    rng = _rng(60)
    cases = [  # (a shape, b shape, trans_a, trans_b, reduce_batch): sizes not multiples of the tile
        ((5, 7), (7, 6), False, False, False),
        ((7, 5), (7, 3), True, False, False),
        ((5, 9), (4, 9), False, True, False),
        ((2, 3, 5), (5, 7), False, False, False),
        ((5, 6), (3, 6, 2), False, False, False),
        ((2, 6, 3), (2, 5, 6), True, True, False),
        ((3, 4, 7), (3, 5, 7), False, True, True),
    ]
    for i, (sa, sb, ta, tb, red) in enumerate(cases):
        dtype = np.float32 if i % 2 == 0 else np.float64
        a = rng.standard_normal(sa).astype(dtype)
        b = rng.standard_normal(sb).astype(dtype)
        at = a.swapaxes(-1, -2) if ta else a
        bt = b.swapaxes(-1, -2) if tb else b
        want = np.matmul(at.astype(np.float64), bt.astype(np.float64))
        if red:
            want = want.sum(axis=0)
        tag = f"sgemm a={sa} b={sb} trans_a={ta} trans_b={tb} reduce_batch={red} {np.dtype(dtype).name}"
        _close(tag, dev.get(sgemm(dev.put(a), dev.put(b), ta, tb, red)), want, dtype)
    a = rng.standard_normal((6, 5)).astype(np.float32)
    b = rng.standard_normal((6, 3)).astype(np.float32)
    _close("sgemm strided (transposed view) input", dev.get(sgemm(dev.put(a).T, dev.put(b))), a.T @ b, np.float32)


@check
def _conv(dev):
    from tinysr.functional.conv_reference import NumpyConvImpl, conv_output_size, conv_transpose_output_size
    from tinysr_kernels.cuda import CudaConvImpl
    for i, (n, c, h, w, kh, kw, s, p) in enumerate(CONV_CASES[:4]):
        dtype = np.float64 if i % 2 else np.float32
        rng = _rng(70 + i)
        o = 3
        s, p = _pair(s), _pair(p)
        oh, ow = conv_output_size(h, kh, s[0], p[0]), conv_output_size(w, kw, s[1], p[1])
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = rng.standard_normal((o, c, kh, kw)).astype(dtype)
        gy = rng.standard_normal((n, o, oh, ow)).astype(dtype)
        tag = f"conv x={x.shape} w={wt.shape} s={s} p={p} {np.dtype(dtype).name}"
        xs = dev.put_strided(x) if i == 1 else dev.put(x)
        _close(tag + " forward", dev.get(CudaConvImpl.forward(xs, dev.put(wt), s, p)),
               NumpyConvImpl.forward(x, wt, s, p), dtype)
        _close(tag + " backward_data", dev.get(CudaConvImpl.backward_data(dev.put(gy), dev.put(wt), x.shape, s, p)),
               NumpyConvImpl.backward_data(gy, wt, x.shape, s, p), dtype)
        _close(tag + " backward_weight", dev.get(CudaConvImpl.backward_weight(xs, dev.put(gy), wt.shape, s, p)),
               NumpyConvImpl.backward_weight(x, gy, wt.shape, s, p), dtype)
    # Transposed convolution (FSRCNN's deconvolution): its forward is backward_data onto a larger
    # image, including an output_padding that leaves a row and column no input pixel reaches.
    x = _rng(80).standard_normal((2, 3, 3, 4)).astype(np.float32)
    wt = _rng(81).standard_normal((3, 2, 3, 3)).astype(np.float32)
    out_shape = (2, 2, conv_transpose_output_size(3, 3, 3, 1, 2), conv_transpose_output_size(4, 3, 3, 1, 2))
    _close(f"conv_transpose x={x.shape} w={wt.shape} s=3 p=1 output_padding=2",
           dev.get(CudaConvImpl.backward_data(dev.put(x), dev.put(wt), out_shape, (3, 3), (1, 1))),
           NumpyConvImpl.backward_data(x, wt, out_shape, (3, 3), (1, 1)), np.float32)


@check
def _contiguous(dev):
    from tinysr_kernels.cuda import contiguous
    rng = _rng(90)
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    d = dev.put(x)
    for what, view, want in [("4-D step slice", d[:, 1:, ::2, 1:5], x[:, 1:, ::2, 1:5]),
                             ("3-D slice", d[1, :, ::3], x[1, :, ::3]),
                             ("2-D transpose", d[0, 0].T, x[0, 0].T),
                             ("1-D step slice", d[2, 3, 1, ::2], x[2, 3, 1, ::2])]:
        c = contiguous(view)
        flag = c.flags.c_contiguous if dev.use_cupy else c.is_c_contiguous()
        if not flag:
            raise AssertionError(f"contiguous({what}) is not C-contiguous")
        _close("contiguous " + what, dev.get(c), want, np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checks", nargs="*", help=f"which checks (default: all of {', '.join(CHECKS)})")
    ap.add_argument("--cupy", action="store_true", help="use CuPy arrays (needs a GPU) instead of Numba device arrays")
    args = ap.parse_args(argv)
    names = args.checks or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        ap.error(f"unknown check(s) {unknown}; choose from {list(CHECKS)}")
    from numba.core import config
    mode = "CUDA simulator" if config.ENABLE_CUDASIM else "GPU"
    dev = Device(args.cupy)
    failed = []
    for name in names:
        t0 = time.perf_counter()
        print(f"[{name}] on the {mode} with {'CuPy' if args.cupy else 'Numba'} arrays")
        try:
            CHECKS[name](dev)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"[{name}] FAILED")
        else:
            print(f"[{name}] passed in {time.perf_counter() - t0:.1f} s")
    if failed:
        print(f"SELFTEST FAILED: {', '.join(failed)}")
        return 1
    print(f"SELFTEST PASSED: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
