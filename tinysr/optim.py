"""Optimisers, gradient clipping and learning-rate schedules used by the SR papers.

* :class:`SGD` with momentum and weight decay -- SRCNN (plain SGD, last layer 10x slower), VDSR
  (momentum 0.9, weight decay 1e-4, with adjustable gradient clipping), DRRN.
* :class:`Adam` -- FSRCNN re-implementations, SRResNet/SRGAN, EDSR.
* :func:`clip_grad_norm_`, :func:`clip_grad_value_` and :func:`clip_grad_adjustable_` (VDSR's
  clipping to [-theta/lr, theta/lr], which lets a large learning rate train a 20-layer net).
* Schedules :class:`StepLR`, :class:`MultiStepLR`, :class:`CosineAnnealingLR`.

Every update equals ``torch.optim``'s for the same gradients (tested), so recipes transfer.
Parameter groups (``[{"params": [...], "lr": 1e-4}, ...]``) carry their own hyper-parameters.
"""
import bisect
import math

import numpy as np

from . import backend


class Optimizer:
    """Holds parameter groups and per-parameter state; subclasses define :meth:`_update`."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError("the optimiser was given no parameters")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        seen = set()
        for g in params:
            group = dict(defaults)
            group.update(g)
            group["params"] = list(group["params"])
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError("a parameter appears in more than one group")
                seen.add(id(p))
            group.setdefault("initial_lr", group["lr"])
            self.param_groups.append(group)
        self.state = {}  # id(param) -> dict of arrays

    def zero_grad(self):
        """Forget the gradients of every parameter (before the next backward)."""
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                self._update(p, p.grad, g, self.state.setdefault(id(p), {}))

    def _update(self, p, grad, group, state):
        raise NotImplementedError

    # Checkpointing: parameters are referred to by their position across groups.
    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self):
        """Hyper-parameters of each group and the state arrays of each parameter (NumPy copies)."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        state = {}
        for i, p in enumerate(self._params()):
            s = self.state.get(id(p))
            if s:
                state[i] = {k: (backend.as_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, sd):
        if len(sd["param_groups"]) != len(self.param_groups):
            raise ValueError("optimiser state has a different number of parameter groups")
        for g, saved in zip(self.param_groups, sd["param_groups"]):
            g.update({k: v for k, v in saved.items() if k != "params"})
        params = self._params()
        self.state = {}
        for i, s in sd["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {k: (backend.to_device(np.asarray(v, dtype=p.dtype), p.device)
                                     if isinstance(v, np.ndarray) else v) for k, v in s.items()}


class SGD(Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum and L2 weight decay, as ``torch.optim.SGD``:

    ``d = g + wd * p``;  ``buf = momentum * buf + (1 - dampening) * d`` (``buf = d`` at the first step);
    ``p -= lr * (d + momentum * buf if nesterov else buf)``.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      dampening=dampening, nesterov=nesterov))

    def _update(self, p, grad, group, state):
        d = grad
        if group["weight_decay"]:
            d = d + group["weight_decay"] * p.data
        mom = group["momentum"]
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.copy()
            else:
                buf *= mom
                buf += (1 - group["dampening"]) * d
            state["momentum_buffer"] = buf
            d = d + mom * buf if group["nesterov"] else buf
        p.data -= p.dtype.type(group["lr"]) * d


class Adam(Optimizer):
    """Adam (Kingma & Ba, ICLR 2015) with bias correction, as ``torch.optim.Adam`` (L2 weight decay
    added to the gradient, not decoupled)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p, grad, group, state):
        xp = backend.get_array_module(p.data)
        b1, b2 = group["betas"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        step_size = group["lr"] / (1 - b1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1 - b2 ** t) + group["eps"]
        p.data -= (step_size * m / denom).astype(p.dtype)


# ---------------------------------------------------------------------- gradient clipping
def _grads(params):
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(params, max_norm):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping (useful for logging exploding gradients).
    """
    params = list(params)
    grads = _grads(params)
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * p.grad.dtype.type(coef)
    return total


def clip_grad_value_(params, clip_value):
    """Clip every gradient element to [-clip_value, clip_value]."""
    for p in params:
        if p.grad is not None:
            xp = backend.get_array_module(p.grad)
            p.grad = xp.clip(p.grad, -clip_value, clip_value)


def clip_grad_adjustable_(optimizer, theta):
    """VDSR's adjustable gradient clipping (Kim et al., CVPR 2016, Sec. 3.3): clip each gradient to
    [-theta/lr, theta/lr] with the *current* learning rate of its group, so that the effective step
    ``lr * g`` never exceeds theta however large lr is (VDSR starts at lr = 0.1 with theta = 0.01)."""
    for g in optimizer.param_groups:
        clip_grad_value_(g["params"], theta / g["lr"])


# ---------------------------------------------------------------------- schedules
class _Schedule:
    """Sets each group's ``lr`` from its ``initial_lr`` and the step count; call :meth:`step` once per
    epoch or iteration, as the recipe says."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.last_epoch = 0
        self._apply()

    def lr_at(self, base, epoch):
        raise NotImplementedError

    def _apply(self):
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(g["initial_lr"], self.last_epoch)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, sd):
        self.last_epoch = int(sd["last_epoch"])
        self._apply()


class StepLR(_Schedule):
    """lr = initial * gamma ** (epoch // step_size) (VDSR: x0.1 every 20 epochs)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, base, epoch):
        return base * self.gamma ** (epoch // self.step_size)


class MultiStepLR(_Schedule):
    """lr = initial * gamma ** (number of milestones passed) (SRResNet, EDSR: halve at fixed steps)."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer)

    def lr_at(self, base, epoch):
        return base * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (initial - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (Loshchilov & Hutter, 2017).

    ``warmup`` > 0 multiplies the rate by ``min(1, (epoch + 1) / warmup)`` -- a linear ramp over the
    first ``warmup`` steps (Goyal et al., 2017).  Adam's first steps move every weight by about the
    full learning rate whatever its gradient's size; on SRCNN's all-positive inputs that pushes whole
    9x9 filters negative at once and about half of them never fire again (dead ReLUs).  The ramp lets
    the moment estimates settle first.  ``warmup=0`` is exactly ``torch.optim.lr_scheduler.CosineAnnealingLR``.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, warmup=0):
        self.T_max, self.eta_min, self.warmup = T_max, eta_min, int(warmup)
        super().__init__(optimizer)

    def lr_at(self, base, epoch):
        lr = self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        if self.warmup > 0:
            lr *= min(1.0, (epoch + 1) / self.warmup)
        return lr
