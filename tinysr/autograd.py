"""Reverse-mode automatic differentiation: ``Tensor``, ``Function`` and ``backward``.

The whole engine is this file.  A :class:`Tensor` wraps an array of NumPy (CPU) or CuPy (GPU).  Every
differentiable operation is a :class:`Function` subclass whose ``forward`` (arrays in, arrays out) and
``backward`` (output gradients in, input gradients out) stand side by side, as in DeZero and Chainer.
Calling a Function on tensors records it as the ``creator`` of its outputs; the records form a
directed acyclic graph that :meth:`Tensor.backward` walks in reverse topological order.

The contract every Function keeps (and that the engine checks):

* ``forward(*arrays)`` returns an array or a tuple of arrays; it may save what ``backward`` needs on
  ``self`` (``self.save_for_backward`` keeps the inputs).
* ``backward(*grads)`` receives one gradient per output (zeros for outputs nobody used) and returns
  one gradient per input, each either ``None`` (no gradient) or an array of exactly the input's shape.
* A tensor used several times (DRCN's recursive convolution, DRRN's shared residual unit) receives the
  **sum** of the gradients of its uses.

Gradients of intermediate tensors are freed as soon as their creator has used them, and each
Function drops what it saved once its backward has run (unless ``retain_graph=True``), so memory
during backward falls instead of growing.
"""
import contextlib
import threading

import numpy as np

from . import backend

_state = threading.local()


