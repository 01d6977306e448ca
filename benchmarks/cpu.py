"""Race tinysr against PyTorch on the CPU, in one run, on the four classic SR networks.

    python benchmarks/cpu.py            # full run (a few minutes on 2 cores)
    python benchmarks/cpu.py --quick    # fewer repetitions, for a smoke test
    python benchmarks/cpu.py --layers   # only the per-layer table (one 64 -> 64 3x3 convolution)

For SRCNN (batch 128 of 33x33 Y patches), FSRCNN x3 (batch 128 of 11x11 LR patches), VDSR (batch 16
of 41x41) and EDSR-baseline x2 (batch 16 of 48x48 RGB) it measures, with both frameworks on the same
shapes, the same initial weights and the same thread count:

* training-step throughput (forward + loss + backward + optimiser step), patches/s;
* inference throughput for one image with a ~256x256 output, images/s;
* peak memory of a training step;
* first-call latency (the first training step in this process: Numba compiles or loads its cache).

Timings alternate tinysr and PyTorch repetition by repetition, so a slow phase of the machine hits
both; the table reports medians and the ratio tinysr / PyTorch (> 1 means tinysr is faster, or for
memory, uses more).  Memory is measured in a fresh subprocess per (framework, model): the peak RSS
(``VmHWM``, its high-water mark reset just before) during three training steps minus the RSS just
before them, after imports, model and
batch exist and one single-sample warm-up step has compiled the kernels -- so it counts everything a step allocates (activations, gradients, optimiser state,
column buffers, BLAS and allocator caches) and nothing the imports cost.

The per-layer table times one 64 -> 64 3x3 convolution (stride 1, padding 1, with bias) at VDSR's,
EDSR's and one whole image's shape with each algorithm tinysr has (im2col, Winograd F(2x2,3x3),
F(4x4,3x3) and F(6x6,3x3)) and with PyTorch, forward alone and forward + both gradients (and the bias's),
in milliseconds and in
*direct-equivalent GFLOP/s* (2 x the multiply-adds of the direct convolution / time), beside the
sgemm rate of NumPy's OpenBLAS measured in the same run: an algorithm that does fewer multiplies can
go past that roofline, im2col cannot.

Results go to ``benchmarks/results/cpu.json`` and a markdown table to stdout.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# name: (batch, input HxW, channels, inference input HxW)
SHAPES = {
    "SRCNN": (128, 33, 1, 268),        # valid 9-1-5 convolutions: 33 -> 21, 268 -> 256
    "FSRCNN": (128, 11, 1, 86),        # x3 transposed conv: 11 -> 33, 86 -> 258
    "VDSR": (16, 41, 1, 256),
    "EDSR": (16, 48, 3, 128),          # x2 pixel shuffle: 48 -> 96, 128 -> 256
}


# ---------------------------------------------------------------------------------------------- tinysr
def tinysr_model(name):
    from tinysr import nn

    if name == "SRCNN":
        return nn.Sequential(nn.Conv2d(1, 64, 9), nn.ReLU(), nn.Conv2d(64, 32, 1), nn.ReLU(), nn.Conv2d(32, 1, 5))
    if name == "FSRCNN":
        layers = [nn.Conv2d(1, 56, 5, padding=2), nn.PReLU(56), nn.Conv2d(56, 12, 1), nn.PReLU(12)]
        for _ in range(4):
            layers += [nn.Conv2d(12, 12, 3, padding=1), nn.PReLU(12)]
        layers += [nn.Conv2d(12, 56, 1), nn.PReLU(56), nn.ConvTranspose2d(56, 1, 9, stride=3, padding=3)]
        return nn.Sequential(*layers)
    if name == "VDSR":
        class VDSR(nn.Module):              # as tinysr.models.VDSR: each conv and its ReLU one op
            def __init__(self):
                super().__init__()
                convs = [nn.Conv2d(1, 64, 3, padding=1)] + [nn.Conv2d(64, 64, 3, padding=1) for _ in range(18)]
                self.layers = nn.ModuleList(convs + [nn.Conv2d(64, 1, 3, padding=1)])

            def forward(self, x):
                h = x
                for conv in self.layers[:-1]:
                    h = conv(h, activation="relu")
                return x + self.layers[-1](h)
        return VDSR()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)

        def forward(self, x):
            return x + self.c2(self.c1(x, activation="relu"))

    class EDSR(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(3, 64, 3, padding=1)
            self.body = nn.Sequential(*[Block() for _ in range(16)], nn.Conv2d(64, 64, 3, padding=1))
            self.up = nn.Sequential(nn.Conv2d(64, 256, 3, padding=1), nn.PixelShuffle(2))
            self.tail = nn.Conv2d(64, 3, 3, padding=1)

        def forward(self, x):
            h = self.head(x)
            return self.tail(self.up(h + self.body(h)))
    return EDSR()


def tinysr_step_fn(name, model, x, t):
    from tinysr import Tensor, optim
    from tinysr import functional as F
    opt = (optim.Adam(model.parameters(), lr=1e-4) if name in ("FSRCNN", "EDSR")
           else optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
    loss_fn = F.l1_loss if name == "EDSR" else F.mse_loss
    xt, tt = Tensor(x), Tensor(t)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(xt), tt)
        loss.backward()
        opt.step()
        return loss
    return step


def tinysr_infer_fn(model, x):
    from tinysr import Tensor, no_grad
    xt = Tensor(x)

    def infer():
        with no_grad():
            return model(xt)
    return infer


# ---------------------------------------------------------------------------------------------- torch
def torch_model(name, ours=None):
    """The PyTorch twin; with ``ours`` given, its parameters are copied in (same init)."""
    import torch
    from torch import nn

    if name == "SRCNN":
        m = nn.Sequential(nn.Conv2d(1, 64, 9), nn.ReLU(), nn.Conv2d(64, 32, 1), nn.ReLU(), nn.Conv2d(32, 1, 5))
    elif name == "FSRCNN":
        layers = [nn.Conv2d(1, 56, 5, padding=2), nn.PReLU(56), nn.Conv2d(56, 12, 1), nn.PReLU(12)]
        for _ in range(4):
            layers += [nn.Conv2d(12, 12, 3, padding=1), nn.PReLU(12)]
        layers += [nn.Conv2d(12, 56, 1), nn.PReLU(56), nn.ConvTranspose2d(56, 1, 9, stride=3, padding=3)]
        m = nn.Sequential(*layers)
    elif name == "VDSR":
        class VDSR(nn.Module):
            def __init__(self):
                super().__init__()
                layers = [nn.Conv2d(1, 64, 3, padding=1), nn.ReLU()]
                for _ in range(18):
                    layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
                layers.append(nn.Conv2d(64, 1, 3, padding=1))
                self.body = nn.Sequential(*layers)

            def forward(self, x):
                return x + self.body(x)
        m = VDSR()
    else:
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.c2 = nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)

            def forward(self, x):
                return x + self.c2(torch.relu(self.c1(x)))

        class EDSR(nn.Module):
            def __init__(self):
                super().__init__()
                self.head = nn.Conv2d(3, 64, 3, padding=1)
                self.body = nn.Sequential(*[Block() for _ in range(16)], nn.Conv2d(64, 64, 3, padding=1))
                self.up = nn.Sequential(nn.Conv2d(64, 256, 3, padding=1), nn.PixelShuffle(2))
                self.tail = nn.Conv2d(64, 3, 3, padding=1)

            def forward(self, x):
                h = self.head(x)
                return self.tail(self.up(h + self.body(h)))
        m = EDSR()
    if ours is not None:
        theirs = list(m.parameters())
        mine = list(ours.parameters())
        assert len(theirs) == len(mine), (len(theirs), len(mine))
        with torch.no_grad():
            for p, q in zip(theirs, mine):
                p.copy_(torch.from_numpy(q.data.reshape(p.shape)))
    return m


def torch_step_fn(name, model, x, t):
    import torch
    opt = (torch.optim.Adam(model.parameters(), lr=1e-4) if name in ("FSRCNN", "EDSR")
           else torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
    loss_fn = torch.nn.functional.l1_loss if name == "EDSR" else torch.nn.functional.mse_loss
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), tt)
        loss.backward()
        opt.step()
        return loss
    return step


def torch_infer_fn(model, x):
    import torch
    xt = torch.from_numpy(x)

    def infer():
        with torch.no_grad():
            return model(xt)
    return infer


# ---------------------------------------------------------------------------------------------- data
def batch(name, seed=0):
    """Input batch and a target of the network's output shape (random: speed does not depend on it)."""
    n, s, c, _ = SHAPES[name]
    out = {"SRCNN": s - 12, "FSRCNN": 3 * s, "VDSR": s, "EDSR": 2 * s}[name]
    rng = np.random.default_rng(seed)
    return (rng.random((n, c, s, s), dtype=np.float32), rng.random((n, c, out, out), dtype=np.float32))


