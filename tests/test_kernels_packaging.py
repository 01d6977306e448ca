"""A non-editable install ships the kernels: build a wheel from a copy of the sources, install it into
a scratch folder and run a convolution from there through the Numba implementation."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_and_runs_the_cpu_kernels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for pkg in ("tinysr", "kernels"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(src)], check=True, cwd=tmp_path, timeout=120)
    (wheel,) = wheels.glob("tinysr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("tinysr_kernels/__init__.py", "tinysr_kernels/cpu/__init__.py", "tinysr_kernels/cpu/conv.py",
              "tinysr_kernels/cpu/im2col.py", "tinysr_kernels/cpu/direct.py", "tinysr_kernels/cpu/pointwise.py",
              "tinysr_kernels/cpu/threads.py"):
        assert f in names, f"{f} is missing from {wheel.name}"

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=120)
    code = (
        "import numpy as np, tinysr, tinysr_kernels\n"
        "from tinysr import functional as F, Tensor\n"
        "from tinysr.functional import conv\n"
        f"assert tinysr_kernels.__file__.startswith({str(target)!r}), tinysr_kernels.__file__\n"
        "x = Tensor(np.ones((1, 2, 5, 5), np.float32)); w = Tensor(np.ones((4, 2, 3, 3), np.float32))\n"
        "y = F.conv2d(x, w, padding=1)\n"
        "assert conv.conv_impl(x.data).name == 'numba' and float(y.data[0, 0, 2, 2]) == 18.0\n"
        "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(target), NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
