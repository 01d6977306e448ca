"""The readable NumPy twins of every convolution algorithm, and the shape helpers they share.

This module is the *reference* layer: it imports nothing of tinysr but :mod:`tinysr.backend`, so the
fast kernels in ``kernels/`` can import it (to fall back on, and to test against) without depending on
the differentiable ops in :mod:`tinysr.functional.conv`, which sit above both.

A 2-D convolution (cross-correlation, as in PyTorch and Caffe) of ``x`` (N, C, H, W) with weights
``W`` (O, C, kh, kw) is

    y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x_pad[n, c, s*i + u, s*j + v].

Two algorithms compute it here, each as the three linear maps a training step needs (forward, the
input gradient, the weight gradient):

* :class:`NumpyConvImpl` -- **im2col + one GEMM**.  *im2col* copies, for every kernel offset (u, v),
  the strided window of ``x_pad`` that this offset touches into one row of a "column" matrix of shape
  (C*kh*kw, N*OH*OW).  The whole convolution is then one matrix product ``W.reshape(O, -1) @ cols``,
  which BLAS runs near the machine's peak.  The input gradient is the transpose of that linear map:
  ``W^T @ dY`` gives column gradients and *col2im* adds each column back into the window it was
  copied from -- exactly the forward pass of a transposed convolution.
* :class:`WinogradImpl` -- **Winograd's minimal filtering** F(m x m, 3 x 3) for stride-1 3x3 layers
  (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): m*m outputs of a
  3x3 filter from (m+2)^2 multiplies instead of 9*m*m, i.e. 2.25x fewer for F(2x2,3x3), 4x fewer
  for F(4x4,3x3) and 5.1x fewer for F(6x6,3x3).  See :func:`winograd_matrices` for where the
  transforms come from.

These functions are the teaching versions (vectorised, never a Python loop over pixels).  Faster
implementations (Numba on the CPU, CUDA on the GPU) live in ``kernels/`` and are tested against them;
:mod:`tinysr.functional.dispatch` chooses between them.
"""
import functools
from fractions import Fraction

import numpy as np

from .. import backend
from .sizes import pair as _pair


