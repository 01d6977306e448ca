"""The equal-budget leaderboard: every network trained by tinysr for the *same CPU time* on the same data.

The papers' tables compare networks that were each trained for as long as their authors could afford
(SRCNN for days of SGD, EDSR on DIV2K for days on a GPU).  Here every method gets the same budget of
wall-clock seconds of training on one machine, the fast recipe (:data:`tinysr.recipes.FAST_RECIPES`), the
same data (T91 + BSD200) and seed, and is then scored on Set5/Set14/B100 under the protocol.  What it
shows: which design buys the most PSNR per CPU-second at a small budget.  What it does not show: how
the methods rank when each is trained to convergence (the papers' numbers, printed beside ours) --
a big network that is far from converged loses here and wins there.

Two steps, so that a re-run is reproducible step for step:

1. :func:`plan` measures each method's seconds per training step on the machine it runs on and turns the budget
   into a number of steps (written to ``plan.json``, with the machine and the date);
2. :func:`run` trains each method for exactly its planned steps (seeded; an interrupted run resumes,
   see :func:`tinysr.train`), evaluates it, times its inference and writes ``leaderboard.json``.

From the shell::

    python -m tinysr.leaderboard plan --budget-minutes 20 --out runs/leaderboard
    python -m tinysr.leaderboard run --out runs/leaderboard
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

#: (label, registry name, scales, build arguments).  Every (network, scale) row gets the whole budget, so
#: MDSR is trained one scale at a time here (``tinysr.train("mdsr", scale=(2, 3, 4))`` is its own way).
ENTRIES = [
    ("SRCNN 9-1-5", "srcnn", (3, 4), {}),
    ("FSRCNN", "fsrcnn", (3, 4), {}),
    ("VDSR", "vdsr", (3, 4), {}),
    ("DRCN", "drcn", (3, 4), {}),
    ("RED30", "red30", (3, 4), {}),
    ("DRRN B1U25", "drrn", (3, 4), {}),
    ("SRDenseNet", "srdensenet", (4,), {}),
    ("SRResNet", "srresnet", (4,), {}),
    ("EDSR-baseline", "edsr_baseline", (3, 4), {}),
    ("MDSR", "mdsr", (3, 4), {}),
]

#: The papers' rows in ``paper_psnr.json`` for each registry name (None: no published row).
PAPER_ROWS = {"srcnn": "SRCNN-915 (ECCV14, 91 images)", "fsrcnn": "FSRCNN (ECCV16 paper, PSNR only)",
              "vdsr": "VDSR", "drcn": "DRCN", "red30": "RED30", "drrn": "DRRN-B1U25", "srdensenet": "SRDenseNet",
              "srresnet": "SRResNet (as listed in EDSR table)", "edsr_baseline": None, "mdsr": "MDSR",
              "bicubic": "Bicubic"}

DATA = ["T91", "BSD200"]
TEST_SETS = ("Set5", "Set14", "B100")


def _key(name, scale):
    return f"{name}-x{scale}"


def machine():
    """A one-line description of the machine (CPU model, cores, Python, NumPy) for the tables."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:                    # not Linux: the platform module's name is all there is
        names = []
    cpu = names[0] if names else (platform.processor() or platform.machine())
    from tinysr_kernels.cpu import threads
    threads.configure()
    return (f"{cpu}, {os.cpu_count()} cores ({threads.get_num_threads()} used), "
            f"Python {platform.python_version()}, NumPy {np.__version__}")


