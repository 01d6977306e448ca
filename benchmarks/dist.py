"""Data-parallel training on one machine: 1 process x 2 threads against 2 MPI ranks x 1 thread.

    python benchmarks/dist.py            # SRCNN and EDSR-baseline, a few steps each
    python benchmarks/dist.py --quick    # fewer steps, for a smoke test

For each network the same global batch (SRCNN: 128 patches of 33x33 Y; EDSR-baseline x2: 16 of 48x48
RGB) is trained for a few steps, after two warm-up steps (Numba's compile or cache load), in two ways:

* **1 rank x 2 threads**: one process, Numba and OpenBLAS on two threads (``NUMBA_NUM_THREADS=2``);
* **2 ranks x 1 thread**: ``mpiexec -n 2``, each rank on its half of the batch with one thread, the
  gradients all-reduced after every backward pass (:mod:`tinysr.distributed`).

It reports training throughput (patches/s of the global batch), the share of a step that rank 0 spends
in the all-reduce (waiting for the other rank included: the two halves rarely finish together), and the
time of the bare ``MPI_Allreduce`` of a buffer of the network's size (the part a faster link or NCCL
would change).  Beside them, PyTorch on the same shapes (Adam, MSE): one process with two threads, and
``DistributedDataParallel`` over gloo with two ranks of one thread (launched by the same ``mpiexec``).

Results go to ``benchmarks/results/dist.json`` and a markdown table to stdout.  Numbers from a machine
that is running other work are only indicative: say so beside them.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: name: (registry name, build kwargs, scale, global batch, patch, convention)
MODELS = {
    "SRCNN": ("srcnn", {"padding": "valid"}, 3, 128, 33),
    "EDSR": ("edsr_baseline", {}, 2, 16, 48),
}


def worker(name, steps):
    """Time ``steps`` training steps (after 2 warm-up steps) on this rank; rank 0 prints a JSON line."""
    sys.path.insert(0, str(REPO))
    from tinysr import distributed, optim
    from tinysr.models.registry import build
    from tinysr.nn import init
    from tinysr.trainer import Trainer

    reg, kw, scale, batch, patch = MODELS[name]
    init.seed(0)
    net = build(reg, scale=scale, **kw)
    c = 1 if net.input_convention != "lr-rgb" else 3
    out = patch - 12 if reg == "srcnn" else patch * scale
    data = np.random.default_rng(0)
    x = data.random((batch, c, patch, patch), dtype=np.float32)
    y = data.random((batch, c, out, out), dtype=np.float32)
    comm = distributed.from_environment()
    tr = Trainer(net, lambda rng: (x, y), optim.Adam(net.parameters(), lr=1e-4), progress=False,
                 log=lambda *a: None, communicator=comm)
    net.train()
    for _ in range(2):
        tr.train_step()
    times, reduce_share = [], []
    for _ in range(steps):
        before = comm.seconds_reducing if comm else 0.0
        t0 = time.perf_counter()
        tr.train_step()
        dt = time.perf_counter() - t0
        times.append(dt)
        reduce_share.append(((comm.seconds_reducing if comm else 0.0) - before) / dt)
    result = {"step_s": statistics.median(times), "patches_per_s": batch / statistics.median(times),
              "allreduce_share": statistics.median(reduce_share), "ranks": comm.size if comm else 1,
              "parameters": int(sum(p.size for p in net.parameters()))}
    if comm is not None:
        # the bare collective on a buffer of the gradients' size, both ranks idle otherwise
        from mpi4py import MPI
        buf = np.ones(result["parameters"], dtype=np.float32)
        bare = []
        for _ in range(20):
            comm.comm.Barrier()
            t0 = time.perf_counter()
            comm.comm.Allreduce(MPI.IN_PLACE, buf)
            bare.append(time.perf_counter() - t0)
        result["bare_allreduce_ms"] = 1e3 * statistics.median(bare)
    if comm is None or comm.is_root:
        print(json.dumps(result), flush=True)


def torch_worker(name, steps):
    """The same measurement for PyTorch: one process, or ``DistributedDataParallel`` over gloo under mpiexec
    (its all-reduce overlaps the backward pass, bucket by bucket, so it has no separate share to report)."""
    import torch
    import torch.distributed as tdist
    sys.path[:0] = [str(REPO), str(HERE)]
    import cpu as cpubench
    from tinysr import distributed

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rank, size = distributed.launched_rank(), distributed.launched_ranks()
    torch.manual_seed(0)
    model = cpubench.torch_model(name)
    if size > 1:
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['TINYSR_BENCH_PORT']}",
                                 rank=rank, world_size=size)
        model = torch.nn.parallel.DistributedDataParallel(model)
    x, t = cpubench.batch(name)
    lo, hi = len(x) * rank // size, len(x) * (rank + 1) // size
    xt, tt = torch.from_numpy(x[lo:hi]), torch.from_numpy(t[lo:hi])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(xt), tt).backward()
        opt.step()
    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        print(json.dumps({"step_s": statistics.median(times), "patches_per_s": len(x) / statistics.median(times),
                          "ranks": size}), flush=True)
    if size > 1:
        tdist.destroy_process_group()


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, threads):
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_NUM_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "TINYSR_BENCH_PORT": str(_free_port())}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed steps")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--json", default=str(HERE / "results" / "dist.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        (torch_worker if args.torch else worker)(args.worker, args.steps)
        return
    mpiexec = Path(sys.executable).with_name("mpiexec")
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("no mpiexec: pip install 'tinysr[dist]' (mpi4py and the MPICH wheel)")
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "load_average_at_start": os.getloadavg()},
               "date": time.strftime("%Y-%m-%d %H:%M"), "models": {}}
    rows = []
    for name in args.models.split(","):
        steps = 2 if args.quick else (4 if name == "EDSR" else 10)
        me = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--steps", str(steps)]
        one = run(me, threads=2)
        two = run([mpiexec, "-n", "2", *me], threads=1)
        t_one = run(me + ["--torch"], threads=2)
        t_two = run([mpiexec, "-n", "2", *me, "--torch"], threads=1)
        results["models"][name] = {"global_batch": MODELS[name][3], "steps": steps, "1x2": one, "2x1": two,
                                   "torch_1x2": t_one, "torch_ddp_2x1": t_two}
        rows.append(f"| {name} | {MODELS[name][3]} | {one['patches_per_s']:.1f} | {two['patches_per_s']:.1f} | "
                    f"**{two['patches_per_s'] / one['patches_per_s']:.2f}x** | {100 * two['allreduce_share']:.1f}% | "
                    f"{two['bare_allreduce_ms']:.2f} ms ({4 * two['parameters'] / 2**20:.2f} MiB) | "
                    f"{t_one['patches_per_s']:.1f} | {t_two['patches_per_s']:.1f} |")
    results["load_average_at_end"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print("| model | global batch | tinysr 1 rank x 2 threads (patches/s) | tinysr 2 ranks x 1 thread (patches/s) | "
          "ratio | all-reduce share of a step (rank 0) | bare Allreduce of the gradients | PyTorch 1 x 2 threads | "
          "PyTorch DDP (gloo) 2 x 1 thread |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average {results['machine']['load_average_at_start']} at the start, "
          f"{results['load_average_at_end']} at the end; written to {os.path.relpath(args.json, REPO)}")


if __name__ == "__main__":
    main()
