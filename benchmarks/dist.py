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
would change).  PyTorch has no counterpart here: its ``DistributedDataParallel`` needs a process group
of its own, and the comparison this script is about is tinysr against itself with the cores split two
ways.

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
    from tinysr.train import Trainer

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


def run(cmd, threads):
    env = {**os.environ, "PYTHONPATH": str(REPO), "NUMBA_NUM_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
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
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
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
        results["models"][name] = {"global_batch": MODELS[name][3], "steps": steps, "1x2": one, "2x1": two}
        rows.append(f"| {name} | {MODELS[name][3]} | {one['patches_per_s']:.1f} | {two['patches_per_s']:.1f} | "
                    f"**{two['patches_per_s'] / one['patches_per_s']:.2f}x** | {100 * two['allreduce_share']:.1f}% | "
                    f"{two['bare_allreduce_ms']:.2f} ms ({4 * two['parameters'] / 2**20:.2f} MiB) |")
    results["load_average_at_end"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print("| model | global batch | 1 rank x 2 threads (patches/s) | 2 ranks x 1 thread (patches/s) | ratio | "
          "all-reduce share of a step (rank 0) | bare Allreduce of the gradients |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average {results['machine']['load_average_at_start']} at the start, "
          f"{results['load_average_at_end']} at the end; written to {os.path.relpath(args.json, REPO)}")


if __name__ == "__main__":
    main()
