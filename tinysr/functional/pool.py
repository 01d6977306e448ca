"""Max pooling (VGG's 2x2, stride 2 -- the feature extractor of SRGAN's perceptual loss).

Only non-overlapping windows are needed (``stride == kernel_size``, no padding, floor mode, as in
torchvision's VGG), and for them the op is a reshape: ``(N, C, H, W)`` -> ``(N, C, Ho, k, Wo, k)`` ->
the max over each ``k x k`` window.  Backward sends each output gradient to the one input that won its
window (the first maximum in row-major order on ties, as PyTorch's CPU kernel does); every other input,
and the rows/columns that floor mode drops, get zero.
"""
from .. import backend
from ..autograd import Function
from .sizes import pair


class MaxPool2d(Function):
    """Max over non-overlapping ``kh x kw`` windows of an ``(N, C, H, W)`` input."""

    def __init__(self, kernel_size=2):
        self.kh, self.kw = pair(kernel_size)

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"max_pool2d expects (N, C, H, W), got shape {x.shape}")
        n, c, h, w = x.shape
        kh, kw = self.kh, self.kw
        ho, wo = h // kh, w // kw
        if ho == 0 or wo == 0:
            raise ValueError(f"max_pool2d: a {h}x{w} input is smaller than the {kh}x{kw} window")
        xp = backend.get_array_module(x)
        win = x[:, :, :ho * kh, :wo * kw].reshape(n, c, ho, kh, wo, kw).transpose(0, 1, 2, 4, 3, 5)
        win = win.reshape(n, c, ho, wo, kh * kw)
        self.idx = xp.argmax(win, axis=-1)          # which of the k*k inputs won each window
        self.x_shape = x.shape
        return xp.take_along_axis(win, self.idx[..., None], axis=-1)[..., 0]

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n, c, h, w = self.x_shape
        kh, kw = self.kh, self.kw
        ho, wo = gy.shape[2], gy.shape[3]
        onehot = xp.arange(kh * kw) == self.idx[..., None]              # (N, C, Ho, Wo, k*k)
        gwin = (onehot * gy[..., None]).astype(gy.dtype)
        g = gwin.reshape(n, c, ho, wo, kh, kw).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho * kh, wo * kw)
        if (ho * kh, wo * kw) == (h, w):
            return xp.ascontiguousarray(g)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        gx[:, :, :ho * kh, :wo * kw] = g
        return gx


def max_pool2d(x, kernel_size=2):
    """Max pooling of ``x`` (N, C, H, W) over non-overlapping ``kernel_size`` windows (stride = kernel)."""
    return MaxPool2d(kernel_size)(x)