def is_grad_enabled():
    """Whether operations are being recorded for backward (see :func:`no_grad`)."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled):
    prev = is_grad_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = prev


def no_grad():
    """Context manager: run operations without recording them (inference, evaluation, optimiser steps)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: record operations even inside :func:`no_grad`."""
    return _grad_mode(True)


def _as_array(value, like=None):
    """Turn a Python scalar / array into an array of the module (and float dtype) of ``like``."""
    xp = backend.get_array_module(like) if like is not None else np
    if isinstance(value, Tensor):
        return value.data
    if np.isscalar(value):
        dtype = like.dtype if like is not None and like.dtype.kind == "f" else np.float32
        return xp.asarray(value, dtype=dtype)
    return xp.asarray(value)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``data`` is a NumPy or CuPy array (NCHW float32 by convention for images); ``grad`` is filled by
    :meth:`backward` for tensors with ``requires_grad=True`` that are leaves of the graph
    (parameters and inputs), and is an array of the same shape.
    """

    __array_priority__ = 1000  # make ``ndarray * Tensor`` call Tensor.__rmul__

    def __init__(self, data, requires_grad=False, name=None):
        if isinstance(data, Tensor):
            data = data.data
        xp = backend.get_array_module(data)
        if not hasattr(data, "dtype"):
            data = np.asarray(data)
            if data.dtype == np.float64:
                data = data.astype(np.float32)
        elif data.ndim == 0 and not isinstance(data, xp.ndarray):
            data = xp.asarray(data)
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None  # the Function that produced this tensor, if recorded
        self.output_index = 0  # which of the creator's outputs this tensor is
        self.name = name

    # ------------------------------------------------------------------ basic properties
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def xp(self):
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = repr(backend.as_numpy(self.data)).replace("array(", "tensor(")
        extra = []
        if self.device != "cpu":
            extra.append(f"device='{self.device}'")
        if self.requires_grad:
            extra.append("requires_grad=True")
        if self.creator is not None:
            extra.append(f"creator={type(self.creator).__name__}")
        return body if not extra else body[:-1] + ", " + ", ".join(extra) + ")"

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        """The values as a NumPy array (copied from the GPU when needed)."""
        return backend.as_numpy(self.data)

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.reshape(-1)[0].item()

    def detach(self):
        """A tensor sharing the same data, cut off from the graph (no creator, no grad)."""
        return Tensor(self.data, requires_grad=False)

    def to(self, device):
        """A copy of this tensor on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``); self when already there."""
        data = backend.to_device(self.data, device)
        if data is self.data:
            return self
        t = Tensor(data, requires_grad=self.requires_grad, name=self.name)
        if self.grad is not None:
            t.grad = backend.to_device(self.grad, device)
        return t

    def astype(self, dtype):
        return Cast(dtype)(self)

    def zero_grad(self):
        self.grad = None

    # ------------------------------------------------------------------ backward
    def backward(self, grad=None, retain_graph=False):
        """Compute the gradient of this tensor with respect to every leaf that requires it.

        ``grad`` defaults to 1 for a one-element tensor (a loss).  Gradients are *added* to existing
        ``.grad`` of leaves, as in PyTorch, so call ``zero_grad`` between optimiser steps.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: nothing it depends on "
                               "requires a gradient (were the parameters frozen, or was it computed under no_grad?)")
        xp = self.xp
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element tensor (a loss); "
                                   f"this one has shape {self.shape}: pass grad=")
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, self.data)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape} but the tensor has shape {self.shape}")

        if self.creator is None:
            self._accumulate(grad)
            return

        # Gradients flowing into each (function, output index), freed as soon as that function has run.
        grads = {(id(self.creator), self.output_index): grad}
        for f in topological_order(self.creator):  # every function before the ones that fed it
            if getattr(f, "released", False):
                raise RuntimeError(f"backward through {type(f).__name__} a second time: its saved values were "
                                   "freed by the first backward; pass retain_graph=True to the first call")
            gys = []
            for i, (ref_shape, ref_dtype) in enumerate(zip(f.output_shapes, f.output_dtypes)):
                g = grads.pop((id(f), i), None)
                gys.append(xp.zeros(ref_shape, dtype=ref_dtype) if g is None else g)
            gxs = f.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(f.inputs):
                raise RuntimeError(f"{type(f).__name__}.backward returned {len(gxs)} gradients "
                                   f"for {len(f.inputs)} inputs")
            for x, gx in zip(f.inputs, gxs):
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.shape:
                    raise RuntimeError(f"{type(f).__name__}.backward returned a gradient of shape {gx.shape} "
                                       f"for an input of shape {x.shape}")
                if x.creator is None:
                    x._accumulate(gx)
                else:
                    key = (id(x.creator), x.output_index)
                    prev = grads.get(key)
                    grads[key] = gx if prev is None else prev + gx
            if not retain_graph:
                f.release()

    def _accumulate(self, g):
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if self.grad is None:
            # copy: the same array object may also be another tensor's gradient
            self.grad = g.copy()
        else:
            self.grad = self.grad + g

    # ------------------------------------------------------------------ operators
    def __add__(self, other):
        return Add()(self, _wrap(other, self))

    def __radd__(self, other):
        return Add()(_wrap(other, self), self)

    def __sub__(self, other):
        return Sub()(self, _wrap(other, self))

    def __rsub__(self, other):
        return Sub()(_wrap(other, self), self)

    def __mul__(self, other):
        return Mul()(self, _wrap(other, self))

    def __rmul__(self, other):
        return Mul()(_wrap(other, self), self)

    def __truediv__(self, other):
        return Div()(self, _wrap(other, self))

    def __rtruediv__(self, other):
        return Div()(_wrap(other, self), self)

    def __neg__(self):
        return Neg()(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("tinysr supports only a constant exponent: x ** c")
        return Pow(exponent)(self)

    def __matmul__(self, other):
        return MatMul()(self, _wrap(other, self))

    def __getitem__(self, key):
        return GetItem(key)(self)

    # ------------------------------------------------------------------ shape and reductions
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape(shape)(self)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose(axes or None)(self)

    @property
    def T(self):
        return Transpose(None)(self)

    def sum(self, axis=None, keepdims=False):
        return Sum(axis, keepdims)(self)

    def mean(self, axis=None, keepdims=False):
        return Mean(axis, keepdims)(self)

    def flatten(self, start_dim=1):
        return self.reshape(self.shape[:start_dim] + (-1,))


def tensor(data, requires_grad=False, dtype=np.float32, device="cpu"):
    """Make a Tensor from a list or array (float32 on the CPU unless told otherwise)."""
    arr = backend.to_device(np.asarray(backend.as_numpy(data) if hasattr(data, "dtype") else data, dtype=dtype), device)
    return Tensor(arr, requires_grad=requires_grad)


def _wrap(value, like):
    if isinstance(value, Tensor):
        return value
    return Tensor(_as_array(value, like.data))


def topological_order(root):
    """The order in which :meth:`Tensor.backward` visits the graph behind the Function ``root``.

    The Functions reachable from ``root`` through inputs that require a gradient, ``root`` first and
    each before every Function that produced one of its inputs (a *reverse topological order*), so
    that every gradient into a Function's outputs has arrived and been summed when backward reaches
    it.  ``topological_order(y.creator)`` for ``y = Square()(x) * x`` is ``[Mul, Square]``.  It is the
    reverse post-order of a depth-first search with an explicit stack: DRCN's and DRRN's graphs are
    deeper than Python's recursion limit.
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        f, done = stack.pop()
        if done:
            order.append(f)
            continue
        if id(f) in seen:
            continue
        seen.add(id(f))
        stack.append((f, True))
        for x in f.inputs:
            if x.requires_grad and x.creator is not None and id(x.creator) not in seen:
                stack.append((x.creator, False))
    order.reverse()
    return order


