"""On a real GPU: kernels, gradient checks, PyTorch parity, no silent transfers, a short training run.

Every test here is marked ``gpu`` and the whole module skips (saying why) when CuPy or a GPU is
missing.  The NumPy twins are the reference for the kernels; PyTorch on CUDA (when this machine's
torch has CUDA) is the reference for whole ops, compared in float64 so that no TF32 or
reduction-order effect blurs the comparison.
"""
import inspect

import numpy as np
import pytest

import tinysr
import tinysr.functional as F
from tinysr import Tensor, backend, nn, optim

pytestmark = pytest.mark.gpu

try:
    cp = backend.cupy_module()
except backend.DeviceError as _e:
    pytest.skip(f"no GPU here: {_e}", allow_module_level=True)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build has no CUDA (the CPU-vs-GPU parity tests still run)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------- kernels
def test_selftest_with_cupy_arrays():
    from tinysr_kernels.cuda import selftest
    assert selftest.main(["--cupy"]) == 0


def test_selftest_with_numba_device_arrays():
    from tinysr_kernels.cuda import selftest
    assert selftest.main([]) == 0


def test_cuda_conv_impl_is_registered_on_first_use():
    from tinysr.functional import conv as conv_mod
    x = cp.zeros((1, 1, 5, 5), cp.float32)
    impl = conv_mod.conv_impl(x)
    from tinysr_kernels.cuda import kernels_usable
    if kernels_usable()[0]:
        assert impl.name == "cuda-numba"
    else:
        pytest.skip(f"Numba cannot compile CUDA kernels here ({kernels_usable()[1]}); CuPy fallback in use")


