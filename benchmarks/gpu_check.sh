#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU, CuPy, Numba and (CUDA) PyTorch already
# installed -- e.g. a lent cloud machine that cannot download anything:
#
#     TINYSR_DATA=/path/to/data OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
#
# 1. installs tinysr without its dependencies (they are expected to be there);
# 2. evaluates the shipped SRCNN/FSRCNN x3 on Set5 with the CLI on the CPU and on the GPU (same PSNR?),
#    and times a tiled 2000x2000 upscale on the GPU;
# 3. races tinysr against PyTorch/cuDNN (benchmarks/gpu.py, TF32 off, then on) -> $OUT/gpu*.json;
# 4. profiles a training step kernel by kernel (benchmarks/gpu_profile.py);
# 5. runs the GPU tests: the kernels against their NumPy twins and PyTorch, gradient checks on the GPU,
#    no silent transfers, and train / evaluate / upscale with device="cuda" against the CPU.
#
# Every stage has its own time limit and the script goes on after a failure, so one run reports all of
# them; logs go to $OUT.  TINYSR_DATA needs Set5 (stage 2) and T91 (one test).
set -u
OUT=${OUT:-/tmp/tinysr-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
stage() { echo; echo "=== $* ($(date +%T))"; }

stage "machine"
nvidia-smi -L 2>&1
$PY - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import platform, numpy, numba
print("python", platform.python_version(), "numpy", numpy.__version__, "numba", numba.__version__)
for name in ("cupy", "torch", "numba_cuda"):
    try:
        m = __import__(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as e:
        print(name, "missing:", e)
EOF

stage "install (no dependencies)"
if [ -n "${SKIP_INSTALL:-}" ]; then
    echo "SKIP_INSTALL is set: using the tinysr that $PY imports"
elif ! $PY -m pip install -q --no-deps --no-build-isolation --no-index . >"$OUT/install.txt" 2>&1; then
    echo "pip install failed (see install.txt); using the source tree instead"
    mkdir -p /tmp/tinysr-src && ln -sfn "$PWD/kernels" /tmp/tinysr-src/tinysr_kernels
    export PYTHONPATH="$PWD:/tmp/tinysr-src"
fi
$PY -c "import tinysr, tinysr_kernels; print('tinysr', tinysr.__version__, 'from', tinysr.__file__)"

stage "CLI on the GPU: Set5 x3, CPU and GPU"
for model in srcnn-x3 fsrcnn-x3; do
    for device in cpu cuda; do
        t0=$(date +%s%N)
        timeout 90 $PY -m tinysr eval "$model" --dataset Set5 --summary --device "$device" 2>&1 | tail -4 \
            | tee -a "$OUT/cli.txt"
        echo "  ^ $model on $device: $(( ($(date +%s%N) - t0) / 1000000 )) ms (process start and imports included)" \
            | tee -a "$OUT/cli.txt"
    done
done
timeout 90 $PY - <<'EOF' 2>&1 | tee -a "$OUT/cli.txt"
import time
import numpy as np
import tinysr
from tinysr import backend
img = (np.random.default_rng(0).random((2000, 2000, 3)) * 255).astype(np.uint8)
net = tinysr.load("fsrcnn-x3")
tinysr.upscale(img[:200, :200], net, scale=3, device="cuda")       # compile kernels first
for tile in ("auto", None):
    backend.synchronize()
    t = time.perf_counter()
    sr = tinysr.upscale(img, net, scale=3, device="cuda", tile=tile)
    dt = time.perf_counter() - t
    print(f"  upscale 2000x2000 -> {sr.shape[1]}x{sr.shape[0]} on the GPU, tile={tile}: {dt:.2f} s")
cpu = tinysr.upscale(img[:300, :300], net, scale=3, device="cpu")
gpu = tinysr.upscale(img[:300, :300], net, scale=3, device="cuda")
print("  300x300 crop, GPU vs CPU: max |difference| =", int(np.abs(cpu.astype(int) - gpu.astype(int)).max()))
EOF

stage "benchmarks/gpu.py (TF32 off)"
timeout 170 $PY benchmarks/gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.txt"
stage "benchmarks/gpu.py --tf32"
timeout 120 $PY benchmarks/gpu.py --tf32 --sgemm-sizes --out "$OUT/gpu_tf32.json" 2>&1 | tee "$OUT/bench_tf32.txt"

stage "profile: kernels of one training step"
timeout 90 $PY benchmarks/gpu_profile.py --models vdsr edsr-baseline fsrcnn 2>&1 | tee "$OUT/profile.txt"

stage "GPU tests"
timeout -s INT 260 $PY -m pytest -q -p no:cacheprovider -rfEs --tb=short \
    tests/test_kernels_cuda_gpu.py tests/test_cuda_path_fake_cupy.py 2>&1 | tee "$OUT/pytest.txt" | tail -40
stage "done"
