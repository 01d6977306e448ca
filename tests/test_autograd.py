"""The engine's semantics: topological backward, accumulation, broadcasting, slicing, freeing,
no_grad, detach/numpy/item/to, and a weight used 16 times (DRCN-style recursion) against PyTorch."""
import gc
import weakref

import numpy as np
import pytest

import tinysr
from tinysr import Tensor, no_grad
from tinysr import functional as F


def t(a, grad=True, dtype=np.float64):
    return Tensor(np.asarray(a, dtype=dtype), requires_grad=grad)


def test_diamond_graph_accumulates_both_paths():
    x = t([2.0, 3.0])
    a = x * x          # used twice below: its gradient is the sum over both uses
    y = (a + a * 3.0).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * 2 * np.array([2.0, 3.0]))


def test_leaf_gradients_accumulate_across_backward_calls():
    x = t([1.0, -2.0])
    (x * 3.0).sum().backward()
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0])
    x.zero_grad()
    assert x.grad is None


def test_broadcast_gradient_reduction():
    x = t(np.ones((2, 3, 4)))
    b = t(np.arange(4.0).reshape(1, 1, 4))
    c = t(np.ones((3, 1)))
    (x * b + c).sum().backward()
    assert b.grad.shape == (1, 1, 4) and c.grad.shape == (3, 1)
    np.testing.assert_allclose(b.grad, np.full((1, 1, 4), 6.0))
    np.testing.assert_allclose(c.grad, np.full((3, 1), 8.0))


def test_scalar_operands_keep_float32():
    x = Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    y = (2.0 * x - 1 + x / 4.0) ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_slicing_like_a_crop():
    x = t(np.arange(2 * 3 * 6 * 6.0).reshape(2, 3, 6, 6))
    x[..., 1:4, 2:5].sum().backward()
    expected = np.zeros((2, 3, 6, 6))
    expected[..., 1:4, 2:5] = 1
    np.testing.assert_array_equal(x.grad, expected)


def test_repeated_index_accumulates():
    x = t([1.0, 2.0, 3.0])
    x[[0, 0, 2]].sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0])


def test_reshape_transpose_sum_mean():
    x = t(np.random.default_rng(0).standard_normal((2, 3, 4)))
    y = x.transpose(2, 0, 1).reshape(4, 6).mean(axis=1).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3, 4), 1 / 6))
    assert abs(y.item() - x.data.mean(axis=(0, 1)).sum()) < 1e-12


def test_no_grad_records_nothing():
    x = t([1.0, 2.0])
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y.creator is None
    assert tinysr.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_detach_numpy_item_to():
    x = t([[1.5]])
    d = (x * 2).detach()
    assert d.creator is None and not d.requires_grad
    assert isinstance(d.numpy(), np.ndarray) and d.item() == 3.0
    assert x.to("cpu") is x and x.device == "cpu"
    with pytest.raises(ValueError, match="one element"):
        t([1.0, 2.0]).item()


def test_backward_needs_grad_for_non_scalar_and_checks_shape():
    x = t([1.0, 2.0])
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))


def test_graph_is_freed_after_backward():
    x = t(np.ones((4, 4)))
    y = F.relu(x * 2.0)
    mul = y.creator.inputs[0].creator
    ref = weakref.ref(mul)
    y.sum().backward()
    assert not hasattr(mul, "saved") or mul.saved is None
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.sum().backward()
    del mul, y
    gc.collect()
    assert ref() is None


