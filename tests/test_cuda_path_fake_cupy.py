"""``device="cuda"`` end to end: on a NumPy stand-in for CuPy (``fake_cupy.py``) everywhere, and on real
CuPy where a GPU is present.

The fake is as strict as CuPy about host arrays meeting device arrays, so these tests fail when an op,
the trainer, evaluation or inference forgets to move something -- the plumbing a real GPU run needs --
on a machine without a GPU.  There, convolutions run the NumPy code on "device" arrays (what tinysr
does on a GPU whose Numba cannot compile kernels); the CUDA kernels themselves are tested under
Numba's simulator.  With a GPU, every test also runs with ``cupy`` and our Numba CUDA kernels (the
``[cupy]`` cases), next to the kernel-level ``gpu`` tests in ``test_kernels_cuda_gpu.py``.
"""
import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import tinysr
from tinysr import backend
from tinysr.functional import dispatch

sys.path.insert(0, str(Path(__file__).parent))
import fake_cupy  # noqa: E402


class _Device:
    """The array module a test runs on, and a way to assert that a block copies nothing across."""

    def __init__(self, xp, fake):
        self.xp, self.fake = xp, fake

    @contextlib.contextmanager
    def no_crossings(self):
        if self.fake:
            fake_cupy.crossings.update(h2d=0, d2h=0)
            yield
            assert fake_cupy.crossings == {"h2d": 0, "d2h": 0}
            return
        # Real CuPy: any synchronising device-to-host read inside the block raises, and tinysr's own
        # copies are counted.
        import cupyx
        no_sync = getattr(cupyx, "allow_synchronize", None)
        with backend.count_transfers() as moved, contextlib.ExitStack() as guard:
            if no_sync is not None:
                with warnings.catch_warnings():  # CuPy 14 warns when the guard is entered
                    warnings.filterwarnings("ignore", message=".*allow_synchronize will be removed")
                    guard.enter_context(no_sync(False))
            yield
        assert moved["h2d"] == 0 and moved["d2h"] == 0, moved


@pytest.fixture(params=["fake", "cupy"])
def gpu(request, monkeypatch):
    if request.param == "cupy":
        try:
            cp = backend.cupy_module()
        except backend.DeviceError as e:
            pytest.skip(f"no GPU here ({e}); the same test runs on the NumPy stand-in")
        yield _Device(cp, fake=False)
        return
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setattr(backend, "_cupy", None)
    # No Numba CUDA kernels on a machine without a GPU: convolutions run the NumPy code on device arrays.
    monkeypatch.setitem(dispatch._loaded, "cuda", False)     # tried, and unavailable
    yield _Device(fake_cupy, fake=True)


def test_the_device_is_strict_about_host_arrays(gpu):
    d = backend.to_device(np.ones(3, np.float32), "cuda")
    assert backend.is_cupy_array(d) and backend.device_of(d) == "cuda:0"
    assert backend.is_cupy_array(d * 2 + 1) and backend.is_cupy_array(gpu.xp.zeros(2))
    with pytest.raises(TypeError):
        d + np.ones(3, np.float32)
    with pytest.raises(TypeError):
        gpu.xp.concatenate([d, np.ones(3, np.float32)])


def test_tensor_ops_and_backward_stay_on_the_device(gpu):
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
    with gpu.no_crossings():  # a step moves nothing between host and device
        y = net(xd)
        assert backend.is_cupy_array(y.data)
        y.sum().backward()
    for k, p in net.named_parameters():
        assert backend.is_cupy_array(p.grad), k
        np.testing.assert_allclose(p.grad.get(), g_cpu[k], rtol=1e-4, atol=1e-4, err_msg=k)
    np.testing.assert_allclose(y.data.get(), y_cpu.data, rtol=1e-5, atol=1e-5)
    with gpu.no_crossings():
        opt.step()
    assert all(backend.is_cupy_array(p.data) for p in net.parameters())


def test_train_on_cuda_matches_cpu_and_moves_only_the_batches(gpu, small_data, tmp_path):
    train, test = small_data
    kw = dict(scale=3, data=train, eval_data=test, iterations=4, batch_size=4, seed=5, progress=False,
              log=lambda *a: None, eval_every=2, checkpoint_every=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "kernels unavailable" or other surprise on the device path
        # (Numba's "low occupancy" hint about small launches is not a surprise; tinysr also silences it.)
        warnings.filterwarnings("ignore", message=".*(occupancy|under-utilization).*")
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


def test_upscale_and_evaluate_on_cuda_match_cpu(gpu, small_data):
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


def test_the_leaderboard_trains_the_cpu_plans_steps_on_the_device(gpu, small_data, tmp_path):
    from tinysr import leaderboard
    train, test = small_data
    plan = {"budget_seconds": 1.0, "machine": "m", "date": "d", "data": [str(train)], "recipe": "fast",
            "entries": {"fsrcnn-x3": {"label": "tiny FSRCNN", "name": "fsrcnn", "scale": 3, "iterations": 3,
                                      "seconds_per_step": 0.3, "model_kwargs": {"d": 8, "s": 4, "m": 1}}}}
    kw = dict(plan_data=plan, datasets=(str(test),), progress=False, log=lambda m: None)
    on_gpu = leaderboard.run(tmp_path / "gpu", device="cuda", **kw)["rows"]["fsrcnn-x3"]
    on_cpu = leaderboard.run(tmp_path / "cpu", **kw)["rows"]["fsrcnn-x3"]
    assert on_gpu["device"] == "cuda" and on_cpu["device"] == "cpu" and on_gpu["iterations"] == 3
    assert on_gpu["psnr_ssim"][str(test)] == pytest.approx(on_cpu["psnr_ssim"][str(test)], abs=0.01)
    assert on_gpu["inference_s_per_megapixel"] > 0          # timed on the CPU after training on the device


@pytest.mark.parametrize("name", ["srcnn", "fsrcnn", "vdsr", "drcn", "red30", "drrn", "srdensenet", "srresnet",
                                  "edsr_baseline", "edsr", "mdsr", "srgan_discriminator"])
def test_every_model_family_trains_on_the_device(gpu, name):
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
    # cuBLAS sums in another order than OpenBLAS; BatchNorm (the discriminator) magnifies that in
    # near-zero weights, hence the looser absolute tolerance on a real GPU.
    atol = 1e-5 if gpu.fake else 5e-5
    for k in p_cpu:
        np.testing.assert_allclose(p_gpu[k], p_cpu[k], rtol=1e-4, atol=atol, err_msg=k)


def test_gpu_benchmark_tinysr_side_runs(gpu):
    # benchmarks/gpu.py (and gpu_profile.py, which shares its steps) on device arrays: a refactor that
    # breaks them shows here, not first on a lent GPU.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu as bench
    train_per_s, infer_per_s = bench.bench_tinysr("srcnn", steps=1, warmup=0)
    assert train_per_s > 0 and infer_per_s > 0
