"""Numerical gradient checks: the tool that lets you trust every backward in tinysr.

A backward pass is correct when, for a small step ``eps``,

    (L(x + eps*e) - L(x - eps*e)) / (2*eps)  ~=  <dL/dx, e>          (central differences)

for every direction ``e``.  :func:`check_grad` tests this along every coordinate of every input
(exact for small tensors); :func:`check_grad_directional` tests it along a few random directions at
once, which costs two forward passes per direction whatever the tensor size (Chainer's approach,
for big convolutions).  Both run in float64, where the finite-difference error is ~eps^2 and the
rounding error ~1e-16/eps, so agreement to ~1e-6 relative is expected and anything worse is a bug.

``L`` is the inner product of the op's output with a fixed random tensor ``gy``, so that every output
element takes part.
"""
import numpy as np

from .autograd import Tensor


class GradientCheckError(AssertionError):
    pass


def _prepare(fn, inputs, seed):
    rng = np.random.default_rng(seed)
    tensors = [x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
               for x in inputs]
    for t in tensors:
        if t.dtype != np.float64:
            raise GradientCheckError(f"gradient checks run in float64; got an input of dtype {t.dtype}")
    out = fn(*tensors)
    gy = rng.standard_normal(out.shape)
    return tensors, out, gy


def _loss(fn, tensors, gy):
    return float((fn(*tensors).data * gy).sum())


def analytic_grads(fn, inputs, gy):
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    out.backward(gy)
    return [t.grad if t.grad is not None else np.zeros(t.shape) for t in inputs]


def check_grad(fn, *inputs, eps=1e-5, atol=1e-7, rtol=1e-6, seed=0, wrt=None):
    """Compare the backward of ``fn(*inputs)`` with central differences along every coordinate.

    ``inputs`` are float64 arrays or Tensors (``requires_grad`` decides which are checked; ``wrt`` may
    list the indices to check).  Raises :class:`GradientCheckError` naming the input, the worst
    element and both values; returns the largest absolute error.
    """
    tensors, _, gy = _prepare(fn, inputs, seed)
    grads = analytic_grads(fn, tensors, gy)
    worst = 0.0
    for k, t in enumerate(tensors):
        if not t.requires_grad or (wrt is not None and k not in wrt):
            continue
        t.data = np.ascontiguousarray(t.data)
        flat = t.data.reshape(-1)
        num = np.empty(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            lp = _loss(fn, tensors, gy)
            flat[i] = old - eps
            lm = _loss(fn, tensors, gy)
            flat[i] = old
            num[i] = (lp - lm) / (2 * eps)
        ana = np.asarray(grads[k]).reshape(-1)
        err = np.abs(num - ana)
        bound = atol + rtol * np.abs(num)
        if np.any(err > bound):
            i = int(np.argmax(err - bound))
            raise GradientCheckError(
                f"input {k} (shape {t.shape}): element {tuple(int(j) for j in np.unravel_index(i, t.shape))} has analytic gradient "
                f"{ana[i]:.10g} but numerical {num[i]:.10g} (|diff| {err[i]:.3g} > {bound[i]:.3g})")
        worst = max(worst, float(err.max(initial=0.0)))
    return worst


def check_grad_directional(fn, *inputs, directions=4, eps=1e-5, rtol=1e-6, atol=1e-8, seed=0):
    """Compare ``<grad, e>`` with ``(L(x + eps e) - L(x - eps e)) / 2eps`` for random directions ``e``
    that move all inputs at once (Chainer-style; cheap for big tensors). Returns the largest error."""
    tensors, _, gy = _prepare(fn, inputs, seed)
    grads = analytic_grads(fn, tensors, gy)
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    checked = [k for k, t in enumerate(tensors) if t.requires_grad]
    for d in range(directions):
        dirs = {k: rng.standard_normal(tensors[k].shape) for k in checked}
        norm = np.sqrt(sum(float((v ** 2).sum()) for v in dirs.values()))
        dirs = {k: v / norm for k, v in dirs.items()}
        originals = {k: tensors[k].data.copy() for k in checked}
        for k in checked:
            tensors[k].data = originals[k] + eps * dirs[k]
        lp = _loss(fn, tensors, gy)
        for k in checked:
            tensors[k].data = originals[k] - eps * dirs[k]
        lm = _loss(fn, tensors, gy)
        for k in checked:
            tensors[k].data = originals[k]
        num = (lp - lm) / (2 * eps)
        ana = sum(float((np.asarray(grads[k]) * dirs[k]).sum()) for k in checked)
        err = abs(num - ana)
        if err > atol + rtol * max(abs(num), abs(ana)):
            raise GradientCheckError(f"direction {d}: analytic directional derivative {ana:.12g} but numerical "
                                     f"{num:.12g} (|diff| {err:.3g})")
        worst = max(worst, err)
    return worst
