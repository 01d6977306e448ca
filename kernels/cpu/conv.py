"""The fast CPU convolution: :class:`NumbaConvImpl`, registered with tinysr as ``"numba"``.

Same three linear maps as :class:`tinysr.functional.conv_reference.NumpyConvImpl` (forward, backward_data,
backward_weight), plus a fused ``backward`` that computes both gradients in one pass.  What makes it
lean in time and memory:

* **Per-shape choice.**  Layers with at most :attr:`NumbaConvImpl.direct_max_out` output channels
  (SRCNN's, VDSR's and EDSR's last layers) use the direct kernels of :mod:`.direct`; a GEMM with 1-3
  rows is all column-building and no arithmetic.  Stride-1 layers on images of 1024+ pixels (VDSR's
  and EDSR's training patches, every whole image at inference) build their column matrix block by
  block in cache from shifted views of the padded image (:mod:`.shifted`).  Everything else is
  im2col + one OpenBLAS sgemm per slice of the batch, oriented ``W (O, K) @ cols (K, M)`` so the
  long dimension M = samples*pixels is the GEMM's N.
* **Bounded, reused buffers.**  The batch is cut into slices whose column matrix fits
  :attr:`NumbaConvImpl.col_budget` bytes; the buffers are allocated once and reused by every layer and
  every step (a fresh 60-340 MB array per call costs page faults and zeroing).  The column matrix is
  never kept for backward: ``backward`` recomputes it, one slice at a time.
* **No spinning thread pools, few wake-ups.**  With at least as many samples as threads, each thread
  takes a share of the batch and runs the whole im2col -> GEMM -> layout move of its slices with
  single-threaded kernels and BLAS (:func:`_shares`): one synchronisation per layer instead of three
  per slice.  Otherwise the kernels run in parallel and GEMMs go through :func:`.threads.gemm`.
* **Fused layout moves.**  The GEMM result (O, M) is transposed back to NCHW by a Numba kernel that
  also adds the bias; ``backward`` gathers the output gradient once per slice and uses it for both
  the weight gradient and the input gradient.
* **One image at a time needs no layout move.**  When a slice is a single sample (whole images at
  inference), the GEMM writes straight into that sample's (O, OH*OW) block of the output, and a 1x1
  convolution (SRCNN's non-linear mapping, FSRCNN's shrinking and expanding) uses the image itself as
  its column matrix: no im2col, no output buffer, no transpose.
* **float32 only.**  Other dtypes (float64 gradient checks) go to the NumPy implementation.
"""
import numpy as np

from tinysr.functional.conv_reference import NumpyConvImpl, conv_output_size

from . import direct, memory, shifted
from .im2col import add_bias_rows, cm_to_nchw_bias, col2im_into, im2col_into, nchw_to_cm
from .pointwise import bias_grad
from .threads import gemm, get_num_threads, parallel_kernels_nest, run_parallel

_buffers = {}


def _buffer(name, size):
    """A float32 scratch array of ``size`` elements, reused across calls (grown, never shrunk)."""
    buf = _buffers.get(name)
    if buf is None or buf.size < size:
        _buffers.pop(name, None)  # free the old one before allocating the larger one
        buf = np.empty(size, dtype=np.float32)
        _buffers[name] = buf
    return buf[:size]


def release_buffers():
    """Free the scratch buffers (they are re-created, at the size needed, on the next convolution)."""
    _buffers.clear()