class Function:
    """One differentiable operation: subclasses define ``forward`` and ``backward`` side by side.

    Call an instance on tensors (or arrays/scalars): ``y = Square()(x)``.  ``forward`` sees arrays;
    ``backward`` sees gradient arrays.  A new instance is made for every call, so per-call state
    (saved inputs, masks, shapes) simply lives on ``self``.
    """

    def __call__(self, *inputs):
        inputs = tuple(x if isinstance(x, Tensor) else Tensor(_as_array(x)) for x in inputs)
        # Which inputs backward will need a gradient for, known *before* forward: an op can then skip
        # saving what only an unneeded gradient would use (``r * 0.1`` need not keep ``r``).
        grad_on = is_grad_enabled()
        self.needs_input_grad = tuple(grad_on and x.requires_grad for x in inputs)
        outputs = self.forward(*(x.data for x in inputs))
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)
        needs_grad = is_grad_enabled() and any(x.requires_grad for x in inputs)
        results = tuple(Tensor(y, requires_grad=needs_grad) for y in outputs)
        if needs_grad:
            # Keep leaves (they receive .grad) but only a light edge for computed inputs: holding the
            # tensor itself would keep its array alive until backward even when this op needs none of
            # it (a conv output feeding a ReLU), which multiplies peak memory in deep networks.
            self.inputs = tuple(x if x.creator is None else _Edge(x) for x in inputs)
            self.output_shapes = tuple(y.shape for y in results)
            self.output_dtypes = tuple(y.dtype for y in results)
            for i, y in enumerate(results):
                y.creator = self
                y.output_index = i
        else:
            self.release()
        return results[0] if single else results

    def forward(self, *xs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, *gys):
        raise NotImplementedError(f"{type(self).__name__} must define backward")

    def save_for_backward(self, *arrays):
        self.saved = arrays

    #: What a released Function keeps: the graph's bookkeeping, none of the arrays forward kept.
    _KEEP_ON_RELEASE = frozenset({"inputs", "output_shapes", "output_dtypes", "needs_input_grad"})

    def release(self):
        """Drop everything forward kept on ``self`` (called once backward has run), not just ``saved``.

        Backward keeps every Function of the graph alive until it ends; an op that kept its arrays
        (ReLU's output, a convolution's input) would hold them to the end, and a training step would
        reach its peak memory with every activation still alive.
        """
        for name in [k for k in self.__dict__ if k not in self._KEEP_ON_RELEASE]:
            del self.__dict__[name]
        self.inputs = tuple(_Shell(x) for x in getattr(self, "inputs", ()))
        self.released = True


