"""Scoring a network under the papers' protocol: :func:`evaluate` and what it is made of.

::

    report = tinysr.evaluate("srcnn-x3", "Set14")           # per image and mean PSNR/SSIM
    report = tinysr.evaluate(model, "Set5", scale=3, self_ensemble=True)
    print(tinysr.metrics.format_report(report))

Each test image goes through :func:`tinysr.data.protocol.prepare` (the one place that turns an HR image
into the network input and the reference, per input convention), through the network with
:func:`tinysr.infer.predict` (borders, tiles, self-ensemble), and into :mod:`tinysr.metrics` (Y PSNR and
SSIM with ``scale`` pixels shaved).  :func:`run_eval` is that loop on prepared images, which the training
loop reuses for its periodic evaluations.

The shipped weights are scored here too: :func:`ship_weights` adds a file to ``tinysr/weights/``
(:mod:`tinysr.shipped`) and records what it scores *as shipped*, and :func:`results_table` prints the
table of ``docs/results.md`` from those records.
"""
from __future__ import annotations

import math
import os
import platform

import numpy as np

from . import checkpoint, options
from .models.common import INPUT_CONVENTIONS, SRModel
from .shipped import (load_checkpoint_file, record_shipped, resolve_model, shipped_weights, stage_weights,
                      training_curve)

__all__ = ["input_convention", "check_scale", "check_eval_size", "prepare_eval", "run_eval",
           "evaluate", "baselines", "describe", "results_table", "ship_weights"]

def input_convention(model):
    """What ``model`` must be fed: ``"bicubic-y"``, ``"lr-y"`` or ``"lr-rgb"`` (its ``input_convention``).

    Every zoo network answers for itself; a custom Module must set the attribute, or is refused here
    in one sentence before any image is read.
    """
    conv = getattr(model, "input_convention", None)
    if conv not in INPUT_CONVENTIONS:
        raise ValueError(f"{type(model).__name__} has no input_convention ('bicubic-y', 'lr-y' or 'lr-rgb'); "
                         "set model.input_convention to say what it is fed")
    return conv


def check_scale(model, scale):
    """The SR factor to run ``model`` at: ``scale``, or the model's own when ``scale`` is None.

    A single-scale network refuses another factor in one sentence; a network that serves several
    (``model.scales``, MDSR's ``set_scale``) is switched to ``scale``.
    """
    ms = getattr(model, "scale", None)
    if scale is None:
        if ms is None:
            raise ValueError("pass scale=: the model does not say which scale it was trained for")
        return int(ms)
    scale = int(scale)
    if ms is not None and int(ms) != scale and not hasattr(model, "scales"):
        raise ValueError(f"this model was trained for x{ms}, not x{scale}; pass scale={ms} or load the x{scale} "
                         "weights")
    if hasattr(model, "set_scale") and int(ms or 0) != scale:
        model.set_scale(scale)          # MDSR: route through that scale's pre-processing and upsampler
    return scale


def check_eval_size(hr, scale, name):
    """An HR test image must survive modcrop, the shave of ``scale`` px and SSIM's 11x11 window."""
    from .data.io import check_size
    return check_size(hr, scale, name, min_lr=math.ceil((2 * scale + 11) / scale))


def prepare_eval(hr, scale, convention):
    """``(network input, reference)`` for one uint8 HR image under the protocol.

    The input is NCHW float32 in ``[0, 1]``: ``(1, 1, h, w)`` for the Y conventions, ``(1, 3, h, w)`` for
    ``"lr-rgb"`` (``h, w`` the LR size, or the HR size for ``"bicubic-y"``); the reference is what the
    output is scored against (:func:`tinysr.data.protocol.prepare`).
    """
    from .data.protocol import prepare
    net_in, ref = prepare(hr, scale, convention)
    if convention == "lr-rgb":
        return net_in.astype(np.float32).transpose(2, 0, 1)[None] / 255.0, ref
    return net_in[None, None].astype(np.float32), ref


