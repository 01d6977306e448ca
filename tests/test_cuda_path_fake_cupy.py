"""``device="cuda"`` end to end, without a GPU: tinysr on a NumPy stand-in for CuPy (``fake_cupy.py``).

The fake is as strict as CuPy about host arrays meeting device arrays, so these tests fail when an op,
the trainer, evaluation or inference forgets to move something -- the plumbing a real GPU run needs.  The
CUDA kernels themselves are tested under Numba's simulator; here convolutions run the NumPy code on
"device" arrays (what tinysr does on a GPU whose Numba cannot compile kernels).  On a real GPU the
``gpu`` tests (``test_kernels_cuda_gpu.py``) run the same calls on CuPy.
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import tinysr
from tinysr import backend
from tinysr.functional import conv as conv_mod

sys.path.insert(0, str(Path(__file__).parent))
import fake_cupy  # noqa: E402


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(backend, "_cupy", None)
    # No Numba CUDA kernels on a machine without a GPU: convolutions run the NumPy code on device arrays.
    monkeypatch.setattr(conv_mod, "_cuda_autoload", [True])
    monkeypatch.setitem(conv_mod._default, "cuda", None)
    fake_cupy.crossings.update(h2d=0, d2h=0)
    yield fake_cupy


def test_the_fake_is_strict_about_host_arrays(fake_gpu):
    d = backend.to_device(np.ones(3, np.float32), "cuda")
    assert backend.is_cupy_array(d) and backend.device_of(d) == "cuda:0"
    assert backend.is_cupy_array(d * 2 + 1) and backend.is_cupy_array(fake_gpu.zeros(2))
    with pytest.raises(TypeError, match="host array"):
        d + np.ones(3, np.float32)
    with pytest.raises(TypeError, match="host array"):
        fake_gpu.concatenate([d, np.ones(3, np.float32)])


def test_tensor_ops_and_backward_stay_on_the_device(fake_gpu):
    rng = np.random.default_rng(0)
    x = tinysr.Tensor(rng.standard_normal((2, 1, 9, 9)).astype(np.float32))
    net = tinysr.models.build("fsrcnn", scale=2, d=8, s=4, m=1)
    y_cpu = net(x)
    y_cpu.sum().backward()
    g_cpu = {k: p.grad.copy() for k, p in net.named_parameters()}
    net.zero_grad()
    net.to("cuda")
    assert all(backend.is_cupy_array(p.data) for p in net.parameters())
    xd = x.to("cuda")
    opt = tinysr.optim.Adam(net.parameters(), lr=1e-3)
    fake_gpu.crossings.update(h2d=0, d2h=0)
    y = net(xd)
    assert backend.is_cupy_array(y.data)
    y.sum().backward()
    assert fake_gpu.crossings == {"h2d": 0, "d2h": 0}  # a step moves nothing between host and device
    for k, p in net.named_parameters():
        assert backend.is_cupy_array(p.grad), k
        np.testing.assert_allclose(p.grad.get(), g_cpu[k], rtol=1e-4, atol=1e-4, err_msg=k)
    np.testing.assert_allclose(y.data.get(), y_cpu.data, rtol=1e-5, atol=1e-5)
    fake_gpu.crossings.update(h2d=0, d2h=0)
    opt.step()
    assert fake_gpu.crossings == {"h2d": 0, "d2h": 0}
    assert all(backend.is_cupy_array(p.data) for p in net.parameters())


def test_train_on_cuda_matches_cpu_and_moves_only_the_batches(fake_gpu, small_data, tmp_path):
    train, test = small_data
    kw = dict(scale=3, data=train, eval_data=test, iterations=4, batch_size=4, seed=5, progress=False,
              log=lambda *a: None, eval_every=2, checkpoint_every=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "kernels unavailable" or other surprise on the device path
        r_gpu = tinysr.train("fsrcnn", device="cuda", out_dir=tmp_path / "gpu",
                             model_kwargs={"d": 8, "s": 4, "m": 1}, **kw)
    r_cpu = tinysr.train("fsrcnn", device="cpu", out_dir=tmp_path / "cpu", model_kwargs={"d": 8, "s": 4, "m": 1},
                         **kw)
    np.testing.assert_allclose(r_gpu.history["loss"], r_cpu.history["loss"], rtol=1e-3)
    for (k, pg), (_, pc) in zip(r_gpu.model.named_parameters(), r_cpu.model.named_parameters()):
        got = pg.data.get() if backend.is_cupy_array(pg.data) else pg.data
        np.testing.assert_allclose(got, pc.data, rtol=1e-3, atol=1e-5, err_msg=k)
    assert abs(r_gpu.metrics["psnr"] - r_cpu.metrics["psnr"]) < 0.01
    # The checkpoint holds host arrays and loads on the CPU.
    cpu_model = tinysr.load(r_gpu.checkpoint)
    assert all(type(p.data) is np.ndarray for p in cpu_model.parameters())


def test_upscale_and_evaluate_on_cuda_match_cpu(fake_gpu, small_data):
    _, test = small_data
    img = tinysr.data.imread(next(Path(test).iterdir()))
    net = tinysr.load("fsrcnn-x3")
    sr_gpu = tinysr.upscale(img, net, scale=3, device="cuda", tile=None)
    sr_cpu = tinysr.upscale(img, net, scale=3, device="cpu", tile=None)
    assert type(sr_gpu) is np.ndarray and np.abs(sr_gpu.astype(int) - sr_cpu.astype(int)).max() <= 1
    tiled = tinysr.upscale(img, net, scale=3, device="cuda", tile=24)
    assert np.abs(tiled.astype(int) - sr_cpu.astype(int)).max() <= 1
    e_gpu = tinysr.evaluate(net, test, scale=3, device="cuda")
    e_cpu = tinysr.evaluate(net, test, scale=3, device="cpu")
    assert abs(e_gpu["psnr"] - e_cpu["psnr"]) < 0.01


@pytest.mark.parametrize("name", ["srcnn", "fsrcnn", "vdsr", "drcn", "red30", "drrn", "srdensenet", "srresnet",
                                  "edsr_baseline", "edsr", "mdsr", "srgan_discriminator"])
def test_every_model_family_trains_on_the_device(fake_gpu, name):
    # One forward/backward/update of each network on device arrays, against the same step on the CPU.
    from test_models import GRAD_TINY
    kw, scale, shape = GRAD_TINY.get(name, ({"input_size": 16, "base": 4, "dense": 8}, 4, (2, 3, 16, 16)))
    rng = np.random.default_rng(1)
    x = rng.random(shape).astype(np.float32)
    nets, start = [], tinysr.models.build(name, scale=scale, **kw).state_dict()
    for device in ("cpu", "cuda"):
        net = tinysr.models.build(name, scale=scale, **kw)
        net.load_state_dict(start)
        net.to(device)
        opt = tinysr.optim.SGD(net.parameters(), lr=0.1)  # Adam would magnify rounding in near-zero gradients
        out = net(tinysr.Tensor(x).to(device))
        loss = (out * out).mean()
        loss.backward()
        opt.step()
        assert backend.is_cupy_array(out.data) == (device == "cuda")
        nets.append((float(loss.data), {k: backend.as_numpy(p.data) for k, p in net.named_parameters()}))
    (loss_cpu, p_cpu), (loss_gpu, p_gpu) = nets
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-4)
    for k in p_cpu:
        np.testing.assert_allclose(p_gpu[k], p_cpu[k], rtol=1e-4, atol=1e-5, err_msg=k)