def image(name, seed=1):
    _, _, c, s = SHAPES[name]
    return np.random.default_rng(seed).random((1, c, s, s), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- timing
def _time(fn, k):
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def race(fa, fb, reps, k):
    """Alternate ``reps`` timings of ``k`` calls each of fa and fb; medians of seconds per call."""
    ta, tb = [], []
    for r in range(reps):
        if r % 2 == 0:
            ta.append(_time(fa, k))
            tb.append(_time(fb, k))
        else:
            tb.append(_time(fb, k))
            ta.append(_time(fa, k))
    return statistics.median(ta), statistics.median(tb)


def _rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(framework, name, threads):
    """Run in a subprocess: peak RSS growth (bytes) over three training steps."""
    x, t = batch(name)
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        make, model = torch_step_fn, torch_model(name)
    else:
        from tinysr_kernels.cpu import threads as th
        th.set_num_threads(threads)
        make, model = tinysr_step_fn, tinysr_model(name)
    # One step on a single sample first: Numba compiles / loads its cache (LLVM's memory would
    # otherwise set the high-water mark) without allocating full-size buffers.
    make(name, model, x[:1], t[:1])()
    step = make(name, model, x, t)
    base = _rss_now()
    reset = _reset_peak_rss()
    for _ in range(3):
        step()
    peak = _peak_rss() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_bytes": max(0, peak - base), "high_water_mark": "VmHWM" if reset else "ru_maxrss"}))


def _reset_peak_rss():
    """Reset this process's RSS high-water mark to its current RSS (Linux ``clear_refs`` 5).

    ``ru_maxrss`` cannot be used here: Linux carries a forked child's RSS -- the *parent's* pages --
    into the high-water mark across ``exec``, so a child started by this (by then large) benchmark
    process would report the parent's RSS as its peak (for SRCNN, about twice its own).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_memory(framework, name, threads):
    out = subprocess.run([sys.executable, __file__, "--_memory", framework, name, "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


# ---------------------------------------------------------------------------------------------- layers
LAYER_SHAPES = {"VDSR 16x64x41x41": (16, 41, 41), "EDSR 16x64x48x48": (16, 48, 48), "image 1x64x256x256": (1, 256, 256)}


def sgemm_gflops(threads, reps):
    """NumPy-OpenBLAS sgemm rate through tinysr's ``threads.gemm`` (the way the kernels call it), GFLOP/s:
    a 64 x 576 by 576 x 26896 product, the im2col GEMM of VDSR's layer, best of ``reps``."""
    from tinysr_kernels.cpu import threads as th
    rng = np.random.default_rng(0)
    a, b = rng.random((64, 576), dtype=np.float32), rng.random((576, 26896), dtype=np.float32)
    out = np.empty((64, 26896), np.float32)
    th.gemm(a, b, out)
    best = min(_time(lambda: th.gemm(a, b, out), 3) for _ in range(reps))
    return 2 * 64 * 576 * 26896 / best / 1e9


def layer_table(threads, reps):
    """Milliseconds and direct-equivalent GFLOP/s of one 64 -> 64 3x3 layer per algorithm (see the docstring)."""
    import torch
    import tinysr_kernels.cpu as K
    out = {"sgemm_gflops": sgemm_gflops(threads, reps), "layers": {}}
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    s, p = (1, 1), (1, 1)
    for label, (n, h, wd) in LAYER_SHAPES.items():
        x = rng.standard_normal((n, 64, h, wd)).astype(np.float32)
        gy = rng.standard_normal((n, 64, h, wd)).astype(np.float32)
        flops = 2 * n * 64 * 64 * 9 * h * wd
        fns = {}
        for alg, impl in K.CONV_IMPLS.items():
            def fwd(impl=impl):
                return impl.forward(x, w, s, p, bias=b)

            def train(impl=impl):                      # forward and all three gradients, as PyTorch's
                impl.forward(x, w, s, p, bias=b)
                if hasattr(impl, "backward_fused"):
                    impl.backward_fused(x, w, gy, s, p, True)
                    return
                if hasattr(impl, "backward"):
                    impl.backward(x, w, gy, s, p, True)
                else:
                    impl.backward_data(gy, w, x.shape, s, p)
                    impl.backward_weight(x, gy, w.shape, s, p)
                K.bias_grad(gy)
            fns[alg] = (fwd, train)
        xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, gy))

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, bt, padding=1)

        def t_train():
            xr, wr, br = (a.detach().requires_grad_() for a in (xt, wt, bt))
            torch.nn.functional.conv2d(xr, wr, br, padding=1).backward(gt)
        fns["torch"] = (t_fwd, t_train)
        row = {}
        for mode in (0, 1):
            for f in fns.values():
                f[mode]()                                  # compile, warm buffers
            times = {k: [] for k in fns}
            for r in range(reps):                          # interleaved, rotating the order
                names = list(fns)
                names = names[r % len(names):] + names[:r % len(names)]
                for k in names:
                    times[k].append(_time(fns[k][mode], 1))
            for k, ts in times.items():
                ms = statistics.median(ts) * 1e3
                row.setdefault(k, {})["train_ms" if mode else "forward_ms"] = ms
                row[k]["train_gflops" if mode else "forward_gflops"] = (3 if mode else 1) * flops / ms / 1e6
        out["layers"][label] = row
        print(f"{label}: " + ", ".join(f"{k} {v['forward_ms']:.1f}/{v['train_ms']:.1f} ms" for k, v in row.items()),
              flush=True)
    return out


