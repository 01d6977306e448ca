"""Score the public trained networks of ../shared/reference-weights and the rows the lessons compare them with.

    python lessons/results/measure_public.py            # everything missing from public_weights.json
    python lessons/results/measure_public.py --only edsr-8-x2 --datasets Set5 Set14

Writes ``lessons/results/public_weights.json`` after every cell: ``{row: {"label", "scale", "source",
"psnr_ssim": {dataset: [psnr, ssim]}, "seconds": {dataset: s}}}``, each cell measured with
``tinysr.evaluate(model, dataset, scale)`` (tinysr's protocol, replicate borders). Lessons 03-10 read it
for the Set14 and B100 columns that would take them minutes to recompute.
"""
import argparse
import json
import os
import time
from pathlib import Path

import tinysr
from tinysr.models import public

OUT = Path(__file__).with_name("public_weights.json")

#: row -> (label, scale, how to build it, datasets)
ROWS = {
    **{f"bicubic-x{s}": (f"Bicubic x{s}", s, lambda s=s: "bicubic", ("Set5", "Set14")) for s in (2, 3, 4)},
    **{f"{n}-x{s}": (f"{n.upper()} (tinysr's shipped {n}-x{s})", s, lambda n=n, s=s: tinysr.load(f"{n}-x{s}"),
                     ("Set5", "Set14")) for n in ("srcnn", "fsrcnn") for s in (2, 3, 4)},
    "vdsr-x3": ("VDSR (tinysr's shipped vdsr-x3)", 3, lambda: tinysr.load("vdsr-x3"), ("Set5", "Set14")),
    **{f"vdsr-authors-x{s}": (f"VDSR (authors' weights, x{s})", s,
                              lambda s=s: public.load("vdsr-authors", scale=s), ("Set5", "Set14")) for s in (2, 3, 4)},
    "drrn-b1u25-x3": ("DRRN B1U25 (public, x3)", 3, lambda: public.load("drrn-b1u25", scale=3), ("Set5", "Set14")),
    **{key: (e.label, e.scale, lambda key=key: public.load(key), ("Set5", "Set14", "B100"))
       for key, e in public.PUBLIC.items() if e.scale is not None},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="rows to measure (default: all)")
    ap.add_argument("--datasets", nargs="*", help="limit to these datasets")
    ap.add_argument("--out", default=str(OUT), help=f"the JSON file to complete (default {OUT.name} beside this script)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for key, (label, scale, make, sets) in ROWS.items():
        if args.only and key not in args.only:
            continue
        row = results.setdefault(key, {"label": label, "scale": scale, "psnr_ssim": {}, "seconds": {}})
        model = None
        for ds in sets:
            if (args.datasets and ds not in args.datasets) or ds in row["psnr_ssim"]:
                continue
            model = model or make()
            t = time.perf_counter()
            rep = tinysr.evaluate(model, ds, scale=scale)
            row["psnr_ssim"][ds] = [round(rep["psnr"], 3), round(rep["ssim"], 4)]
            row["seconds"][ds] = round(time.perf_counter() - t, 1)
            print(f"{key:<22} {ds:<6} {rep['psnr']:.3f} / {rep['ssim']:.4f}  ({row['seconds'][ds]} s)", flush=True)
            out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TINYSR_QUICK", "0")
    main()
