"""GPU throughput: tinysr on CuPy (+ our Numba CUDA kernels) against PyTorch on CUDA with cuDNN.

    python benchmarks/gpu.py                       # all models, TF32 off (plain float32 on both sides)
    python benchmarks/gpu.py --tf32                # TF32 on both sides (CuPy's cuBLAS and PyTorch)
    python benchmarks/gpu.py --models vdsr edsr-baseline --steps 20 --out gpu.json

For SRCNN, FSRCNN, VDSR and EDSR-baseline it measures, in one run and on the same GPU:

* training-step throughput (images/s): forward, loss, backward and an Adam step;
* inference throughput (images/s): forward only, without recording the graph;

for tinysr and for PyTorch, with identical architectures, batch sizes, patch sizes and precision.
The networks are defined in this file for both frameworks (the papers' layer shapes; padding keeps
the spatial size), so that the two sides provably do the same work.  It also times the teaching
SGEMM kernel (``tinysr_kernels.cuda.sgemm``) against cuBLAS (``cupy.matmul``).

Results go to a JSON file (``--out``, default ``benchmarks/results/gpu.json``) and a Markdown table on
stdout that names the GPU.  GPU work is asynchronous, so every timing synchronises first.

Exit status: 0 on success; 2 when there is no GPU or CuPy (the message says what to install) --
nothing is measured then.  Without a CUDA build of PyTorch the tinysr side still runs and the
PyTorch columns are empty.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (channels, scale, LR patch size, batch) per model; VDSR and SRCNN work on the upscaled image.
CONFIGS = {
    "srcnn": dict(channels=1, scale=1, patch=33, batch=128),
    "fsrcnn": dict(channels=1, scale=3, patch=32, batch=64),
    "vdsr": dict(channels=1, scale=1, patch=41, batch=64),
    "edsr-baseline": dict(channels=3, scale=2, patch=48, batch=16),
}


# ---------------------------------------------------------------------------------------------- tinysr models
def tinysr_model(name):
    import tinysr.functional as F
    from tinysr import nn

    class SRCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv2d(1, 64, 9, padding=4), nn.Conv2d(64, 32, 1), nn.Conv2d(32, 1, 5, padding=2)

        def forward(self, x):
            return self.c3(F.relu(self.c2(F.relu(self.c1(x)))))

    class FSRCNN(nn.Module):
        def __init__(self, d=56, s=12, m=4, scale=3):
            super().__init__()
            layers = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
            for _ in range(m):
                layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
            layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
            self.body = nn.Sequential(*layers)
            self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4, output_padding=scale - 1)

        def forward(self, x):
            return self.deconv(self.body(x))

    class VDSR(nn.Module):
        def __init__(self, depth=20):
            super().__init__()
            layers = [nn.Conv2d(1, 64, 3, padding=1), nn.ReLU()]
            for _ in range(depth - 2):
                layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
            layers += [nn.Conv2d(64, 1, 3, padding=1)]
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.body(x)

    class ResBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return x + self.c2(F.relu(self.c1(x)))

    class EDSRBaseline(nn.Module):
        def __init__(self, c=64, blocks=16, scale=2):
            super().__init__()
            self.head = nn.Conv2d(3, c, 3, padding=1)
            self.body = nn.Sequential(*[ResBlock(c) for _ in range(blocks)], nn.Conv2d(c, c, 3, padding=1))
            self.up = nn.Sequential(nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
            self.tail = nn.Conv2d(c, 3, 3, padding=1)

        def forward(self, x):
            h = self.head(x)
            return self.tail(self.up(h + self.body(h)))

    return {"srcnn": SRCNN, "fsrcnn": FSRCNN, "vdsr": VDSR, "edsr-baseline": EDSRBaseline}[name]()


# ---------------------------------------------------------------------------------------------- torch models
def torch_model(name):
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return x + self.body(x)

    if name == "srcnn":
        return nn.Sequential(nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(), nn.Conv2d(64, 32, 1), nn.ReLU(),
                             nn.Conv2d(32, 1, 5, padding=2))
    if name == "fsrcnn":
        d, s, m, scale = 56, 12, 4, 3
        layers = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d),
                   nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4, output_padding=scale - 1)]
        return nn.Sequential(*layers)
    if name == "vdsr":
        layers = [nn.Conv2d(1, 64, 3, padding=1), nn.ReLU()]
        for _ in range(18):
            layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(64, 1, 3, padding=1)]
        return Residual(nn.Sequential(*layers))
    if name == "edsr-baseline":
        c, scale = 64, 2

        class EDSR(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Conv2d(3, c, 3, padding=1)
                blocks = [Residual(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)))
                          for _ in range(16)]
                self.body = nn.Sequential(*blocks, nn.Conv2d(c, c, 3, padding=1))
                self.up = nn.Sequential(nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
                self.tail = nn.Conv2d(c, 3, 3, padding=1)

            def forward(self, x):
                h = self.head(x)
                return self.tail(self.up(h + self.body(h)))
        return EDSR()
    raise KeyError(name)


def _shapes(name):
    cfg = CONFIGS[name]
    n, c, p, s = cfg["batch"], cfg["channels"], cfg["patch"], cfg["scale"]
    return (n, c, p, p), (n, c, p * s, p * s)


# ---------------------------------------------------------------------------------------------- timing
def _timeit(step, sync, steps, warmup):
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def tinysr_steps(name):
    """``(train_step, infer_step, batch)`` for tinysr on the GPU: the model, an Adam optimiser and one
    random batch already on the device (also used by ``gpu_profile.py``)."""
    import tinysr
    import tinysr.functional as F
    from tinysr import Tensor, backend, optim
    cp = backend.cupy_module()
    in_shape, out_shape = _shapes(name)
    rng = np.random.default_rng(0)
    x = Tensor(cp.asarray(rng.random(in_shape, dtype=np.float32)))
    y = Tensor(cp.asarray(rng.random(out_shape, dtype=np.float32)))
    model = tinysr_model(name).to("cuda")
    opt = optim.Adam(model.parameters(), lr=1e-4)

    def train_step():
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer_step():
        with tinysr.no_grad():
            model(x)

    return train_step, infer_step, in_shape[0]


def bench_tinysr(name, steps, warmup):
    from tinysr import backend
    train_step, infer_step, n = tinysr_steps(name)
    t_train = _timeit(train_step, backend.synchronize, steps, warmup)
    t_infer = _timeit(infer_step, backend.synchronize, steps, warmup)
    return n / t_train, n / t_infer


def bench_torch(name, steps, warmup):
    import torch
    in_shape, out_shape = _shapes(name)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random(in_shape, dtype=np.float32), device="cuda")
    y = torch.tensor(rng.random(out_shape, dtype=np.float32), device="cuda")
    model = torch_model(name).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.MSELoss()

    def train_step():
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            model(x)

    n = in_shape[0]
    t_train = _timeit(train_step, torch.cuda.synchronize, steps, warmup)
    t_infer = _timeit(infer_step, torch.cuda.synchronize, steps, warmup)
    return n / t_train, n / t_infer


def bench_sgemm(sizes, steps):
    """GFLOP/s of the teaching tiled kernel and of cuBLAS on square float32 matrices."""
    import cupy as cp
    from tinysr_kernels.cuda import sgemm
    out = []
    for n in sizes:
        a = cp.random.random((n, n), dtype=cp.float32)
        b = cp.random.random((n, n), dtype=cp.float32)
        sync = cp.cuda.get_current_stream().synchronize
        t_tiled = _timeit(lambda: sgemm(a, b), sync, steps, 2)
        t_blas = _timeit(lambda: cp.matmul(a, b), sync, steps, 2)
        err = float(cp.abs(sgemm(a, b) - cp.matmul(a, b)).max())
        flops = 2.0 * n ** 3
        out.append(dict(n=n, tiled_gflops=flops / t_tiled / 1e9, cublas_gflops=flops / t_blas / 1e9, max_abs_diff=err))
    return out


# ---------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description="tinysr (CuPy) vs PyTorch (cuDNN) throughput on one GPU")
    ap.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernel compilation, cuDNN autotuning)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 tensor-core GEMMs on both sides (default: off)")
    ap.add_argument("--no-torch", action="store_true", help="measure tinysr only")
    ap.add_argument("--sgemm-sizes", type=int, nargs="*", default=[512, 1024, 2048])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    args = ap.parse_args(argv)

    # CuPy reads CUPY_TF32 when it sets up cuBLAS, so it must be set before CuPy is imported.
    os.environ["CUPY_TF32"] = "1" if args.tf32 else "0"
    from tinysr import backend
    try:
        cp = backend.cupy_module()
    except backend.DeviceError as e:
        print(f"benchmarks/gpu.py: nothing measured: {e}", file=sys.stderr)
        return 2

    torch = None
    if not args.no_torch:
        try:
            import torch
            if not torch.cuda.is_available():
                print("benchmarks/gpu.py: this PyTorch has no CUDA; measuring tinysr only", file=sys.stderr)
                torch = None
        except ImportError:
            print("benchmarks/gpu.py: PyTorch is not installed; measuring tinysr only", file=sys.stderr)
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm: the strongest baseline

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    from tinysr.functional import conv as conv_mod
    rows = []
    for name in args.models:
        in_shape, out_shape = _shapes(name)
        print(f"{name}: input {in_shape}, target {out_shape} ...", file=sys.stderr, flush=True)
        ours_train, ours_infer = bench_tinysr(name, args.steps, args.warmup)
        theirs_train = theirs_infer = None
        if torch is not None:
            theirs_train, theirs_infer = bench_torch(name, args.steps, args.warmup)
        for mode, ours, theirs in (("train", ours_train, theirs_train), ("infer", ours_infer, theirs_infer)):
            rows.append(dict(model=name, mode=mode, batch=in_shape[0], input=list(in_shape),
                             tinysr_img_s=ours, torch_img_s=theirs,
                             ratio=(ours / theirs) if theirs else None))
    conv_impl_name = getattr(conv_mod.conv_impl(cp.zeros((1, 1, 1, 1), cp.float32)), "name", "numpy")
    try:
        sgemm_rows = bench_sgemm(args.sgemm_sizes, max(3, args.steps // 4)) if args.sgemm_sizes else []
    except Exception as e:  # the teaching kernel needs Numba's CUDA compiler; the table above does not
        print(f"benchmarks/gpu.py: SGEMM kernel not measured ({type(e).__name__}: {e})", file=sys.stderr)
        sgemm_rows = []

    result = dict(
        gpu=gpu_name, tf32=args.tf32, precision="float32 (TF32 GEMMs)" if args.tf32 else "float32 (TF32 off)",
        cupy=cp.__version__, torch=(torch.__version__ if torch is not None else None),
        cudnn=(torch.backends.cudnn.version() if torch is not None else None),
        tinysr_conv_impl=conv_impl_name, python=platform.python_version(), steps=args.steps,
        results=rows, sgemm=sgemm_rows,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))

    print(f"\n{gpu_name}, {result['precision']}, CuPy {cp.__version__}"
          + (f", PyTorch {torch.__version__} (cuDNN {result['cudnn']})" if torch is not None else "")
          + f", tinysr conv: {conv_impl_name}\n")
    print("| model | mode | batch x input | tinysr img/s | PyTorch img/s | tinysr / PyTorch |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        theirs = f"{r['torch_img_s']:.1f}" if r["torch_img_s"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(f"| {r['model']} | {r['mode']} | {r['batch']} x {r['input'][1]}x{r['input'][2]}x{r['input'][3]} "
              f"| {r['tinysr_img_s']:.1f} | {theirs} | {ratio} |")
    if sgemm_rows:
        print("\n| SGEMM n | tiled kernel GFLOP/s | cuBLAS GFLOP/s | tiled / cuBLAS |")
        print("|---:|---:|---:|---:|")
        for r in sgemm_rows:
            print(f"| {r['n']} | {r['tiled_gflops']:.0f} | {r['cublas_gflops']:.0f} | "
                  f"{r['tiled_gflops'] / r['cublas_gflops']:.2f}x |")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