def conv_output_size(size, k, stride, padding):
    """Output length of a convolution along one axis: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * padding - k) // stride + 1


def im2col(x, kh, kw, stride=(1, 1), padding=(0, 0)):
    """Unfold ``x`` (N, C, H, W) into columns of shape (C*kh*kw, N*OH*OW).

    Row ``(c, u, v)`` holds the pixels that kernel tap (u, v) of input channel c multiplies, for
    every output position (n, i, j) in order.  Zero padding of ``padding`` pixels is applied first.
    """
    xp = backend.get_array_module(x)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"the input {h}x{w} is smaller than the {kh}x{kw} kernel (padding {ph},{pw})")
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    # Channel-major view so each kernel offset writes one contiguous (C, N, OH, OW) block.
    xt = x.transpose(1, 0, 2, 3)
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for u in range(kh):
        for v in range(kw):
            cols[:, u, v] = xt[:, :, u:u + sh * oh:sh, v:v + sw * ow:sw]
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, x_shape, kh, kw, stride=(1, 1), padding=(0, 0)):
    """The adjoint of :func:`im2col`: add columns (C*kh*kw, N*OH*OW) back into an image of ``x_shape``.

    Where windows overlap (stride < kernel) the contributions are summed, which is what makes this
    the gradient of im2col and the scatter step of a transposed convolution.
    """
    xp = backend.get_array_module(cols)
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    out = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for u in range(kh):
        for v in range(kw):
            out[:, :, u:u + sh * oh:sh, v:v + sw * ow:sw] += cols[:, u, v]
    out = out[:, :, ph:ph + h, pw:pw + w]
    return out.transpose(1, 0, 2, 3)


def _to_nchw(y2, n, oh, ow):
    """(O, N*OH*OW) GEMM result -> contiguous (N, O, OH, OW)."""
    xp = backend.get_array_module(y2)
    return xp.ascontiguousarray(y2.reshape(-1, n, oh, ow).transpose(1, 0, 2, 3))


def _from_nchw(y):
    """(N, O, OH, OW) -> (O, N*OH*OW), the layout the GEMMs use."""
    n, o, oh, ow = y.shape
    return y.transpose(1, 0, 2, 3).reshape(o, n * oh * ow)


class NumpyConvImpl:
    """The three linear maps of a convolution, written with im2col/col2im + GEMM.

    * ``forward(x, w, stride, padding)``            y = conv(x, w)
    * ``backward_data(gy, w, x_shape, ...)``        the adjoint in x: col2im(W^T @ gy)
    * ``backward_weight(x, gy, w_shape, ...)``      the adjoint in w: gy @ im2col(x)^T

    ``backward_weight`` recomputes the columns instead of keeping them from the forward pass: the
    column matrix is kh*kw times larger than the input (81x for SRCNN's first layer), and one extra
    im2col is cheap next to the GEMM.
    """

    name = "numpy"

    @staticmethod
    def forward(x, w, stride, padding):
        n, _, h, wd = x.shape
        o, _, kh, kw = w.shape
        oh, ow = conv_output_size(h, kh, stride[0], padding[0]), conv_output_size(wd, kw, stride[1], padding[1])
        cols = im2col(x, kh, kw, stride, padding)
        return _to_nchw(w.reshape(o, -1) @ cols, n, oh, ow)

    @staticmethod
    def backward_data(gy, w, x_shape, stride, padding):
        o, _, kh, kw = w.shape
        dcols = w.reshape(o, -1).T @ _from_nchw(gy)
        return col2im(dcols, x_shape, kh, kw, stride, padding)

    @staticmethod
    def backward_weight(x, gy, w_shape, stride, padding):
        o, _, kh, kw = w_shape
        cols = im2col(x, kh, kw, stride, padding)
        return (_from_nchw(gy) @ cols.T).reshape(w_shape)



def conv_transpose_output_size(size, k, stride, padding, output_padding):
    """Output length of a transposed convolution: ``(size - 1)*s - 2p + k + output_padding``."""
    return (size - 1) * stride - 2 * padding + k + output_padding




# ---------------------------------------------------------------------------------------------------
# Winograd minimal filtering F(m x m, 3 x 3)
# ---------------------------------------------------------------------------------------------------

#: The interpolation points of F(m, 3) (plus the point at infinity), the small integers and halves that
#: keep the transforms' entries small -- large entries amplify float32 rounding (Lavin & Gray, Sec. 5).
WINOGRAD_POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2), 6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))}


def _poly_mul(p, q):
    """Coefficients (lowest power first) of the product of two polynomials."""
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def winograd_matrices(m, r=3, dtype=np.float64):
    """The transforms ``(AT, G, BT)`` of Winograd's F(m, r): ``y = AT @ ((G @ g) * (BT @ d))``.

    ``y`` (m,) is the correlation ``y[i] = sum_k g[k] d[i + k]`` of a filter ``g`` (r,) with an input
    tile ``d`` (a,), a = m + r - 1; the product ``*`` is elementwise: a multiplies instead of m*r.

    Construction (Toom-Cook, transposed).  Take a - 1 distinct points p_j and the point at infinity.
    The *linear* convolution of polynomials h (r coefficients) and u (m coefficients) is the product
    c(x) = h(x) u(x); it is fixed by its values c(p_j) = h(p_j) u(p_j) (a multiplies) and its leading
    coefficient (the value "at infinity"), and Lagrange interpolation recovers it:
    ``c(x) = sum_j c(p_j) L_j(x) + c_inf M(x)`` with ``L_j = prod_{l != j} (x - p_l) / f_j``,
    ``f_j = prod_{l != j} (p_j - p_l)`` and ``M = prod_l (x - p_l)``.  Correlation is the transpose of
    that linear map, so transposing the three matrices gives
      * ``AT[i, j] = p_j ** i``             (evaluation of u, transposed; the inverse transform),
      * ``G[j, k]  = p_j ** k / f_j``       (evaluation of h; the filter transform),
      * ``BT[j, :]`` = the coefficients of ``prod_{l != j} (x - p_l)`` (interpolation, transposed),
    with the row or column of the point at infinity picking the leading coefficient.  The 2-D
    algorithm nests the 1-D one: ``Y = AT @ [(G g G^T) * (BT d B)] @ A``.
    """
    return tuple(mat.astype(dtype) for mat in _exact_matrices(m, r))     # fresh arrays: callers may write


@functools.lru_cache(maxsize=None)
def _exact_matrices(m, r):
    """The float64 ``(AT, G, BT)`` of :func:`winograd_matrices`, built once per ``(m, r)`` in exact fractions
    (each training step transforms every filter, and the construction costs more than the transform)."""
    pts = [Fraction(p) for p in WINOGRAD_POINTS[m]] if r == 3 else None
    if pts is None or len(pts) != m + r - 2:
        raise ValueError(f"Winograd transforms are defined here for F(2|4|6, 3), not F({m}, {r})")
    a = m + r - 1
    at = [[p ** i for p in pts] + [Fraction(int(i == m - 1))] for i in range(m)]
    g, bt = [], []
    for j, p in enumerate(pts):
        others = pts[:j] + pts[j + 1:]
        f = Fraction(1)
        poly = [Fraction(1)]
        for q in others:
            f *= p - q
            poly = _poly_mul(poly, [-q, Fraction(1)])
        g.append([p ** k / f for k in range(r)])
        bt.append(poly + [Fraction(0)] * (a - len(poly)))
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    full = [Fraction(1)]
    for q in pts:
        full = _poly_mul(full, [-q, Fraction(1)])
    bt.append(full)
    return tuple(np.array([[float(v) for v in row] for row in mat], dtype=np.float64) for mat in (at, g, bt))


def winograd_usable(x_shape, w_shape, stride, padding):
    """Whether Winograd F(m x m, 3 x 3) applies: a 3x3 kernel, stride 1, padding 0-2 on both axes, and
    an output of at least one pixel (the input gradient is then the same algorithm with padding 2 - p)."""
    if tuple(w_shape[2:]) != (3, 3) or tuple(stride) != (1, 1):
        return False
    ph, pw = padding
    return 0 <= ph <= 2 and 0 <= pw <= 2 and x_shape[2] + 2 * ph >= 3 and x_shape[3] + 2 * pw >= 3


def winograd_tiles(oh, ow, m):
    """Tiles per column and per row: ``ceil(OH / m), ceil(OW / m)`` (the last ones overhang and are cropped)."""
    return -(-oh // m), -(-ow // m)


def winograd_filter(w, m):
    """U (a*a, C, O) = ``G @ w[o, c] @ G^T`` for every filter, laid out for the batched GEMMs."""
    _, g, _ = winograd_matrices(m, dtype=w.dtype)
    a = m + 2
    u = np.einsum("ik,ockl,jl->ijco", g, w, g, optimize=True)
    return np.ascontiguousarray(u.reshape(a * a, w.shape[1], w.shape[0]))


def flipped_filters(w):
    """(C, O, 3, 3): the filters of the input gradient, ``w`` rotated by 180 degrees with O and C swapped."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


class FilterCache:
    """Transformed filters kept between calls at inference, keyed by the weight array and its version.

    At inference the same weights meet every image, and ``G w G^T`` need not be recomputed.  The key is
    the array's identity (its id and data address) and a *version*: a copy of the weights the entry was
    made from, compared on lookup, so an in-place update (``p.data -= lr * g``) or a loaded state dict
    invalidates the entry without anyone having to announce it.  A comparison reads the weights once,
    far cheaper than the transform.  At most ``size`` entries are kept, oldest out first.

    ``active`` says whether to use the cache for the current call; :mod:`tinysr.functional.dispatch`
    sets it to "gradients are off" -- during training every step changes the weights, and keeping a
    transform per layer would only add to the step's peak memory.
    """

    def __init__(self, size=256):
        self.size = size
        self._entries = {}
        self.active = lambda: True

    def get(self, w, key, make):
        """``make(w)`` for ``(w, key)``, from the cache when ``w`` has not changed since it was made."""
        if not self.active():
            return make(w)
        ident = (id(w), w.__array_interface__["data"][0], w.shape, w.dtype.str, key)
        hit = self._entries.get(ident)
        if hit is not None and np.array_equal(hit[0], w):
            return hit[1]
        value = make(w)
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[ident] = (w.copy(), value)
        return value

    def clear(self):
        self._entries.clear()


filter_cache = FilterCache()


class WinogradImpl:
    """The three linear maps of a stride-1 3x3 convolution with Winograd's F(m x m, 3 x 3), in NumPy.

    Forward, for output tiles of m x m pixels read from input tiles of a x a (a = m + 2) that overlap
    by two pixels::

        V = BT @ d @ B          every input tile d, every channel           (the input transform)
        U = G @ w @ G^T         every filter                                (the filter transform)
        M[xi] = U[xi]^T @ V[xi] for each of the a*a positions xi: a GEMM over the channels
        Y = AT @ M @ A          every tile and output channel               (the inverse transform)

    * ``backward_data`` is the same algorithm on the flipped, transposed filters with padding 2 - p
      (the input gradient of a stride-1 convolution is a convolution).
    * ``backward_weight`` stays in the Winograd domain: the output gradient goes through the adjoint of
      the inverse transform, ``dM = A @ dY @ AT``, the a*a GEMMs ``dU[xi] = V[xi] @ dM[xi]^T`` sum
      over the tiles, and one adjoint filter transform gives ``dW = G^T @ dU @ G``.

    Only for :func:`winograd_usable` shapes; works in any float dtype and with NumPy or CuPy arrays.
    """

    def __init__(self, m):
        self.m = m
        self.name = f"winograd{m}"

    def _tiles(self, x, padding, t):
        """The a x a input tiles (N, C, TH, TW, a, a) of ``x`` padded by ``padding``, every m pixels."""
        xp = backend.get_array_module(x)
        (ph, pw), m, a = padding, self.m, self.m + 2
        n, c, h, w = x.shape
        th, tw = t
        big = xp.zeros((n, c, th * m + 2, tw * m + 2), dtype=x.dtype)   # room for the overhanging tiles
        big[:, :, ph:ph + h, pw:pw + w] = x
        s = big.strides
        return xp.lib.stride_tricks.as_strided(big, (n, c, th, tw, a, a), (s[0], s[1], m * s[2], m * s[3], s[2], s[3]))

    def _conv(self, x, u, padding, o):
        xp = backend.get_array_module(x)
        at, _, bt = (xp.asarray(v) for v in winograd_matrices(self.m, dtype=x.dtype))
        m, a = self.m, self.m + 2
        n, c, h, w = x.shape
        oh, ow = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
        th, tw = winograd_tiles(oh, ow, m)
        d = self._tiles(x, padding, (th, tw))
        v = xp.einsum("ik,nctwkl,jl->ijcntw", bt, d, bt).reshape(a * a, c, n * th * tw)
        mm = xp.matmul(u.transpose(0, 2, 1), v)                              # (a*a, O, tiles)
        mm = mm.reshape(a, a, o, n, th, tw)
        y = xp.einsum("pi,ijontw,qj->notpwq", at, mm, at).reshape(n, o, th * m, tw * m)
        return xp.ascontiguousarray(y[:, :, :oh, :ow])

    def forward(self, x, w, stride, padding):
        u = filter_cache.get(w, ("U", self.m), lambda w_: winograd_filter(w_, self.m))
        return self._conv(x, u, padding, w.shape[0])

    def backward_data(self, gy, w, x_shape, stride, padding):
        u = filter_cache.get(w, ("U_flipped", self.m), lambda w_: winograd_filter(flipped_filters(w_), self.m))
        return self._conv(gy, u, (2 - padding[0], 2 - padding[1]), w.shape[1])

    def backward_weight(self, x, gy, w_shape, stride, padding):
        xp = backend.get_array_module(x)
        at, g, bt = (xp.asarray(v) for v in winograd_matrices(self.m, dtype=x.dtype))
        m, a = self.m, self.m + 2
        n, c, h, w = x.shape
        o, oh, ow = gy.shape[1], gy.shape[2], gy.shape[3]
        th, tw = winograd_tiles(oh, ow, m)
        d = self._tiles(x, padding, (th, tw))
        v = xp.einsum("ik,nctwkl,jl->ijcntw", bt, d, bt).reshape(a * a, c, n * th * tw)
        gyt = xp.zeros((n, o, th * m, tw * m), dtype=gy.dtype)               # the overhang gets no gradient
        gyt[:, :, :oh, :ow] = gy
        gyt = gyt.reshape(n, o, th, m, tw, m)
        dm = xp.einsum("pi,notpwq,qj->ijontw", at, gyt, at).reshape(a * a, o, n * th * tw)
        du = xp.matmul(v, dm.transpose(0, 2, 1)).reshape(a, a, c, o)          # sum over tiles
        return xp.ascontiguousarray(xp.einsum("ik,ijco,jl->ockl", g, du, g))
