"""Devices without a GPU: the error for device="cuda" names what to install; transfers are counted.

CuPy's import is made to fail on purpose (``sys.modules["cupy"] = None``), so these tests mean the
same thing on a machine where CuPy is installed.
"""
import sys
import types

import numpy as np
import pytest

import tinysr
from tinysr import backend, nn


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError


@pytest.fixture
def cupy_without_gpu(monkeypatch):
    """A stand-in CuPy module that imports fine but whose CUDA runtime finds no device."""
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setitem(sys.modules, "cupy", fake)


def _one_sentence_naming_the_install(msg):
    assert "pip install 'tinysr[gpu]'" in msg and "tinysr[gpu-cuda13]" in msg, msg
    assert "device='cpu'" in msg, msg
    assert msg.count(". ") == 0 and msg.endswith("."), f"not one sentence: {msg!r}"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "GPU"])
def test_check_device_without_cupy(no_cupy, device):
    with pytest.raises(backend.DeviceError) as e:
        backend.check_device(device)
    _one_sentence_naming_the_install(str(e.value))
    assert "not installed" in str(e.value)


def test_tensor_to_cuda_without_cupy(no_cupy):
    t = tinysr.Tensor(np.ones((2, 2), np.float32))
    with pytest.raises(backend.DeviceError) as e:
        t.to("cuda")
    _one_sentence_naming_the_install(str(e.value))


def test_module_to_cuda_without_cupy(no_cupy):
    model = nn.Conv2d(1, 2, 3)
    before = model.weight.data
    with pytest.raises(backend.DeviceError) as e:
        model.to("cuda")
    _one_sentence_naming_the_install(str(e.value))
    assert model.weight.data is before  # nothing was half-moved


def test_device_error_is_a_runtime_error(no_cupy):
    with pytest.raises(RuntimeError):
        backend.check_device("cuda")


def test_cupy_without_a_gpu(cupy_without_gpu):
    with pytest.raises(backend.DeviceError) as e:
        backend.check_device("cuda")
    msg = str(e.value)
    assert "no usable NVIDIA GPU" in msg and "driver" in msg and "device='cpu'" in msg, msg
    assert "cudaErrorNoDevice" in msg


def test_cpu_needs_nothing(no_cupy):
    assert backend.check_device("cpu") == "cpu"
    assert backend.check_device(None) == "cpu"
    model = nn.Conv2d(1, 2, 3).to("cpu")
    assert model.device == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cuda:-1", 3])
def test_bad_device_names(bad):
    with pytest.raises(backend.DeviceError, match="device"):
        backend.parse_device(bad)


def test_parse_device():
    assert backend.parse_device("cuda:1") == ("cuda", 1)
    assert backend.parse_device(" CUDA ") == ("cuda", None)
    assert backend.parse_device("cpu") == ("cpu", None)


def test_cpu_moves_are_not_transfers():
    x = np.ones((3, 3), np.float32)
    t = tinysr.Tensor(x)
    with backend.count_transfers() as moved:
        assert backend.to_device(x, "cpu") is x
        assert t.to("cpu") is t
        assert backend.as_numpy(x) is x
        batch = backend.move_batch((x, {"hr": t, "name": "a"}), "cpu")
    assert moved == {"h2d": 0, "d2h": 0, "d2d": 0, "bytes": 0}
    assert batch[0] is x and batch[1]["hr"] is t and batch[1]["name"] == "a"


def test_transfer_counts_snapshot_is_a_copy():
    snap = backend.transfer_counts()
    snap["h2d"] += 100
    assert backend.transfer_counts()["h2d"] == snap["h2d"] - 100


def test_synchronize_is_a_no_op_on_cpu(no_cupy):
    backend.synchronize()
    backend.synchronize("cpu")


def test_gpu_benchmark_without_a_gpu_exits_2_and_says_why():
    import importlib.util
    import subprocess
    from pathlib import Path
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here; the no-GPU path is checked where it is not")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    proc = subprocess.run([sys.executable, str(script), "--models", "srcnn"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing measured" in proc.stderr and "tinysr[gpu]" in proc.stderr