def run_eval(model, items, scale, *, tile=None, self_ensemble=False, with_ssim=True, method="model",
             dataset="images", device=None, border="replicate", progress=False):
    """Score ``model`` on prepared ``(name, net_input, reference)`` items (:func:`prepare_eval`).

    The model's whole-image twin (:meth:`~tinysr.models.SRModel.inference_model`) runs on each input
    (:func:`tinysr.infer.predict`); its output is clipped to ``[0, 1]`` and scored on Y with ``scale``
    pixels shaved.  Returns the report :func:`evaluate` describes.
    """
    from . import infer, metrics
    net = model.inference_model() if isinstance(model, SRModel) else model     # a custom Module runs as it is
    rows = []
    if progress:
        # a deep network takes minutes to hours on B100 on a CPU: show how far it has got
        from tqdm.auto import tqdm
        items = tqdm(items, desc=f"{dataset} x{scale}", unit="image", leave=False)
    for name, net_in, ref in items:
        out = infer.predict(net, net_in, tile=tile, self_ensemble=self_ensemble, device=device, border=border)[0]
        out = np.clip(out.transpose(1, 2, 0) if out.shape[0] == 3 else out[0], 0.0, 1.0)
        if out.shape[:2] != ref.shape[:2]:
            raise ValueError(f"the model's output for {name} is {out.shape[1]}x{out.shape[0]} but the reference is "
                             f"{ref.shape[1]}x{ref.shape[0]}; is the model for x{scale}?")
        row = {"name": name, "psnr": metrics.psnr(out, ref, scale)}
        if with_ssim:
            row["ssim"] = metrics.ssim(out, ref, scale)
        rows.append(row)
    rep = {"method": method, "dataset": dataset, "scale": int(scale), "channel": "y", "border": int(scale),
           "protocol": metrics.protocol(scale), "images": rows, "self_ensemble": bool(self_ensemble),
           "psnr": float(np.mean([r["psnr"] for r in rows])) if rows else float("nan")}
    if with_ssim:
        rep["ssim"] = float(np.mean([r["ssim"] for r in rows])) if rows else float("nan")
    return rep


def evaluate(model, dataset="Set5", scale=None, self_ensemble=False, *, split=None, tile=None, device=None,
             ssim=True, border="replicate", progress=False):
    """PSNR/SSIM of a model on a test set under the papers' protocol (see :mod:`tinysr.metrics`).

    Parameters
    ----------
    model : a Module, a shipped name (``"srcnn-x3"``), a checkpoint path, or ``"bicubic"``
        (the baseline every table starts with).
    dataset : ``"Set5"``, ``"Set14"``, ``"B100"``, ``"builtin"`` ..., a folder of images, or a list of
        uint8 HR arrays.
    scale : the SR factor (default: the model's own).
    self_ensemble : average the 8 flips/rotations (Timofte et al. 2016): ~+0.1 dB, 8x the time.
    tile : run in tiles of this many input pixels (same result, bounded memory).
    border : how the image is extended before a zero-padded network sees it (:func:`tinysr.infer.predict`):
        ``"replicate"`` (default: edge pixels, so no output pixel sees the zeros) or ``"zeros"`` (the
        network's own padding only, as most authors' test scripts run it; cheaper for deep networks).
    progress : show a progress bar over the images (tqdm, cleared when done).

    The pipeline per image (the SRCNN/VDSR scripts'): HR modcropped to a multiple of ``scale``;
    ``Y = rgb2ycbcr(HR)`` rounded to 8 bits; ``LR = imresize(Y/255, 1/s)`` in double; the network sees
    LR (``lr-y``) or ``imresize(LR, s)`` (``bicubic-y``); RGB networks see MATLAB's uint8 bicubic LR of
    the RGB image.  The output is clipped, rounded to 8 bits and compared on Y with ``scale`` pixels
    shaved from each border.  A valid-convolution SRCNN runs with replicate 'same' padding
    (:meth:`~tinysr.models.SRModel.inference_model`), as the authors evaluate it.

    Returns a dict: ``method``, ``dataset``, ``scale``, ``protocol`` (the one-line description to print
    with every number), ``images`` (``[{"name", "psnr", "ssim"}]``) and the means ``psnr``, ``ssim``.
    Print it with :func:`tinysr.metrics.format_report`.
    """
    from . import metrics
    from .data.datasets import named_images
    scale, tile = options.check("scale", scale), options.check("tile", tile)
    if tile in ("auto", "off"):
        tile = None          # test images are small: one pass
    if isinstance(model, str) and model.lower() == "bicubic":
        if scale is None:
            raise ValueError("pass scale= to evaluate bicubic")
        label, items = named_images(dataset, split)
        items = [(n, check_eval_size(hr, int(scale), n)) for n, hr in items]
        rep = metrics.evaluate_bicubic(items, int(scale))
        rep["dataset"] = label
        return rep
    method = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    if isinstance(model, (str, os.PathLike)):
        model = resolve_model(model, scale)
        method = getattr(model, "tinysr_meta", {}).get("label", method)
    scale = check_scale(model, scale)
    conv = input_convention(model)
    label, images = named_images(dataset, split)
    items = [(name, *prepare_eval(check_eval_size(hr, scale, name), scale, conv)) for name, hr in images]
    return run_eval(model, items, scale, tile=tile, self_ensemble=self_ensemble, with_ssim=ssim,
                    method=method + (" +self-ensemble" if self_ensemble else ""), dataset=label, device=device,
                    border=border, progress=progress)