def test_kernels_launch_on_cupy_current_stream():
    from tinysr_kernels.cuda import im2col
    from tinysr.functional.conv import im2col as twin
    x = _rng(1).standard_normal((2, 3, 17, 19)).astype(np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        xd = cp.asarray(x) * 2  # produced on s: the kernel must run after it, on s
        cols = im2col(xd, 3, 3, 2, 1)
        out = cp.asnumpy(cols, stream=s)
    s.synchronize()
    np.testing.assert_array_equal(out, twin(2 * x, 3, 3, (2, 2), (1, 1)))


# ---------------------------------------------------------------------------------------------- parity
CONV_CASES = [((2, 3, 11, 9), 4, 3, 1, 1), ((3, 2, 10, 13), 5, 5, 2, 4), ((2, 4, 9, 9), 3, 3, 3, 0),
              ((1, 8, 7, 7), 6, 1, 1, 0)]


@pytest.mark.parametrize("shape,o,k,s,p", CONV_CASES)
def test_conv2d_gpu_equals_cpu(shape, o, k, s, p):
    rng = _rng(2)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((o, shape[1], k, k))
    b = rng.standard_normal(o)

    def run(device):
        ts = [Tensor(a, requires_grad=True).to(device) for a in (x, w, b)]
        y = F.conv2d(*ts, stride=s, padding=p)
        y.backward(backend.to_device(np.cos(np.arange(y.size)).reshape(y.shape), device))
        return [backend.as_numpy(y.data)] + [backend.as_numpy(t.grad) for t in ts]

    for got, want in zip(run("cuda"), run("cpu")):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape,o,k,s,p", CONV_CASES)
def test_conv2d_matches_pytorch_cuda(shape, o, k, s, p):
    torch = _torch_cuda()
    rng = _rng(3)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((o, shape[1], k, k)), rng.standard_normal(o)
    ts = [Tensor(a, requires_grad=True).to("cuda") for a in (x, w, b)]
    y = F.conv2d(*ts, stride=s, padding=p)
    gy = rng.standard_normal(y.shape)
    y.backward(cp.asarray(gy))
    tt = [torch.tensor(a, device="cuda", requires_grad=True) for a in (x, w, b)]
    yt = torch.nn.functional.conv2d(*tt, stride=s, padding=p)
    yt.backward(torch.tensor(gy, device="cuda"))
    np.testing.assert_allclose(y.numpy(), yt.detach().cpu().numpy(), rtol=1e-10, atol=1e-10)
    for t, r in zip(ts, tt):
        np.testing.assert_allclose(backend.as_numpy(t.grad), r.grad.cpu().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("s,p,op", [(2, 0, 1), (3, 1, 2), (4, 4, 0)])
def test_conv_transpose2d_matches_pytorch_cuda(s, p, op):
    torch = _torch_cuda()
    rng = _rng(4)
    x, w, b = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((3, 2, 9, 9)), rng.standard_normal(2)
    ts = [Tensor(a, requires_grad=True).to("cuda") for a in (x, w, b)]
    y = F.conv_transpose2d(*ts, stride=s, padding=p, output_padding=op)
    gy = rng.standard_normal(y.shape)
    y.backward(cp.asarray(gy))
    tt = [torch.tensor(a, device="cuda", requires_grad=True) for a in (x, w, b)]
    yt = torch.nn.functional.conv_transpose2d(*tt, stride=s, padding=p, output_padding=op)
    yt.backward(torch.tensor(gy, device="cuda"))
    np.testing.assert_allclose(y.numpy(), yt.detach().cpu().numpy(), rtol=1e-10, atol=1e-10)
    for t, r in zip(ts, tt):
        np.testing.assert_allclose(backend.as_numpy(t.grad), r.grad.cpu().numpy(), rtol=1e-10, atol=1e-10)


def test_ops_match_pytorch_cuda():
    torch = _torch_cuda()
    rng = _rng(5)
    x = rng.standard_normal((2, 8, 5, 7))
    a = rng.uniform(0.1, 0.3, 8)
    gamma, beta = rng.standard_normal(8), rng.standard_normal(8)
    cases = {
        "relu": (lambda t: F.relu(t[0]), lambda t: torch.relu(t[0]), [x]),
        "leaky_relu": (lambda t: F.leaky_relu(t[0], 0.2), lambda t: torch.nn.functional.leaky_relu(t[0], 0.2), [x]),
        "prelu": (lambda t: F.prelu(*t), lambda t: torch.nn.functional.prelu(*t), [x, a]),
        "pixel_shuffle": (lambda t: F.pixel_shuffle(t[0], 2), lambda t: torch.nn.functional.pixel_shuffle(t[0], 2), [x]),
        "batch_norm": (lambda t: F.batch_norm(t[0], None, None, t[1], t[2], training=True),
                       lambda t: torch.nn.functional.batch_norm(t[0], None, None, t[1], t[2], training=True),
                       [x, gamma, beta]),
    }
    for name, (ours, theirs, arrays) in cases.items():
        ts = [Tensor(v, requires_grad=True).to("cuda") for v in arrays]
        y = ours(ts)
        gy = rng.standard_normal(y.shape)
        y.backward(cp.asarray(gy))
        tt = [torch.tensor(v, device="cuda", requires_grad=True) for v in arrays]
        yt = theirs(tt)
        yt.backward(torch.tensor(gy, device="cuda"))
        np.testing.assert_allclose(y.numpy(), yt.detach().cpu().numpy(), rtol=1e-9, atol=1e-9, err_msg=name)
        for t, r in zip(ts, tt):
            np.testing.assert_allclose(backend.as_numpy(t.grad), r.grad.cpu().numpy(), rtol=1e-9, atol=1e-9,
                                       err_msg=name)


# ---------------------------------------------------------------------------------------------- gradient checks
def _gpu_gradcheck(fn, *arrays, n_dirs=3, eps=1e-6, seed=0):
    """Central differences along random directions, everything in float64 on the GPU."""
    rng = _rng(seed)
    ts = [Tensor(cp.asarray(a, dtype=cp.float64), requires_grad=True) for a in arrays]
    out = fn(*ts)
    gy = cp.asarray(rng.standard_normal(out.shape))
    out.backward(gy)
    grads = [t.grad for t in ts]
    for _ in range(n_dirs):
        dirs = [cp.asarray(rng.standard_normal(a.shape)) for a in arrays]
        plus = [Tensor(t.data + eps * d) for t, d in zip(ts, dirs)]
        minus = [Tensor(t.data - eps * d) for t, d in zip(ts, dirs)]
        with tinysr.no_grad():
            num = float(((fn(*plus).data - fn(*minus).data) * gy).sum()) / (2 * eps)
        ana = float(sum((g * d).sum() for g, d in zip(grads, dirs)))
        assert abs(num - ana) <= 1e-6 * max(1.0, abs(ana)), (num, ana)


@pytest.mark.parametrize("name", ["conv2d", "conv2d_s3_p4", "conv_transpose2d", "pixel_shuffle", "prelu",
                                  "leaky_relu", "batch_norm", "mse_loss"])
def test_gradients_on_gpu(name):
    rng = _rng(6)
    x = rng.standard_normal((2, 4, 7, 6))
    cases = {
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [x, rng.standard_normal((3, 4, 3, 3)),
                                                                            rng.standard_normal(3)]),
        "conv2d_s3_p4": (lambda x, w: F.conv2d(x, w, stride=3, padding=4), [x, rng.standard_normal((2, 4, 5, 5))]),
        "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=3, padding=1, output_padding=2),
                             [x, rng.standard_normal((4, 2, 4, 4)), rng.standard_normal(2)]),
        "pixel_shuffle": (lambda x: F.pixel_shuffle(x, 2), [x]),
        "prelu": (F.prelu, [x, rng.uniform(0.1, 0.3, 4)]),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), [x]),
        "batch_norm": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                       [x, rng.standard_normal(4), rng.standard_normal(4)]),
        "mse_loss": (lambda x, y: F.mse_loss(x, y), [x, rng.standard_normal(x.shape)]),
    }
    fn, arrays = cases[name]
    _gpu_gradcheck(fn, *arrays)


