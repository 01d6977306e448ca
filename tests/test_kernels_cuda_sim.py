"""The CUDA kernels under Numba's CUDA simulator, against their NumPy twins (no GPU needed; runs in CI).

The simulator has to be switched on (``NUMBA_ENABLE_CUDASIM=1``) before ``numba.cuda`` is first
imported, and this pytest process may already have imported it the normal way, so each group of
checks runs ``python -m tinysr_kernels.cuda.selftest <group>`` in a fresh process.  The shapes,
and what each group covers (odd sizes, stride 1/2/3, padding 0/1/4, batch > 1, non-contiguous
inputs, float32 and float64), are in ``kernels/cuda/selftest.py``.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["contiguous", "im2col", "col2im", "pixel_shuffle", "bias_act", "batchnorm", "sgemm", "conv"]

pytestmark = pytest.mark.cudasim


def _run_selftest(*args, timeout=600):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "tinysr_kernels.cuda.selftest", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("group", GROUPS)
def test_kernel_matches_numpy_twin_in_simulator(group):
    proc = _run_selftest(group)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"SELFTEST PASSED: {group}" in proc.stdout, report
    assert " ok " in proc.stdout, report  # it really compared something


def test_selftest_reports_failure_and_unknown_group():
    # A check that cannot pass must make the process fail (otherwise the tests above prove nothing).
    proc = _run_selftest("no_such_kernel", timeout=120)
    assert proc.returncode != 0
    assert "unknown check" in proc.stderr


def test_simulator_is_really_on_in_the_subprocess():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    code = ("from tinysr_kernels.cuda import _runtime as rt, im2col; from numba import cuda; import numpy as np;"
            "x = cuda.to_device(np.ones((1, 1, 3, 3), np.float32));"
            "print(rt.simulator_enabled(), rt.family(x), im2col(x, 2, 2).shape)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "sim", "(4,", "4)"], proc.stdout