def baselines(eval_data, name, scale, log):
    """What to read a run's final PSNR against: bicubic on the same images (``bicubic_psnr``) and how long
    the shipped weights of this network trained (``shipped_steps``: ``(name, steps)`` or None) -- a few
    hundred steps is far from either, which the final line should say rather than leave to guesswork."""
    bic = evaluate("bicubic", eval_data, scale=scale)["psnr"]
    shipped = [(k, v["steps"]) for k, v in shipped_weights().items()
               if v.get("model") == name and v.get("scale") == scale and v.get("steps")]
    log(f"==> bicubic on the same images: {bic:.3f} dB" + (
        f"; the shipped {shipped[0][0]} trained {shipped[0][1]:,} steps" if shipped else ""))
    return {"bicubic_psnr": bic, "shipped_steps": shipped[0] if shipped else None}


def describe(data):
    """A short JSON-able name for a data argument (names and folders as given, arrays as '<array>')."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, np.ndarray):
        return f"<array {data.shape}>"
    if data and all(isinstance(d, np.ndarray) for d in data):
        return f"<{len(data)} arrays>"           # not one entry per image: a log line, not a listing
    if data and all(isinstance(d, (tuple, list)) and len(d) == 2 and isinstance(d[1], np.ndarray) for d in data):
        names = ", ".join(str(d[0]) for d in data[:6]) + (", ..." if len(data) > 6 else "")
        return f"<{len(data)} image{'s' * (len(data) != 1)}: {names}>"   # (name, image) pairs, as load(names=True)
    return [describe(d) for d in data]


def results_table(paper=None):
    """The "weights trained by tinysr" table of ``docs/results.md`` as Markdown, from ``tinysr/weights/manifest.json``.

    One row per shipped weight: its Set5 / Set14 / B100 PSNR (and SSIM) under the protocol, the paper's
    number beside it when ``paper`` (``{name: {dataset: psnr}}``) has one, the training steps and time,
    and the command that reproduces it.  Maintainers paste the output into ``docs/results.md``; a test checks
    that every row's Set5 PSNR and command appear there.
    """
    paper = paper or {}
    lines = ["| weights | Set5 | Set14 | B100 | paper (Set5 / Set14) | steps, training time | reproduce with |",
             "|---|---|---|---|---|---|---|"]
    for name, e in sorted(shipped_weights().items()):
        cells = []
        for ds in ("Set5", "Set14", "B100"):
            p, q = e["psnr"].get(ds), e.get("ssim", {}).get(ds)
            cells.append("-" if p is None else f"{p:.2f} / {q:.4f}" if q is not None else f"{p:.2f}")
        ref = paper.get(name, {})
        ref_s = " / ".join("-" if ref.get(ds) is None else f"{ref[ds]:.2f}" for ds in ("Set5", "Set14"))
        mins = e["train_seconds"] / 60
        lines.append(f"| `{name}` | {' | '.join(cells)} | {ref_s} | {e['steps']:,}, {mins:.0f} min | "
                     f"`{e['command']}` |")
    return "\n".join(lines)


def ship_weights(checkpoint_path, name, *, command, train_seconds=None, machine=None,
                 datasets=("Set5", "Set14", "B100"), note="", dtype="float32"):
    """Maintainer tool: copy a checkpoint's weights into ``tinysr/weights/<name>.npz`` and record them.

    The weights are saved without optimiser state or history (tens of KB for SRCNN), in ``dtype``
    (``"float16"`` for the larger networks; :func:`~tinysr.shipped.load` returns float32), evaluated
    *as shipped* under the protocol on ``datasets``, and ``manifest.json`` gets the entry that
    :func:`~tinysr.shipped.load`, :func:`~tinysr.shipped.shipped_weights` and the results table of
    ``docs/results.md`` rely on: model, build arguments, scale, the exact reproducing ``command``, the
    training time and the ``machine`` it was measured on (default: this process's CPU count and
    architecture), the measured PSNR/SSIM, and the run's ``curve`` of Set5 PSNR against CPU hours
    (:func:`~tinysr.shipped.training_curve`, drawn by ``docs/training_cost.py``).  A file over the package's limits
    (:func:`tinysr.shipped.check_ship_size`: 4 MB a file, 20 MB in all) is refused in one sentence and
    nothing is written.  ``train_seconds`` defaults to the run's own training seconds (its checkpoint's
    history) plus those the weights it started from had cost when it started.  Returns the entry.
    """
    if train_seconds is None:
        _, _, meta = checkpoint.load(checkpoint_path)
        start = meta.get("init_from") or {}
        if start and "train_seconds" not in start:
            raise ValueError(f"{checkpoint_path} started from {start.get('weights')!r} without recording what those "
                             "weights cost: give train_seconds")
        train_seconds = float(meta.get("history", {}).get("seconds", 0.0)) + float(start.get("train_seconds", 0.0))
    path, keep, history = stage_weights(checkpoint_path, name, dtype)
    curve = training_curve(history, keep.get("init_from"), scale=keep["scale"])   # before this entry replaces one
    state_model, _ = load_checkpoint_file(path)      # evaluate what users will load, rounding included
    entry = {"file": f"{name}.npz", "dtype": dtype, "model": keep["model"], "model_kwargs": keep["model_kwargs"],
             "scale": keep["scale"], "recipe": keep["recipe"], "steps": keep["step"], "seed": keep["seed"],
             "data": keep["data"], "command": command, "train_seconds": round(float(train_seconds)),
             "machine": machine or f"{os.cpu_count()}-core {platform.machine()} CPU", "note": note,
             "psnr": {}, "ssim": {}, "curve": curve}
    if keep.get("init_from"):
        entry["init_from"] = keep["init_from"]
    for ds in datasets:
        rep = evaluate(state_model, ds, scale=keep["scale"])
        entry["psnr"][rep["dataset"]], entry["ssim"][rep["dataset"]] = round(rep["psnr"], 3), round(rep["ssim"], 4)
        entry["protocol"] = rep["protocol"]
    record_shipped(name, entry)
    return entry


