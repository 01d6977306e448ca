"""The foundation's PyTorch-parity and gradient-check suites, re-run with each CPU implementation
forced: ``numba`` (the kernels, float32 fast path; float64 falls back to NumPy by design) and
``numpy`` (the teaching version, so lessons can show both).  Same tolerances as the originals."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("numba")

from tinysr.functional import conv as C  # noqa: E402

from test_gradcheck_ops import (test_conv2d_gradient, test_conv_transpose2d_gradient,  # noqa: E402,F401
                                test_pixel_shuffle_gradient, test_pointwise_gradients, test_prelu_gradient)
from test_torch_parity import (test_conv2d, test_conv_transpose2d, test_pixel_shuffle_channel_order,  # noqa: E402,F401
                               test_pointwise, test_prelu)


@pytest.fixture(autouse=True, params=["numba", "numpy"])
def forced_impl(request):
    C.set_conv_impl(request.param)
    x = __import__("numpy").zeros((1, 1, 1, 1), "float32")
    assert C.conv_impl(x).name == request.param
    yield request.param
    C.set_conv_impl(None)