def layer_markdown(res):
    """The per-layer results as a markdown table (forward; forward + both gradients)."""
    rows = ["| layer | algorithm | forward ms | GFLOP/s | fwd+bwd ms | GFLOP/s |", "|---|---|---|---|---|---|"]
    for label, row in res["layers"].items():
        for k, v in row.items():
            rows.append(f"| {label} | {k} | {v['forward_ms']:.1f} | {v['forward_gflops']:.0f} "
                        f"| {v['train_ms']:.1f} | {v['train_gflops']:.0f} |")
    rows.append(f"\nsgemm (NumPy's OpenBLAS through tinysr's threads.gemm) in the same run: "
                f"{res['sgemm_gflops']:.0f} GFLOP/s.  GFLOP/s are direct-equivalent: 2 x multiply-adds of "
                "the direct convolution (x3 for forward + both gradients) / time.")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- networks
def measure_model(name, reps, args, conv_mod):
    """One measurement of ``name``: first-step latency, then training and inference throughput of tinysr and
    PyTorch, interleaved (fresh models and batches each call)."""
    n = SHAPES[name][0]
    x, t = batch(name)
    ours = tinysr_model(name)
    theirs = torch_model(name, ours)
    s_ours, s_theirs = tinysr_step_fn(name, ours, x, t), torch_step_fn(name, theirs, x, t)
    first = {"tinysr": _time(s_ours, 1), "torch": _time(s_theirs, 1)}
    a, b = race(s_ours, s_theirs, reps, 1 if name in ("VDSR", "EDSR") else 2)
    train = {"tinysr": n / a, "torch": n / b}
    img = image(name)
    i_ours, i_theirs = tinysr_infer_fn(ours, img), torch_infer_fn(theirs, img)
    i_ours(), i_theirs()  # warm-up (buffers, compilation for the new shapes)
    a, b = race(i_ours, i_theirs, reps, 2)
    infer = {"tinysr": 1 / a, "torch": 1 / b}
    return {"train_patches_per_s": train, "train_ratio": train["tinysr"] / train["torch"],
            "infer_images_per_s": infer, "infer_ratio": infer["tinysr"] / infer["torch"], "first_step_s": first,
            "conv_impl": conv_mod.conv_impl(x).name,
            "conv_algorithm": os.environ.get("TINYSR_CONV", "auto") or "auto"}