# ---------------------------------------------------------------------------------------------- training
class _SRCNN(nn.Module):
    """SRCNN 9-1-5 (Dong et al. 2014) at a small width, with padding so shapes stay simple."""

    def __init__(self, c=1, n1=16, n2=8):
        super().__init__()
        self.conv1 = nn.Conv2d(c, n1, 9, padding=4)
        self.conv2 = nn.Conv2d(n1, n2, 1)
        self.conv3 = nn.Conv2d(n2, c, 5, padding=2)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


def _synthetic_batch(rng, n=8, size=24):
    """HR: smooth random images; LR: the same, box-blurred (a stand-in for bicubic degradation)."""
    hr = rng.random((n, 1, size, size)).astype(np.float32)
    for _ in range(2):
        hr = (hr + np.roll(hr, 1, 2) + np.roll(hr, 1, 3) + np.roll(hr, (1, 1), (2, 3))) / 4
    lr = (hr + np.roll(hr, 1, 2) + np.roll(hr, -1, 2) + np.roll(hr, 1, 3) + np.roll(hr, -1, 3)) / 5
    return lr.astype(np.float32), hr.astype(np.float32)


def test_short_srcnn_training_loop_on_gpu():
    rng = _rng(7)
    model = _SRCNN().to("cuda")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    lr, hr = _synthetic_batch(rng)
    losses = []
    for step in range(60):
        x, y = backend.move_batch((Tensor(lr), Tensor(hr)), "cuda")
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert all(p.device.startswith("cuda") for p in model.parameters())


def test_a_training_step_makes_no_silent_transfers(monkeypatch):
    """A step moves the batch in (two copies) and nothing else: no hidden copies inside the ops."""
    rng = _rng(8)
    model = _SRCNN().to("cuda")
    opt = optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    lr, hr = _synthetic_batch(rng)
    # Warm up (kernel compilation, optimiser state) outside the counted step.
    x, y = backend.move_batch((lr, hr), "cuda")
    F.mse_loss(model(Tensor(x)), Tensor(y)).backward()
    opt.step()
    opt.zero_grad()
    backend.synchronize()

    host_to_gpu = []
    real_asarray, real_array = cp.asarray, cp.array

    def watch(real):
        def wrapper(a, *args, **kwargs):
            if isinstance(a, np.ndarray):
                host_to_gpu.append(a.shape)
            return real(a, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(cp, "asarray", watch(real_asarray))
    monkeypatch.setattr(cp, "array", watch(real_array))
    with backend.count_transfers() as moved:
        x, y = backend.move_batch((lr, hr), "cuda")
        no_sync = getattr(__import__("cupyx"), "allow_synchronize", None)
        guard = no_sync(False) if no_sync is not None else _null()
        with guard:  # any device-to-host read (float(x), x.get(), x.item()) inside the step raises here
            loss = F.mse_loss(model(Tensor(x)), Tensor(y))
            loss.backward()
            opt.step()
            opt.zero_grad()
        backend.synchronize()
    assert moved["h2d"] == 2 and moved["d2h"] == 0 and moved["d2d"] == 0, moved
    assert host_to_gpu == [lr.shape, hr.shape], host_to_gpu


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_module_and_tensor_to_cuda_and_back():
    model = _SRCNN()
    state = model.state_dict()
    model.to("cuda")
    assert model.device == "cuda:0" or model.device.startswith("cuda")
    assert backend.is_cupy_array(model.conv1.weight.data)
    t = Tensor(np.ones((1, 1, 12, 12), np.float32)).to("cuda")
    assert t.device.startswith("cuda") and t.to("cuda") is t
    out = model(t)
    assert backend.is_cupy_array(out.data)
    model.to("cpu")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


def test_tinysr_train_srcnn_on_cuda():
    train = getattr(tinysr, "train", None)
    if train is None:
        try:
            from tinysr.api import train  # noqa: F811
        except ImportError:
            pytest.skip("tinysr.train does not exist yet")
    params = inspect.signature(train).parameters
    options = {"steps": 20, "max_steps": 20, "iterations": 20, "quick": True, "progress": False, "verbose": False}
    kwargs = {k: v for k, v in options.items() if k in params}
    result = train("srcnn", device="cuda", **kwargs)
    assert result is not None
