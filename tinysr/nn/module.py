"""``Module`` and ``Parameter``: how a network holds its weights.

A Module is a container of Parameters (learned tensors), buffers (arrays that are state but not
learned, e.g. BatchNorm's running statistics) and sub-Modules, found by attribute assignment::

    class Tiny(Module):
        def __init__(self):
            super().__init__()
            self.conv = Conv2d(1, 8, 3, padding=1)   # registered as a sub-module "conv"
        def forward(self, x):
            return relu(self.conv(x))

``named_parameters()`` yields ``"conv.weight"``-style names, ``state_dict()`` maps those names to
NumPy arrays, and ``model.to("cuda")`` moves everything.  A Parameter assigned to two modules (DRRN's
shared residual unit) is still one object: it is listed once, and its gradient is the sum over uses.
"""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import Tensor


class Parameter(Tensor):
    """A tensor that a Module learns: ``requires_grad`` is on."""

    def __init__(self, data, requires_grad=True, name=None):
        super().__init__(data, requires_grad=requires_grad, name=name)


class Module:
    """Base class of every layer and network (see the module docstring)."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before setting attributes")
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """Keep ``array`` as state (saved in ``state_dict``, moved by ``to``) that is not learned."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    # ------------------------------------------------------------------ calling
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        """(name, module) pairs depth-first in definition order, each shared module once (as PyTorch)."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            for child_name, child in reversed(m._modules.items()):
                stack.append((f"{name}.{child_name}" if name else child_name, child))

    def children(self):
        return iter(self._modules.values())

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs, each shared parameter once (under its first name)."""
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self):
        for mname, m in self.named_modules():
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self, trainable_only=False):
        """Number of scalar parameters (weights and biases), each shared parameter counted once."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes and devices
    def train(self, mode=True):
        """Training mode (BatchNorm uses batch statistics); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        """Evaluation mode (BatchNorm uses running statistics); returns self."""
        return self.train(False)

    def to(self, device):
        """Move every parameter and buffer to ``device`` in place; returns self."""
        backend.check_device(device)
        for m in self.modules():
            for name, p in m._parameters.items():
                if p is not None:
                    p.data = backend.to_device(p.data, device)
                    if p.grad is not None:
                        p.grad = backend.to_device(p.grad, device)
            for name, b in list(m._buffers.items()):
                m.register_buffer(name, backend.to_device(b, device))
        return self

    @property
    def device(self):
        for p in self.parameters():
            return p.device
        return "cpu"

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """An ordered dict ``name -> NumPy array`` of every parameter and buffer (copies, on the CPU)."""
        out = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = backend.as_numpy(p.data).copy()
        for name, b in self.named_buffers():
            out[name] = backend.as_numpy(b).copy()
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters and buffers (cast to their dtype and device).

        With ``strict=True`` every name must match both ways and every shape must agree; the error
        lists what is missing, unexpected or mis-shaped.
        """
        params = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        missing = [k for k in list(params) + list(buffers) if k not in state]
        unexpected = [k for k in state if k not in params and k not in buffers]
        bad = [f"{k}: expected {tuple(params[k].shape if k in params else buffers[k].shape)}, "
               f"got {tuple(np.shape(v))}" for k, v in state.items()
               if (k in params and tuple(params[k].shape) != tuple(np.shape(v)))
               or (k in buffers and tuple(buffers[k].shape) != tuple(np.shape(v)))]
        if bad or (strict and (missing or unexpected)):
            lines = []
            if missing:
                lines.append("missing: " + ", ".join(missing))
            if unexpected:
                lines.append("unexpected: " + ", ".join(unexpected))
            if bad:
                lines.append("wrong shape: " + "; ".join(bad))
            raise ValueError(f"load_state_dict into {type(self).__name__} failed -- " + " | ".join(lines))
        for k, p in params.items():
            if k in state:
                v = backend.as_numpy(state[k]) if not isinstance(state[k], np.ndarray) else state[k]
                p.data = backend.to_device(np.asarray(v, dtype=p.dtype).copy(), p.device)
        for mname, m in self.named_modules():
            for bname, b in list(m._buffers.items()):
                k = f"{mname}.{bname}" if mname else bname
                if k in state:
                    m.register_buffer(bname, backend.to_device(np.asarray(state[k], dtype=b.dtype).copy(),
                                                           backend.device_of(b)))
        return self

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        own = sum(p.size for p in self._parameters.values() if p is not None)
        head = f"{type(self).__name__}({self.extra_repr()})"
        if not self._modules:
            return head + (f"  # {own:,} params" if own else "")
        lines = [f"{type(self).__name__}(" + self.extra_repr()]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        lines.append(f")  # {self.num_parameters():,} params")
        return "\n".join(lines)


class Sequential(Module):
    """Modules applied one after another; ``Sequential(a, b, c)(x) == c(b(a(x)))``."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of sub-modules registered under "0", "1", ... (for blocks built in a loop)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        setattr(self, str(len(self._modules)), m)
        return self

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())