def summarise(runs):
    """Median and range of the ratios over ``runs`` (the table's entries when there are several runs)."""
    out = {}
    for key in ("train_ratio", "infer_ratio"):
        values = [r[key] for r in runs]
        out[key] = statistics.median(values)
        out[key + "_range"] = [min(values), max(values)]
    for key in ("train_patches_per_s", "infer_images_per_s"):
        out[key] = {fw: statistics.median(r[key][fw] for r in runs) for fw in ("tinysr", "torch")}
    out["runs"] = len(runs)
    return out


# ---------------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")
    ap.add_argument("--models", default="SRCNN,FSRCNN,VDSR,EDSR")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=None, help="interleaved repetitions per measurement")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--layers", action="store_true", help="only the per-layer table")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    ap.add_argument("--runs", type=int, default=1,
                    help="repeat the network measurements this many times in one process; the table gives the "
                         "median and the range of the ratios over the runs (memory is measured once)")
    ap.add_argument("--json", default=str(HERE / "results" / "cpu.json"))
    ap.add_argument("--_memory", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        return memory_child(*args._memory, args.threads)

    import torch
    import tinysr
    from tinysr.functional import conv as conv_mod
    from tinysr_kernels.cpu import threads as th

    torch.set_num_threads(args.threads)
    th.set_num_threads(args.threads)
    reps = args.reps or (3 if args.quick else 7)
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpus": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
                           "numpy": np.__version__, "torch": torch.__version__, "tinysr": tinysr.__version__
                           if hasattr(tinysr, "__version__") else "?"},
               "method": {"throughput": f"median of {reps} interleaved repetitions (tinysr, torch alternating)",
                          "memory": "peak RSS (VmHWM, reset before) during 3 training steps minus RSS before them, "
                                    "each framework alone in a fresh subprocess"},
               "models": {}}
    if not args.no_layers:
        results["layer_3x3_64"] = layer_table(args.threads, reps)
        print()
        print(layer_markdown(results["layer_3x3_64"]), flush=True)
    for run in range(args.runs):
        if args.runs > 1:
            print(f"run {run + 1} of {args.runs}", flush=True)
        for name in ([] if args.layers else args.models.split(",")):
            entry = measure_model(name, reps, args, conv_mod)
            results.setdefault("runs", {}).setdefault(name, []).append(
                {k: entry[k] for k in ("train_ratio", "infer_ratio", "train_patches_per_s", "infer_images_per_s")})
            if run == 0 and not args.no_memory:
                mo, mt = measure_memory("tinysr", name, args.threads), measure_memory("torch", name, args.threads)
                entry["train_peak_mib"] = {"tinysr": mo / 2**20, "torch": mt / 2**20}
                entry["memory_ratio"] = mo / mt if mt else float("nan")
            results["models"][name] = {**results["models"].get(name, {}), **entry,
                                       **summarise(results["runs"][name])}
            print(f"{name}: train {entry['train_ratio']:.2f}x, infer {entry['infer_ratio']:.2f}x"
                  + (f", memory {entry['memory_ratio']:.2f}x" if "memory_ratio" in entry else ""), flush=True)
    results["threads_info"] = th.info()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print()
    print(table(results))
    print(f"\n(written to {path})")


