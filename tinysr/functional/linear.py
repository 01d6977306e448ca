"""The fully connected layer (SRGAN's discriminator head)."""
from ..autograd import Tensor


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` for ``x`` (N, in), ``weight`` (out, in) (PyTorch's layout), ``bias`` (out,)."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    y = x @ weight.T
    return y if bias is None else y + bias