class _Edge:
    """A graph edge to a computed input: which function made it (and which of its outputs), and the
    input's shape -- everything backward needs, without the input's array."""
    __slots__ = ("creator", "output_index", "shape", "requires_grad")

    def __init__(self, x):
        self.creator, self.output_index = x.creator, x.output_index
        self.shape, self.requires_grad = x.shape, x.requires_grad


class _Shell:
    """What a released Function keeps of an input: enough to say it needs no further gradient."""
    __slots__ = ("shape", "requires_grad", "creator")

    def __init__(self, x):
        self.shape = x.shape
        self.requires_grad = False
        self.creator = None


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting expanded, so that it has ``shape`` again."""
    if grad.shape == tuple(shape):
        return grad
    ndim_extra = grad.ndim - len(shape)
    axes = tuple(range(ndim_extra)) + tuple(
        i + ndim_extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + ndim_extra] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


# ---------------------------------------------------------------------- elementwise arithmetic
class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, gy):
        return unbroadcast(gy, self.shapes[0]), unbroadcast(gy, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, gy):
        return unbroadcast(gy, self.shapes[0]), unbroadcast(-gy, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        # d(ab)/da needs b and d(ab)/db needs a: keep only what a needed gradient uses (EDSR's
        # residual scaling ``r * 0.1`` would otherwise keep every block's conv output alive).
        need_a, need_b = getattr(self, "needs_input_grad", (True, True))
        self.shapes = (a.shape, b.shape)
        self.save_for_backward(b if need_a else None, a if need_b else None)
        return a * b

    def backward(self, gy):
        b, a = self.saved
        return (unbroadcast(gy * b, self.shapes[0]) if b is not None else None,
                unbroadcast(gy * a, self.shapes[1]) if a is not None else None)


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved
        ga = gy / b
        return unbroadcast(ga, a.shape), unbroadcast(-ga * a / b, b.shape)


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, gy):
        return -gy


class Pow(Function):
    """``x ** c`` for a constant exponent ``c``."""

    def __init__(self, c):
        self.c = c

    def forward(self, x):
        self.save_for_backward(x)
        return x ** self.c

    def backward(self, gy):
        (x,) = self.saved
        return gy * self.c * x ** (self.c - 1)


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.src = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.src)


class MatMul(Function):
    """Matrix product of two 2-D tensors (used by ``linear``)."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, gy):
        a, b = self.saved
        return gy @ b.T, a.T @ gy


# ---------------------------------------------------------------------- shapes
class GetItem(Function):
    """``x[key]``: basic slicing (``x[..., a:b, c:d]``) and integer/array indexing."""

    def __init__(self, key):
        self.key = key.data if isinstance(key, Tensor) else key

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return x[self.key]

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=self.dtype)
        if _is_basic_index(self.key):
            gx[self.key] = gy  # a slice names each element at most once
        else:
            xp.add.at(gx, self.key, gy)  # an index array may name the same element twice
        return gx


def _is_basic_index(key):
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer)) for k in keys)


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = tuple(axes) if axes is not None else None

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        return gy.transpose() if self.axes is None else gy.transpose(tuple(np.argsort(self.axes)))


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        axes = _normalize_axis(self.axis, len(self.in_shape))
        if not self.keepdims:
            gy = gy.reshape([1 if i in axes else n for i, n in enumerate(self.in_shape)])
        return xp.broadcast_to(gy, self.in_shape).copy()


class Mean(Sum):
    def forward(self, x):
        y = super().forward(x)
        axes = _normalize_axis(self.axis, x.ndim)
        self.count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        return y / y.dtype.type(self.count) if hasattr(y, "dtype") else y / self.count

    def backward(self, gy):
        return super().backward(gy) / gy.dtype.type(self.count)
