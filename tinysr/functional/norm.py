"""Batch normalisation (Ioffe & Szegedy, ICML 2015), as used by SRResNet/SRGAN and removed by EDSR."""
from .. import backend
from ..autograd import Function


class BatchNorm(Function):
    """Normalise each channel of (N, C, H, W) (or (N, C)) to zero mean and unit variance, then scale by
    ``gamma`` and shift by ``beta``.

    Training: the batch's own mean and (biased) variance are used, and the running statistics are
    updated in place as ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased*
    variance (PyTorch's convention).  Evaluation: the running statistics are used, so the op is an
    affine map per channel.
    """

    def __init__(self, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, gamma, beta):
        xp = backend.get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        self.axes, self.shape = axes, shape
        if self.training:
            m = x.size // x.shape[1]
            if m < 2:
                raise ValueError(f"batch_norm in training needs more than one value per channel, got input {x.shape}")
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if self.running_mean is not None:
                mom = self.momentum
                self.running_mean *= 1 - mom
                self.running_mean += mom * mean.astype(self.running_mean.dtype)
                self.running_var *= 1 - mom
                self.running_var += mom * (var * (m / (m - 1))).astype(self.running_var.dtype)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        inv_std = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        self.save_for_backward(xhat, inv_std, gamma)
        return gamma.reshape(shape) * xhat + beta.reshape(shape)

    def backward(self, gy):
        xhat, inv_std, gamma = self.saved
        shape, axes = self.shape, self.axes
        gbeta = gy.sum(axis=axes)
        ggamma = (gy * xhat).sum(axis=axes)
        gxhat = gy * gamma.reshape(shape)
        if self.training:
            # The batch statistics depend on x too; this is the standard closed form of that chain.
            gx = (gxhat - gxhat.mean(axis=axes).reshape(shape)
                  - xhat * (gxhat * xhat).mean(axis=axes).reshape(shape)) * inv_std.reshape(shape)
        else:
            gx = gxhat * inv_std.reshape(shape)
        return gx, ggamma, gbeta


def batch_norm(x, running_mean, running_var, weight, bias, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation of ``x`` (N, C, ...) with per-channel ``weight`` (gamma) and ``bias`` (beta).

    ``running_mean`` / ``running_var`` are plain arrays of shape (C,) updated in place in training.
    """
    return BatchNorm(running_mean, running_var, training, momentum, eps)(x, weight, bias)