def _shares(n, nb):
    """The batch cut into one contiguous share per thread, each share into slices of at most ``nb``
    samples: a list (per thread) of (n0, m) slices, or None with fewer samples than threads.

    Each thread then runs its own im2col -> GEMM -> layout move on its slices, one after the other,
    with single-threaded kernels and BLAS, and the only synchronisation is at the end of the layer
    (not on Numba's workqueue layer, which cannot launch kernels from two threads at once).
    Why: waking a sleeping worker costs tens of microseconds, as much as a small kernel, and making each
    of the three steps of every slice parallel on its own would pay that about ten times per layer --
    a fifth of FSRCNN's training step (``benchmarks/README.md``).
    """
    t = get_num_threads()
    if t <= 1 or n < t or not parallel_kernels_nest():
        return None
    shares = []
    for i in range(t):
        a, b = n * i // t, n * (i + 1) // t
        per = -(-(b - a) // nb)                     # slices in this share, of equal size
        cuts = [a + (b - a) * j // per for j in range(per + 1)]
        shares.append([(cuts[j], cuts[j + 1] - cuts[j]) for j in range(per)])
    return shares


def _fast(*arrays):
    return all(type(a) is np.ndarray and a.dtype == np.float32 for a in arrays)


class NumbaConvImpl:
    """Convolution maps on NumPy float32 arrays with Numba kernels and OpenBLAS (see module docstring).

    ``forward(x, w, stride, padding, bias=None)`` -> y (N, O, OH, OW), bias fused in;
    ``backward_data(gy, w, x_shape, stride, padding)`` -> gx;
    ``backward_weight(x, gy, w_shape, stride, padding)`` -> gw;
    ``backward(x, w, gy, stride, padding, need_x=True)`` -> (gx or None, gw), sharing one pass.
    """

    name = "numba"
    fuses_bias = True
    direct_max_out = 3
    # Bytes of column matrix per batch slice.  The column buffer and the GEMM's output slice are live
    # beside the activations at the step's peak.  VDSR/EDSR's 576-row matrices take the blocked path
    # (:mod:`.shifted`), so the layers left here have short columns (SRCNN's 81, FSRCNN's 25-108 rows),
    # and 2 MB still gives their GEMMs thousands of columns while SRCNN's training peak stays a fifth
    # below its peak at 16 MB, for a small cost in throughput (benchmarks/README.md).
    col_budget = 2 << 20
    # A batch of 1x1 convolutions runs image by image (no column matrix) when each image has at least this
    # many pixels: enough columns for the GEMM to be split over the threads.  Training patches are smaller
    # and keep the batched path, whose one large GEMM uses the cores better.
    per_image_min_pixels = 4096
    # Stride-1 convolutions on images of 1024+ wide-grid pixels build their columns block by block in
    # cache (see :mod:`.shifted`); False forces the batched im2col (for comparisons).
    shifted = True

    # ------------------------------------------------------------------ helpers
    @classmethod
    def _slice(cls, n, k, p):
        """Samples per batch slice so that the (k, slice*p) column matrix fits the budget."""
        return int(max(1, min(n, cls.col_budget // (4 * k * p))))

    @classmethod
    def _direct(cls, o):
        return o <= cls.direct_max_out

    # ------------------------------------------------------------------ forward
    @classmethod
    def forward(cls, x, w, stride, padding, bias=None):
        if not _fast(x, w) or (bias is not None and not _fast(bias)):
            y = NumpyConvImpl.forward(x, w, stride, padding)
            if bias is not None:
                y += bias.reshape(1, -1, 1, 1)
            return y
        (sh, sw), (ph, pw) = stride, padding
        x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
        n, c, h, wd = x.shape
        o, _, kh, kw = w.shape
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(wd, kw, sw, pw)
        if oh <= 0 or ow <= 0:
            raise ValueError(f"the input {h}x{wd} is smaller than the {kh}x{kw} kernel (padding {ph},{pw})")
        has_bias = bias is not None
        b = np.ascontiguousarray(bias) if has_bias else np.zeros(1, np.float32)
        if cls._direct(o):
            y = memory.empty((n, o, oh, ow))
            direct.forward(x, w, b, has_bias, sh, sw, ph, pw, y)
            return y
        if cls.shifted and shifted.usable(x.shape, w.shape, stride, padding):
            return shifted.forward(x, w, padding, b if has_bias else None)
        k, p = c * kh * kw, oh * ow
        nb = cls._slice(n, k, p)
        w2 = w.reshape(o, k)
        y = memory.empty((n, o, p))
        pointwise = kh == kw == 1 and sh == sw == 1 and ph == pw == 0
        if nb == 1 or (pointwise and p >= cls.per_image_min_pixels):
            x3 = x.reshape(n, c, h * wd)
            for i in range(n):
                if pointwise:
                    cols = x3[i]                      # a 1x1 convolution's columns are the image itself
                else:
                    cols = _buffer(("cols", 0), k * p).reshape(k, p)
                    im2col_into(x, i, 1, kh, kw, sh, sw, ph, pw, oh, ow, cols)
                gemm(w2, cols, y[i])
                if has_bias:
                    add_bias_rows(y[i], b)
            return y.reshape(n, o, oh, ow)
        parts = _shares(n, nb)
        if parts is None:  # fewer samples than threads: each kernel and the GEMM use all threads
            for n0 in range(0, n, nb):
                m = min(nb, n - n0)
                cols = _buffer(("cols", 0), k * m * p).reshape(k, m * p)
                im2col_into(x, n0, m, kh, kw, sh, sw, ph, pw, oh, ow, cols)
                y2 = _buffer(("out", 0), o * m * p).reshape(o, m * p)
                gemm(w2, cols, y2)
                cm_to_nchw_bias(y2, n0, m, b, has_bias, y)
            return y.reshape(n, o, oh, ow)

        def work(job):
            t, items = job
            for n0, m in items:
                cols = _buffer(("cols", t), k * m * p).reshape(k, m * p)
                im2col_into(x, n0, m, kh, kw, sh, sw, ph, pw, oh, ow, cols)
                y2 = _buffer(("out", t), o * m * p).reshape(o, m * p)
                np.matmul(w2, cols, out=y2)
                cm_to_nchw_bias(y2, n0, m, b, has_bias, y)
        run_parallel(work, enumerate(parts))
        return y.reshape(n, o, oh, ow)

    # ------------------------------------------------------------------ backward
    @classmethod
    def backward(cls, x, w, gy, stride, padding, need_x=True):
        """Both gradients of y = conv(x, w): (gx, gw), with gx None when ``need_x`` is false.

        Per batch slice: gather gy into (O, M) once, rebuild the columns, ``gW += gY @ cols^T``, then
        reuse the column buffer for ``dcols = W^T @ gY`` and fold it back with col2im.
        """
        if not _fast(x, w, gy):
            gx = NumpyConvImpl.backward_data(gy, w, x.shape, stride, padding) if need_x else None
            return gx, NumpyConvImpl.backward_weight(x, gy, w.shape, stride, padding)
        (sh, sw), (ph, pw) = stride, padding
        x, w, gy = np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(gy)
        n, c, h, wd = x.shape
        o, _, kh, kw = w.shape
        oh, ow = gy.shape[2], gy.shape[3]
        if cls._direct(o):
            gw = np.empty(w.shape, dtype=np.float32)
            direct.backward_weight(x, gy, sh, sw, ph, pw, gw)  # pads implicitly
            gx = None
            if need_x:
                gx = cls._direct_data(gy, w, x.shape, sh, sw, ph, pw)
            return gx, gw
        if cls.shifted and shifted.usable(x.shape, w.shape, stride, padding):
            gw = shifted.backward_weight(x, gy, w.shape, padding)
            return (shifted.backward_data(gy, w, padding) if need_x else None), gw
        k, p = c * kh * kw, oh * ow
        nb = cls._slice(n, k, p)
        w2 = w.reshape(o, k)
        g3 = gy.reshape(n, o, p)
        gx = memory.empty(x.shape) if need_x else None
        parts = _shares(n, nb)
        serial = parts is None
        if serial:  # fewer samples than threads: one share, each kernel and GEMM on all threads
            parts = [[(n0, min(nb, n - n0)) for n0 in range(0, n, nb)]]
        mm = gemm if serial else np.matmul
        sums = [np.zeros((o, k), dtype=np.float32) for _ in parts]

        def work(job):
            t, items = job
            gw_t = sums[t]
            part = np.empty((o, k), dtype=np.float32) if len(items) > 1 else gw_t
            for n0, m in items:
                gyc = _buffer(("out", t), o * m * p).reshape(o, m * p)
                nchw_to_cm(g3, n0, m, gyc)
                cols = _buffer(("cols", t), k * m * p).reshape(k, m * p)
                im2col_into(x, n0, m, kh, kw, sh, sw, ph, pw, oh, ow, cols)
                mm(cols, gyc.T, part.T)
                if part is not gw_t:
                    gw_t += part
                if need_x:
                    mm(w2.T, gyc, cols)
                    col2im_into(cols, n0, m, kh, kw, sh, sw, ph, pw, oh, ow, gx)
        if serial:
            work((0, parts[0]))
        else:
            run_parallel(work, enumerate(parts))
        gw = sums[0]
        for other in sums[1:]:
            gw += other
        return gx, gw.reshape(w.shape)

    @classmethod
    def _direct_data(cls, gy, w, x_shape, sh, sw, ph, pw):
        """The direct kernel's input gradient, computed into a padded scratch buffer a few samples at a
        time and cropped from there: never a padded gradient of the whole batch beside the cropped one."""
        n, c, h, wd = x_shape
        oh, ow = gy.shape[2], gy.shape[3]
        kh, kw = w.shape[2], w.shape[3]
        if sh == sw == 1 and ph < kh and pw < kw and h * wd > direct.rows_min_pixels:
            gx = memory.empty(x_shape)
            direct.backward_data_rows(gy, w, ph, pw, gx)
            return gx
        # The padded gradient must cover every tap position; its border is dropped afterwards.
        hp, wp = max(h + 2 * ph, (oh - 1) * sh + w.shape[2]), max(wd + 2 * pw, (ow - 1) * sw + w.shape[3])
        if ph == 0 and pw == 0 and hp == h and wp == wd:
            gx = memory.empty((n, c, hp, wp))
            direct.backward_data(gy, w, sh, sw, gx)
            return gx
        gx = memory.empty(x_shape)
        # Slices of at least 64 (sample, channel) planes keep both threads busy.
        nb = int(min(n, max(1, -(-64 // c))))
        scratch = _buffer("direct_gx", nb * c * hp * wp).reshape(nb, c, hp, wp)
        for n0 in range(0, n, nb):
            m = min(nb, n - n0)
            direct.backward_data(gy[n0:n0 + m], w, sh, sw, scratch[:m])
            gx[n0:n0 + m] = scratch[:m, :, ph:ph + h, pw:pw + wd]
        return gx

    @classmethod
    def backward_data(cls, gy, w, x_shape, stride, padding):
        if not _fast(gy, w):
            return NumpyConvImpl.backward_data(gy, w, x_shape, stride, padding)
        (sh, sw), (ph, pw) = stride, padding
        gy, w = np.ascontiguousarray(gy), np.ascontiguousarray(w)
        n, c, h, wd = x_shape
        o, _, kh, kw = w.shape
        oh, ow = gy.shape[2], gy.shape[3]
        if cls._direct(o):
            return cls._direct_data(gy, w, x_shape, sh, sw, ph, pw)
        if cls.shifted and shifted.usable(x_shape, w.shape, stride, padding):
            return shifted.backward_data(gy, w, padding)
        k, p = c * kh * kw, oh * ow
        nb = cls._slice(n, k, p)
        w2t = w.reshape(o, k).T
        g3 = gy.reshape(n, o, p)
        gx = memory.empty(x_shape)
        parts = _shares(n, nb)
        serial = parts is None
        if serial:
            parts = [[(n0, min(nb, n - n0)) for n0 in range(0, n, nb)]]
        mm = gemm if serial else np.matmul

        def work(job):
            t, items = job
            for n0, m in items:
                gyc = _buffer(("out", t), o * m * p).reshape(o, m * p)
                nchw_to_cm(g3, n0, m, gyc)
                cols = _buffer(("cols", t), k * m * p).reshape(k, m * p)
                mm(w2t, gyc, cols)
                col2im_into(cols, n0, m, kh, kw, sh, sw, ph, pw, oh, ow, gx)
        if serial:
            work((0, parts[0]))
        else:
            run_parallel(work, enumerate(parts))
        return gx

    @classmethod
    def backward_weight(cls, x, gy, w_shape, stride, padding):
        if not _fast(x, gy):
            return NumpyConvImpl.backward_weight(x, gy, w_shape, stride, padding)
        w = np.empty(w_shape, dtype=np.float32)  # only its shape is read when need_x is false
        return cls.backward(x, w, gy, stride, padding, need_x=False)[1]

    bias_grad = staticmethod(bias_grad)
