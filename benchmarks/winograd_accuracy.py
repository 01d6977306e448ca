"""Does Winograd change what a network learns?  Train the same run with im2col and with Winograd.

    python benchmarks/winograd_accuracy.py                      # VDSR and EDSR-baseline, 500 steps each
    python benchmarks/winograd_accuracy.py --models vdsr --iterations 100 --algorithms im2col winograd4
    python benchmarks/winograd_accuracy.py --algorithms im2col auto --patch-size edsr_baseline=24 --threads 1

For each model, the same training command (fixed seed, scale 2, T91, Set5 evaluated at the end) runs once
per algorithm in a fresh process with ``TINYSR_CONV`` set, and the script prints the final Set5 PSNR of
each run and the largest difference to im2col's.  The target (Lavin & Gray's float32 F(4x4,3x3) being
accurate enough for training): every difference within 0.05 dB.  Runs go to a temporary folder; the
results are written to ``benchmarks/results/winograd_accuracy.json``.  This is minutes of CPU per run,
not a unit test.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def final_psnr(run_dir):
    """The mean Set5 PSNR of the last evaluation in ``run_dir/history.json``."""
    history = json.loads((Path(run_dir) / "history.json").read_text())
    evals = history.get("eval") or history.get("evals") or []
    if not evals:
        raise RuntimeError(f"{run_dir}/history.json has no evaluation; keys: {sorted(history)}")
    last = evals[-1]
    for key in ("psnr", "PSNR", "mean_psnr"):
        if key in last:
            return float(last[key])
    raise RuntimeError(f"no PSNR in the last evaluation of {run_dir}/history.json: {last}")


def run(model, algorithm, iterations, seed, out, threads, patch_size=None):
    env = {**os.environ, "TINYSR_CONV": algorithm, "PYTHONPATH": str(REPO),
           "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    shared = REPO.parent / "shared" / "data"        # the workplace's copy of T91 and Set5, as the tests use
    if "TINYSR_DATA" not in env and shared.is_dir():
        env["TINYSR_DATA"] = str(shared)
    cmd = [sys.executable, "-m", "tinysr", "train", model, "--scale", "2", "--iterations", str(iterations),
           "--seed", str(seed), "--eval-every", str(iterations), "--checkpoint-every", str(iterations),
           "--out", str(out), "--fresh", "--no-progress"] + (["--patch-size", str(patch_size)] if patch_size else [])
    t0 = time.time()
    subprocess.run(cmd, env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return final_psnr(out), time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["vdsr", "edsr_baseline"])
    ap.add_argument("--algorithms", nargs="+", default=["im2col", "winograd4", "winograd2"],
                    help="TINYSR_CONV values; 'auto' is the per-layer choice every user gets")
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--patch-size", nargs="*", default=[], metavar="MODEL=SIZE",
                    help="input patch side per model (default: the recipe's), e.g. edsr_baseline=24")
    ap.add_argument("--json", default=str(HERE / "results" / "winograd_accuracy.json"))
    args = ap.parse_args()
    patches = {m: int(v) for m, v in (item.split("=") for item in args.patch_size)}
    results = {"iterations": args.iterations, "seed": args.seed, "threads": args.threads, "patch_size": patches,
               "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            row = {}
            for algorithm in args.algorithms:
                psnr, seconds = run(model, algorithm, args.iterations, args.seed, Path(tmp) / f"{model}-{algorithm}",
                                    args.threads, patches.get(model))
                row[algorithm] = {"set5_psnr": psnr, "seconds": seconds}
                print(f"{model:14} {algorithm:10} Set5 {psnr:.3f} dB  ({seconds:.0f} s)", flush=True)
            base = row.get("im2col", {}).get("set5_psnr")
            if base is not None:
                for algorithm, r in row.items():
                    r["diff_db"] = r["set5_psnr"] - base
            results["models"][model] = row
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    worst = max((abs(r.get("diff_db", 0)) for row in results["models"].values() for r in row.values()), default=0)
    print(f"largest |PSNR difference| to im2col: {worst:.3f} dB ({'within' if worst <= 0.05 else 'OVER'} 0.05 dB)")


if __name__ == "__main__":
    main()