def table(results):
    """The results as a markdown table."""
    rows = ["| model | train tinysr / torch (patches/s) | ratio | infer tinysr / torch (img/s) | ratio "
            "| train peak MiB tinysr / torch | ratio | first step s tinysr / torch |",
            "|---|---|---|---|---|---|---|---|"]
    for name, e in results["models"].items():
        tr, inf, fs = e["train_patches_per_s"], e["infer_images_per_s"], e["first_step_s"]
        mem = e.get("train_peak_mib")
        rng = {k: (f" ({e[k + '_range'][0]:.2f}-{e[k + '_range'][1]:.2f})" if e.get("runs", 1) > 1 else "")
               for k in ("train_ratio", "infer_ratio")}
        rows.append(f"| {name} | {tr['tinysr']:.1f} / {tr['torch']:.1f} | **{e['train_ratio']:.2f}x**{rng['train_ratio']} "
                    f"| {inf['tinysr']:.2f} / {inf['torch']:.2f} | **{e['infer_ratio']:.2f}x**{rng['infer_ratio']} "
                    + (f"| {mem['tinysr']:.0f} / {mem['torch']:.0f} | **{e['memory_ratio']:.2f}x** " if mem else "| - | - ")
                    + f"| {fs['tinysr']:.2f} / {fs['torch']:.2f} |")
    m = results["machine"]
    runs = max((e.get("runs", 1) for e in results["models"].values()), default=1)
    if runs > 1:
        rows.append(f"\nRatios: the median of {runs} runs in one process, the range in brackets; throughputs: medians.")
    rows.append(f"\n{m['processor']}, {m['cpus']} CPUs, {m['threads']} threads; {m['platform']}; "
                f"numpy {m['numpy']}, torch {m['torch']}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