def _train(name, scale, iterations, *, data, out_dir, model_kwargs, seed, eval_data=None, progress=False,
           log=None, device="cpu"):
    from .fit import train
    return train(name, scale=scale, data=data, eval_data=eval_data, iterations=iterations, seed=seed,
                        out_dir=out_dir, model_kwargs=dict(model_kwargs), progress=progress, device=device,
                        log=log or (lambda m: None), eval_every=max(iterations, 1),
                        checkpoint_every=max(min(1000, iterations // 10), 1))


def seconds_per_step(name, scale, *, data=None, model_kwargs=None, steps=3, seed=0):
    """Median seconds of one training step of ``name`` (fast recipe) on the machine it runs on.

    After a warm-up run, runs 1 step and ``1 + steps`` steps, and divides the difference of their training-loop times by
    ``steps``: data loading happens before the loop, and the first step (compilation, buffers) and the
    final checkpoint are in both, so none of them is counted.
    """
    from .fit import train
    data = DATA if data is None else data
    times = []
    for n in (1, 1, 1 + steps):          # the first run only loads the kernels into this process
        with tempfile.TemporaryDirectory() as tmp:
            r = train(name, scale=scale, data=data, eval_data=None, iterations=n, seed=seed, out_dir=tmp,
                             model_kwargs=dict(model_kwargs or {}), progress=False, log=lambda m: None,
                             checkpoint_every=10 ** 9)
            times.append(r.history["seconds"])
    one, more = times[1], times[2]
    if more <= one:
        # a busy machine can make the longer run look no slower: fall back to the plain average, which
        # counts the first step's overhead too (an overestimate, never zero)
        return more / (1 + steps)
    return (more - one) / steps


def plan(budget_s, *, entries=None, data=None, steps=3, out=None, log=print):
    """Turn a budget of training seconds per method into a number of steps per (method, scale).

    Returns (and writes to ``out/plan.json`` when ``out`` is given) a dict with the budget, the machine,
    the date and, per ``"<name>-x<scale>"``, the label, the measured seconds per step and the steps.
    """
    entries = ENTRIES if entries is None else entries
    data = DATA if data is None else data
    rows = {}
    for label, name, scales, kwargs in entries:
        for s in scales:
            sps = seconds_per_step(name, s, data=data, model_kwargs=kwargs, steps=steps)
            its = max(int(budget_s / sps), 1)
            rows[_key(name, s)] = {"label": label, "name": name, "scale": s, "model_kwargs": kwargs,
                                   "seconds_per_step": sps, "iterations": its}
            log(f"  {label} x{s}: {sps * 1000:.0f} ms a step -> {its:,} steps in {budget_s:.0f} s")
    result = {"budget_seconds": float(budget_s), "machine": machine(), "date": _dt.date.today().isoformat(),
              "data": _describe(data), "recipe": "fast", "entries": rows}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        _write_json(Path(out) / "plan.json", result)
    return result


def inference_seconds_per_megapixel(model, scale, hr_size=256, repeats=3):
    """Median seconds to produce one megapixel of output with ``model`` (CPU, no tiling)."""
    from .autograd import no_grad, tensor
    from .evaluation import input_convention
    conv = input_convention(model)
    side = hr_size if conv == "bicubic-y" else hr_size // scale
    ch = 3 if conv == "lr-rgb" else 1
    x = tensor(np.random.default_rng(0).random((1, ch, side, side)).astype(np.float32))
    model.eval()
    times = []
    with no_grad():
        t = time.perf_counter()
        model(x)                                   # compile / warm the buffers first
        if time.perf_counter() - t > 5:
            repeats = 1                            # DRCN: ~20M multiply-adds a pixel, one timing is plenty
        for _ in range(repeats):
            t = time.perf_counter()
            y = model(x)
            times.append(time.perf_counter() - t)
    pixels = y.shape[-1] * y.shape[-2]
    return statistics.median(times) / (pixels / 1e6)


def _describe(data):
    from .evaluation import describe
    d = describe(data)
    return d if isinstance(d, list) else [d]


def _ordered(datasets):
    # the protocol's sets first, in their usual order, then any other folder a run scored
    ds = list(dict.fromkeys(datasets))
    return [d for d in TEST_SETS if d in ds] + [d for d in ds if d not in TEST_SETS]


def run(out, *, plan_data=None, data=None, datasets=TEST_SETS, only=None, device="cpu", progress=True, log=print):
    """Train and score every entry of ``out/plan.json`` (or ``plan_data``); returns the results dict.

    Results are written to ``out/leaderboard.json`` after every method, so an interrupted run keeps what
    it finished; running again skips finished methods and resumes the unfinished one from its
    checkpoint.  A finished method that lacks a score on one of ``datasets`` is scored on it from its
    final checkpoint, without training again: a run scored on Set5 can be extended to Set14 and B100
    later, or on another machine.  ``only`` restricts the run to some ``"<name>-x<scale>"`` keys;
    ``data`` replaces the plan's training data (for images given as arrays, which a plan file cannot hold).

    ``device="cuda"`` trains and scores on a GPU, for exactly the steps the CPU plan gave each method: the
    budget stays CPU time, only the wall clock shrinks (DRCN alone scores at ~10 CPU-minutes a megapixel).
    The network's inference time is still measured on the CPU, and each row records its device.
    """
    from . import backend, metrics
    from .evaluation import evaluate
    from .shipped import load
    device = backend.check_device(device)          # a missing GPU fails before any training
    out = Path(out)
    if plan_data is None:
        path = out / "plan.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: make the plan first "
                                    f"(python -m tinysr.leaderboard plan --budget-minutes N --out {out})")
        plan_data = json.loads(path.read_text())
    res_path = out / "leaderboard.json"
    results = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results.update({k: plan_data[k] for k in ("budget_seconds", "machine", "date", "data", "recipe")})
    results["datasets"] = _ordered([*results.get("datasets", []), *datasets])
    rows = results.setdefault("rows", {})
    for key, e in plan_data["entries"].items():
        if only is not None and key not in only:
            continue
        done = key in rows and rows[key].get("iterations") == e["iterations"]
        missing = [ds for ds in datasets if not done or ds not in rows[key]["psnr_ssim"]]
        if done and not missing:
            log(f"  {e['label']} x{e['scale']}: done before, skipped")
            continue
        t = time.time()
        if done:
            log(f"==> {e['label']} x{e['scale']}: trained before; scoring it on {', '.join(missing)}")
        else:
            log(f"==> {e['label']} x{e['scale']}: {e['iterations']:,} steps")
        final = out / key / f"step_{int(e['iterations']):07d}.npz"
        if done and final.is_file():
            # scoring only: the finished network is its final checkpoint, no training data needed
            model = load(final, device=device)
        else:
            # a missing checkpoint retrains the same network (the plan fixes the steps, the seed everything else)
            r = _train(e["name"], e["scale"], e["iterations"], data=plan_data["data"] if data is None else data,
                       out_dir=out / key, model_kwargs=e["model_kwargs"], seed=0, progress=progress, log=log,
                       device=device)
            model = r.model
        scores = rows[key]["psnr_ssim"] if done else {}
        for ds in missing:
            rep = evaluate(model, ds, scale=e["scale"], device=device, progress=progress)
            scores[ds] = [round(rep["psnr"], 3), round(rep["ssim"], 4)]
            log(f"     {ds}: {rep['psnr']:.3f} dB / {rep['ssim']:.4f}")
        if done:
            rows[key].setdefault("scored_on", {}).update({ds: device for ds in missing})
        else:
            r.model.to("cpu")                      # inference time is a CPU figure, whatever trained it
            rows[key] = {**e, "psnr_ssim": scores, "parameters": int(r.model.num_parameters()),
                         "inference_s_per_megapixel": inference_seconds_per_megapixel(r.model, e["scale"]),
                         "train_wall_seconds": time.time() - t, "checkpoint": str(r.checkpoint),
                         "protocol": metrics.protocol(e["scale"]), "device": device}
        _write_json(res_path, results)
    score_bicubic(results, datasets)
    _write_json(res_path, results)
    return results


def score_bicubic(results, datasets=None):
    """Add bicubic interpolation's scores, at every scale of ``results``, as ``results["bicubic"]``.

    The floor every row should clear: a network that scores below it after its budget has not yet
    learned to do better than its own input (VDSR-style networks) or than the interpolation it replaces.
    Scores already there are kept; returns ``results``.
    """
    from .evaluation import evaluate
    datasets = tuple(results.get("datasets", TEST_SETS)) if datasets is None else tuple(datasets)
    floor = results.setdefault("bicubic", {})
    for s in sorted({r["scale"] for r in results["rows"].values()}):
        cell = floor.setdefault(f"x{s}", {})
        for ds in datasets:
            if ds not in cell:
                rep = evaluate("bicubic", ds, scale=s)
                cell[ds] = [round(rep["psnr"], 3), round(rep["ssim"], 4)]
    return results


def _paper_table(paper_json):
    # ``paper_psnr.json`` given as its path or as its already-loaded contents
    return paper_json if isinstance(paper_json, dict) else json.loads(Path(paper_json).read_text())


def paper_numbers(paper_json, name, dataset, scale):
    """The published ``(psnr, ssim)`` of ``name`` from ``paper_psnr.json`` (None when it has none)."""
    row = PAPER_ROWS.get(name)
    if row is None:
        return None
    table = _paper_table(paper_json)
    cell = table.get(row, {}).get(dataset, {}).get(f"x{scale}")
    return tuple(cell) if cell else None


def format_table(results, paper_json=None, datasets=None):
    """The leaderboard as a Markdown table, best PSNR on the first test set first within each scale.

    ``paper_json``: the path of ``paper_psnr.json`` or its contents, for a column of the papers' Set5 PSNR.

    ``datasets`` defaults to the test sets the run scored (``results["datasets"]``).
    """
    datasets = tuple(results.get("datasets", TEST_SETS)) if datasets is None else tuple(datasets)
    paper = _paper_table(paper_json) if paper_json is not None else None
    b = results["budget_seconds"]
    budget = f"{b / 60:.0f} min" if b >= 600 else f"{b / 60:.2g} min" if b >= 60 else f"{b:.2g} s"
    head = (f"Budget: {budget} of training per method on {results['machine']} "
            f"({results['date']}); data {', '.join(results['data'])}; recipe {results['recipe']}; PSNR / SSIM on Y.")
    gpu = sorted({r.get("device", "cpu") for r in results["rows"].values()} - {"cpu"})
    if gpu:
        head += (f" Trained for the CPU plan's steps on {', '.join(gpu)} (rows marked *); inference times are "
                 "CPU times.")
    cols = ["method", "scale", "steps", "parameters", "s / MP (CPU)"] + list(datasets)
    if paper:
        cols.append("paper (Set5)")
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows = list(results["rows"].values())
    for key, scores in results.get("bicubic", {}).items():
        rows.append({"label": "Bicubic (no training)", "name": "bicubic", "scale": int(key[1:]), "psnr_ssim": scores})

    def first_score(r):
        # a row not yet scored on the first set sorts last within its scale
        cell = r["psnr_ssim"].get(datasets[0]) if datasets else None
        return -cell[0] if cell else float("inf")

    rows.sort(key=lambda r: (r["scale"], first_score(r)))
    for r in rows:
        trained = r["name"] != "bicubic"
        mark = "*" if r.get("device", "cpu") != "cpu" else ""
        cells = [r["label"] + mark, f"x{r['scale']}", f"{r['iterations']:,}" if trained else "-",
                 f"{r['parameters']:,}" if trained else "0",
                 f"{r['inference_s_per_megapixel']:.2f}" if trained else "-"]
        cells += [f"{r['psnr_ssim'][d][0]:.2f} / {r['psnr_ssim'][d][1]:.4f}" if d in r["psnr_ssim"] else "-"
                  for d in datasets]
        if paper:
            p = paper_numbers(paper, r["name"], "Set5", r["scale"])
            cells.append(f"{p[0]:.2f}" if p else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_json(path, obj):
    # atomic: a killed run never leaves half a file behind
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tinysr.leaderboard", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="measure each method's step time and fix its number of steps")
    p.add_argument("--budget-minutes", type=float, required=True)
    p.add_argument("--out", default="runs/leaderboard")
    r = sub.add_parser("run", help="train and score every planned method (resumes)")
    r.add_argument("--out", default="runs/leaderboard")
    r.add_argument("--plan", help="a plan file to follow instead of OUT/plan.json (e.g. the committed "
                                  "lessons/results/leaderboard_plan.json, to repeat that run step for step)")
    r.add_argument("--only", nargs="*", help="e.g. srcnn-x3 fsrcnn-x4")
    r.add_argument("--datasets", nargs="+", default=list(TEST_SETS),
                   help="test sets to score on (default: Set5 Set14 B100; the deep HR-size networks take "
                        "hours on B100 on a laptop CPU). Finished methods are scored on the sets they lack "
                        "from their checkpoints, without training again")
    r.add_argument("--paper", help="paper_psnr.json, for the table's paper column")
    r.add_argument("--device", default="cpu", help="cpu (default) or cuda: train for the plan's steps and score "
                                                   "on a GPU (inference time is still measured on the CPU)")
    args = ap.parse_args(argv)
    if args.cmd == "plan":
        plan(args.budget_minutes * 60, out=args.out)
    else:
        plan_data = json.loads(Path(args.plan).read_text()) if args.plan else None
        res = run(args.out, plan_data=plan_data, only=args.only, datasets=args.datasets, device=args.device)
        print(format_table(res, args.paper))


if __name__ == "__main__":
    main()
