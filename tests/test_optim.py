"""Optimisers, clipping and schedules equal torch.optim's for the same gradients; a small SR-style net
fits a fixed batch (acceptance 3 of the foundation)."""
import math
import numpy as np
import pytest

import tinysr
from tinysr import nn, optim
from tinysr import functional as F

torch = pytest.importorskip("torch", reason="PyTorch is the test-time reference: pip install -e '.[test]'")


def _pair_params(seed=0, shapes=((3, 4), (5,))):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [nn.Parameter(v.copy()) for v in values]
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    return ours, theirs


def _run(ours_opt, theirs_opt, ours, theirs, steps=6, seed=1, sched=None):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for p, q in zip(ours, theirs):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g.copy()
            q.grad = torch.tensor(g.copy())
        ours_opt.step()
        theirs_opt.step()
        if sched:
            sched[0].step()
            sched[1].step()
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
                                dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.02, momentum=0.5, dampening=0.1)])
def test_sgd_equals_torch(kw):
    ours, theirs = _pair_params()
    _run(optim.SGD(ours, **kw), torch.optim.SGD(theirs, **kw), ours, theirs)


@pytest.mark.parametrize("kw", [dict(lr=1e-3), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6), dict(lr=1e-3, weight_decay=1e-2)])
def test_adam_equals_torch(kw):
    ours, theirs = _pair_params()
    _run(optim.Adam(ours, **kw), torch.optim.Adam(theirs, **kw), ours, theirs)


def test_parameter_groups_with_their_own_learning_rate():
    """SRCNN trains its last layer 10x slower than the others."""
    ours, theirs = _pair_params()
    o = optim.SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.01}], lr=0.1, momentum=0.9)
    t = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.01}], lr=0.1, momentum=0.9)
    _run(o, t, ours, theirs)
    assert [g["lr"] for g in o.param_groups] == [0.1, 0.01]


@pytest.mark.parametrize("make", [
    (lambda o: optim.StepLR(o, 3, 0.5), lambda t: torch.optim.lr_scheduler.StepLR(t, 3, 0.5)),
    (lambda o: optim.MultiStepLR(o, [2, 5], 0.1), lambda t: torch.optim.lr_scheduler.MultiStepLR(t, [2, 5], 0.1)),
    (lambda o: optim.CosineAnnealingLR(o, 7, 1e-4), lambda t: torch.optim.lr_scheduler.CosineAnnealingLR(t, 7, 1e-4)),
    # the linear warm-up, written for torch as a LambdaLR
    (lambda o: optim.CosineAnnealingLR(o, 8, warmup=3),
     lambda t: torch.optim.lr_scheduler.LambdaLR(t, lambda e: min(1.0, (e + 1) / 3) * (1 + math.cos(math.pi * e / 8)) / 2)),
])
def test_schedules_equal_torch(make):
    ours, theirs = _pair_params()
    o, t = optim.SGD(ours, lr=0.1, momentum=0.9), torch.optim.SGD(theirs, lr=0.1, momentum=0.9)
    so, st = make[0](o), make[1](t)
    lrs_o, lrs_t = [], []
    for _ in range(9):
        lrs_o.append(so.get_last_lr()[0])
        lrs_t.append(st.get_last_lr()[0])
        o.step(), t.step()  # noqa
        so.step(), st.step()  # noqa
    np.testing.assert_allclose(lrs_o, lrs_t, rtol=1e-12)


def test_clip_grad_norm_equals_torch():
    ours, theirs = _pair_params()
    rng = np.random.default_rng(3)
    for p, q in zip(ours, theirs):
        g = rng.standard_normal(p.shape).astype(np.float32) * 10
        p.grad, q.grad = g.copy(), torch.tensor(g.copy())
    n_ours = optim.clip_grad_norm_(ours, 1.5)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, 1.5)
    assert abs(n_ours - float(n_theirs)) < 1e-4
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_vdsr_adjustable_clipping_bounds_the_step():
    p = nn.Parameter(np.zeros(4, np.float32))
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.array([5.0, -5.0, 0.01, -0.05], np.float32)
    optim.clip_grad_adjustable_(opt, theta=0.01)  # bound theta / lr = 0.1
    np.testing.assert_allclose(p.grad, [0.1, -0.1, 0.01, -0.05], rtol=1e-6)
    opt.step()
    assert np.abs(p.numpy()).max() <= 0.01 + 1e-7


def test_optimizer_state_dict_round_trip():
    ours, _ = _pair_params()
    opt = optim.Adam(ours, lr=1e-2)
    for p in ours:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    sd = opt.state_dict()
    ours2 = [nn.Parameter(p.numpy().copy()) for p in ours]
    opt2 = optim.Adam(ours2, lr=1e-2)
    opt2.load_state_dict(sd)
    for p, q in zip(ours, ours2):
        p.grad = np.full(p.shape, 0.5, np.float32)
        q.grad = np.full(q.shape, 0.5, np.float32)
    opt.step(), opt2.step()  # noqa
    for p, q in zip(ours, ours2):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


class SubPixelNet(nn.Module):
    """conv - PReLU - conv - pixel shuffle: the smallest ESPCN-style upsampler."""

    def __init__(self, r=2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.act = nn.PReLU(16)
        self.conv2 = nn.Conv2d(16, r * r, 3, padding=1)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, x):
        return self.shuffle(self.conv2(self.act(self.conv1(x))))


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_small_net_fits_a_fixed_batch(opt_name):
    rng = np.random.default_rng(0)
    x = tinysr.tensor(rng.uniform(0, 1, (4, 1, 8, 8)))
    nn.init.seed(1)
    with tinysr.no_grad():  # a target the architecture can represent: another net's output
        y = SubPixelNet()(x).detach()
    nn.init.seed(0)
    net = SubPixelNet()
    opt = optim.Adam(net.parameters(), lr=1e-2) if opt_name == "adam" else \
        optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    first = None
    for step in range(400):
        loss = F.mse_loss(net(x), y)
        if first is None:
            first = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first, (first, loss.item())
