"""Losses: MSE (SRCNN to DRRN), L1 (EDSR), and binary cross-entropy on logits (SRGAN's adversarial loss).
All reduce to a mean by default, as the papers and PyTorch do."""
from .. import backend
from ..autograd import Function


def _check(pred, target, name):
    if pred.shape != target.shape:
        raise ValueError(f"{name}: prediction {pred.shape} and target {target.shape} must have the same shape")


def _reduce(values, reduction):
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class _Loss(Function):
    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def _scale(self, gy, n):
        if self.reduction == "mean":
            return gy / gy.dtype.type(n)
        return gy


class MSELoss(_Loss):
    """mean((pred - target)^2); the gradient is 2 (pred - target) / n."""

    def forward(self, pred, target):
        _check(pred, target, "mse_loss")
        self.diff = pred - target
        return _reduce(self.diff * self.diff, self.reduction)

    def backward(self, gy):
        g = self._scale(gy, self.diff.size) * 2 * self.diff
        return g, -g


class L1Loss(_Loss):
    """mean(|pred - target|); the gradient is sign(pred - target) / n (0 where they are equal)."""

    def forward(self, pred, target):
        _check(pred, target, "l1_loss")
        xp = backend.get_array_module(pred)
        self.sign = xp.sign(pred - target)
        return _reduce(xp.abs(pred - target), self.reduction)

    def backward(self, gy):
        g = self._scale(gy, self.sign.size) * self.sign
        return g, -g


class BCEWithLogits(_Loss):
    """Binary cross-entropy of ``sigmoid(logits)`` against targets in [0, 1], computed stably:
    ``max(x, 0) - x*t + log(1 + exp(-|x|))``.  Gradient in x: ``sigmoid(x) - t``; in t: ``-x``."""

    def forward(self, x, t):
        _check(x, t, "bce_with_logits")
        xp = backend.get_array_module(x)
        self.save_for_backward(x, t)
        loss = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        return _reduce(loss, self.reduction)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        x, t = self.saved
        e = xp.exp(-xp.abs(x))
        sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        gy = self._scale(gy, x.size)
        return gy * (sig - t), gy * (-x)


def mse_loss(pred, target, reduction="mean"):
    """Mean squared error between two tensors of the same shape (the loss of SRCNN, FSRCNN, VDSR, DRRN)."""
    return MSELoss(reduction)(pred, target)


def l1_loss(pred, target, reduction="mean"):
    """Mean absolute error (EDSR's loss: Lim et al., CVPRW 2017, found L1 trains better than L2)."""
    return L1Loss(reduction)(pred, target)


def bce_with_logits(logits, target, reduction="mean"):
    """Binary cross-entropy on raw scores (SRGAN's discriminator and adversarial losses)."""
    return BCEWithLogits(reduction)(logits, target)
