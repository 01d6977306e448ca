"""Peak memory of upscaling a 2000x2000 photo with tiling (issue 5, acceptance 3: under 1.5 GB on CPU).

    python benchmarks/upscale_memory.py                 # FSRCNN x3 and SRCNN x3, tile "auto"
    python benchmarks/upscale_memory.py --untiled       # also one pass without tiles, for contrast
    python benchmarks/upscale_memory.py --size 1000 --tile 128

Each configuration runs in a fresh subprocess, so the peak resident set size (``ru_maxrss``) belongs
to that run alone: Python, NumPy, Numba's compiled kernels, the 2000x2000x3 input (12 MB), the
6000x6000x3 uint8 output (108 MB) and whatever the upscaling needs on top.  The networks have their
initial (random) weights: memory does not depend on the values.  Results are printed and written to
``benchmarks/results/upscale_memory.json``.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
import numpy as np
import tinysr
from tinysr import models, nn

name, scale, size, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tile = None if tile == "none" else ("auto" if tile == "auto" else int(tile))
rng = np.random.default_rng(0)
# a photo-like input: smooth colour gradients plus noise (content does not change the memory)
yy, xx = np.mgrid[0:size, 0:size] / size
img = np.stack([yy, xx, (yy + xx) / 2], axis=2) * 200 + rng.integers(0, 40, (size, size, 3))
img = img.clip(0, 255).astype(np.uint8)
nn.init.seed(0)
net = models.build(name, scale=scale, **({"padding": "same", "padding_mode": "replicate"} if name == "srcnn" else {}))
tinysr.upscale(img[:64, :64], model=net, scale=scale, tile=None)        # compile the kernels first
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.time()
out = tinysr.upscale(img, model=net, scale=scale, tile=tile)
sec = time.time() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from tinysr.upscaling import auto_tile
print(json.dumps({"model": name, "scale": scale, "input": [size, size, 3], "output": list(out.shape),
                  "tile": tile if tile != "auto" else f"auto ({auto_tile(net, img, scale, 'auto')} px)",
                  "peak_rss_mb": peak / 1024, "rss_before_upscale_mb": base / 1024, "seconds": round(sec, 1)}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--tile", default="auto", help="tile side in input pixels, or 'auto'")
    ap.add_argument("--untiled", action="store_true", help="also run without tiles (slow, several GB)")
    ap.add_argument("--out", default=str(HERE / "results" / "upscale_memory.json"))
    args = ap.parse_args(argv)
    configs = [("fsrcnn", 3, args.tile), ("srcnn", 3, args.tile)]
    if args.untiled:
        configs.append(("fsrcnn", 3, "none"))
    rows = []
    for name, scale, tile in configs:
        r = subprocess.run([sys.executable, "-c", CHILD, name, str(scale), str(args.size), str(tile)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name} x{scale} {args.size}x{args.size} tile {row['tile']}: peak RSS {row['peak_rss_mb']:.0f} MB "
              f"(before the call {row['rss_before_upscale_mb']:.0f} MB), {row['seconds']} s")
    result = {"what": "peak resident memory of tinysr.upscale on a 2000x2000 RGB input (fresh process each)",
              "limit_mb": 1536, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