def test_retain_graph_allows_second_backward():
    x = t([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * 2 * np.array([1.0, 2.0]))


def test_deep_chain_does_not_recurse():
    x = t([1.0])
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_contract_violations_are_reported():
    from tinysr.autograd import Function

    class BadShape(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy.sum()

    with pytest.raises(RuntimeError, match="BadShape.backward returned a gradient of shape"):
        BadShape()(t([1.0, 2.0])).sum().backward()


def test_weight_used_16_times_matches_pytorch():
    """Acceptance 5: a recursive block (one 3x3 conv applied 16 times, DRCN-style) accumulates its
    gradient as the sum over all uses, exactly as PyTorch does."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 4, 7, 7))
    w0 = rng.standard_normal((4, 4, 3, 3)) * 0.2
    b0 = rng.standard_normal(4) * 0.1

    w, b = t(w0), t(b0)
    h = Tensor(x0)
    outs = []
    for _ in range(16):
        h = F.relu(F.conv2d(h, w, b, padding=1))
        outs.append(h)
    loss = sum((o * o).mean() for o in outs)
    loss.backward()

    wt = torch.tensor(w0, requires_grad=True)
    bt = torch.tensor(b0, requires_grad=True)
    ht = torch.tensor(x0)
    lt = 0
    for _ in range(16):
        ht = torch.relu(torch.nn.functional.conv2d(ht, wt, bt, padding=1))
        lt = lt + (ht * ht).mean()
    lt.backward()
    assert abs(loss.item() - lt.item()) < 1e-10
    np.testing.assert_allclose(w.grad, wt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.grad, bt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_graph_does_not_keep_intermediate_tensors_alive():
    """A node keeps only what its backward needs: the conv output feeding a ReLU is freed as soon as
    the caller drops it (the graph holds an edge, not the tensor), yet backward still works."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((1, 2, 6, 6)).astype(np.float32))
    w = Tensor(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), requires_grad=True)
    h = F.conv2d(x, w, padding=1)
    out = F.relu(h).sum()
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is None
    out.backward()
    assert w.grad is not None and w.grad.shape == (3, 2, 3, 3)


def test_mul_by_a_constant_keeps_only_what_the_needed_gradient_uses():
    from tinysr import functional as F
    x = tinysr.tensor(np.random.default_rng(0).random((2, 3)), requires_grad=True)
    r = x * 2.0                      # r is computed: Mul(r, 0.1) must not keep r (only 0.1 is needed)
    y = r * 0.1
    b_saved, a_saved = y.creator.saved
    assert a_saved is None and b_saved is not None
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 0.2))
    # both operands need gradients: both are kept, both gradients right
    a = tinysr.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = tinysr.tensor(np.array([3.0, 5.0]), requires_grad=True)
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad, [3.0, 5.0]) and np.testing.assert_allclose(b.grad, [1.0, 2.0])


def test_conv_with_a_frozen_weight_gives_the_same_input_gradient_and_no_weight_gradient():
    from tinysr import functional as F
    rng = np.random.default_rng(1)
    xa = rng.random((2, 3, 9, 9)).astype(np.float32)
    wa, ba = rng.random((4, 3, 3, 3)).astype(np.float32), rng.random(4).astype(np.float32)
    grads = []
    for frozen in (False, True):
        x = tinysr.tensor(xa, requires_grad=True)
        w = tinysr.tensor(wa, requires_grad=not frozen)
        b = tinysr.tensor(ba, requires_grad=True)
        F.conv2d(x, w, b, padding=1).sum().backward()
        grads.append((x.grad, w.grad, b.grad))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-5)
    np.testing.assert_allclose(grads[1][2], grads[0][2], rtol=1e-5)
    assert grads[1][1] is None and grads[0][1] is not None


def test_topological_order_puts_each_function_before_the_ones_that_fed_it():
    from tinysr.autograd import topological_order
    x = tinysr.tensor([2.0], requires_grad=True)
    a = x * x
    b = a + x
    y = a * b                                      # a feeds both b and y: a's creator must come after both
    order = topological_order(y.creator)
    assert [type(f).__name__ for f in order] == ["Mul", "Add", "Mul"]
    index = {id(f): k for k, f in enumerate(order)}
    for f in order:
        for i in f.inputs:
            if i.creator is not None:
                assert index[id(i.creator)] > index[id(f)]
    assert order[0] is y.creator and order[-1] is a.creator
