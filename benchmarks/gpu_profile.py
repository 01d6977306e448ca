"""Where a tinysr training step spends its time on the GPU, kernel by kernel.

    python benchmarks/gpu_profile.py                      # VDSR and FSRCNN, the shapes of benchmarks/gpu.py
    python benchmarks/gpu_profile.py --models edsr-baseline --top 15

PyTorch's profiler (CUPTI) records every CUDA kernel the process launches -- CuPy's, cuBLAS's and our
Numba kernels alike -- so it can time tinysr's steps although tinysr does not use PyTorch.  For each
model it prints the wall time of a step, the GPU time of its kernels (if that is much smaller, the
step is bound by Python and launch overhead, not by the GPU), and the kernels that take the most.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu as bench  # noqa: E402  (benchmarks/gpu.py: the same models and shapes)


def _device_us(evt):
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(evt, attr):
            return getattr(evt, attr)
    return 0.0


def profile(name, steps, top):
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from tinysr import backend
    step, _, _ = bench.tinysr_steps(name)
    in_shape = bench._shapes(name)[0]
    for _ in range(3):
        step()
    backend.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    backend.synchronize()
    wall_ms = (time.perf_counter() - t) / steps * 1e3
    torch.cuda.init()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        backend.synchronize()
    rows = [(e.key, _device_us(e) / steps / 1e3, e.count // steps) for e in prof.key_averages()]
    rows = sorted((r for r in rows if r[1] > 0), key=lambda r: -r[1])
    gpu_ms = sum(r[1] for r in rows)
    print(f"\n{name} train step, batch {in_shape}: {wall_ms:.2f} ms wall, {gpu_ms:.2f} ms of GPU kernels "
          f"({100 * gpu_ms / wall_ms:.0f}% busy)")
    print("| kernel | ms/step | launches/step |\n|---|---:|---:|")
    for key, ms, count in rows[:top]:
        print(f"| {key[:70]} | {ms:.3f} | {count} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["vdsr", "fsrcnn"], choices=list(bench.CONFIGS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    for name in args.models:
        profile(name, args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
