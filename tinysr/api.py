"""The four calls a user meets first: :func:`train`, :func:`evaluate`, :func:`upscale` and :func:`load`.

::

    import tinysr
    result = tinysr.train("srcnn", scale=3, iterations=2000)      # patches, Adam, checkpoints, PSNR
    print(result.metrics["psnr"])                                  # Set5, under the papers' protocol
    report = tinysr.evaluate(result.model, "Set14", scale=3)       # per image and mean PSNR/SSIM
    sr = tinysr.upscale("photo.png", model=result.model, scale=3)  # uint8 (3H, 3W, 3)
    model = tinysr.load("runs/srcnn-x3-fast-seed0/step_0002000.npz")

Each is a thin layer over the pieces below it: the registry and its recipes (:mod:`tinysr.models`),
the data pipeline (:mod:`tinysr.data`), the training loop (:class:`tinysr.trainer.Trainer`: atomic
checkpoints, exact resume, NaN guard), tiled inference (:mod:`tinysr.infer`) and the protocol
(:mod:`tinysr.metrics`).  What this file adds is the *glue a paper leaves implicit*: which patches a
network is trained on, how its optimiser and schedule are set up, and how it is evaluated.

Recipes
-------
``recipe="paper"`` follows the paper's training section (``tinysr.models.get_spec(name).recipe``):
SRCNN is plain SGD with momentum at 1e-4 (1e-5 for the last layer) on 33x33 sub-images cut every 14
pixels -- about 8e8 back-propagations in the paper, days on a CPU.  ``recipe="fast"`` (the default)
is tinysr's CPU-friendly recipe for the same network: Adam, a larger learning rate with a cosine
decay, random crops with the x8 flips/rotations, and far fewer steps (see :data:`FAST_RECIPES`, where
each choice is explained).  Both keep the paper's architecture, loss and data.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from . import __version__, backend, checkpoint, options
from .models.registry import TrainingRecipe

__all__ = ["train", "evaluate", "upscale", "load", "compare", "TrainResult", "FAST_RECIPES", "shipped_weights",
           "save_weights", "ship_weights", "results_table", "training_sampler", "make_optimizer", "WEIGHTS_DIR"]

#: Where the weights that tinysr trained itself live (``<name>.npz`` + ``manifest.json``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_PRE = ("vdsr", "drcn", "red30", "drrn")

#: tinysr's CPU-friendly recipes (``recipe="fast"``).  Patch sizes are *input* pixels (LR for networks
#: that upsample themselves); ``patch_size`` may be a ``{scale: size}`` dict.  Why each choice:
#:
#: * **Adam** instead of SGD: Adam scales each parameter's step by its own gradient history, so the
#:   tiny N(0, 0.001^2) initialisation of SRCNN's and FSRCNN's last layers does not stall training
#:   the way it does with plain SGD (the reason SRCNN needed 1e-5 for its last layer and 8e8 steps).
#: * **cosine decay** of the learning rate to 0 over the run: a large rate early, a small one to
#:   settle at the end, with no plateau detection to tune.
#: * **random crops with the 8 flips/rotations** instead of a fixed grid of sub-images: the same
#:   images, but a new patch every time, which 91 images badly need.
#: * SRCNN sees **centred** intensities (``offset=0.5``: it computes ``f(x - 0.5) + 0.5``) and the rate
#:   **warms up** over 500 steps: with all-positive inputs Adam's first steps drove 39 of the 64 first-layer
#:   filters permanently negative (dead ReLUs) and training stalled at 31.45 dB after 20,000 steps; centred,
#:   every filter stays alive and 1,500 steps already give 31.5 dB.  ``SRCNN.fold_offset_`` turns the
#:   result into the paper's exact network.
#: * SRCNN keeps the paper's **valid** convolutions (33x33 input -> 21x21 label centre): it is 1.7x
#:   cheaper than 'same' padding per patch and never learns from zero-padded borders; evaluation then
#:   runs the trained weights with replicate 'same' padding, as the authors' test code does.
FAST_RECIPES = {
    "srcnn": TrainingRecipe(
        data="T91", patch_size=33, label_size=21, batch_size=64, optimizer="adam", lr=1e-3, betas=(0.9, 0.999),
        loss="mse", iterations=20_000, lr_schedule={"type": "cosine", "warmup": 500}, augment=("flip", "rot90"),
        model_kwargs={"offset": 0.5},
        notes="valid convolutions, label = centre of the HR crop; random 33x33 crops of the bicubic-upsampled Y; "
              "centred intensities (offset 0.5) and a 500-step warm-up keep every first-layer filter alive"),
    "fsrcnn": TrainingRecipe(
        data="T91 (add BSD200 with data=['T91', 'BSD200'] in place of the unavailable General-100)",
        patch_size={2: 24, 3: 16, 4: 12}, batch_size=32, optimizer="adam", lr=1e-3, betas=(0.9, 0.999),
        loss="mse", iterations=20_000, lr_schedule={"type": "cosine", "warmup": 500},
        augment=("scale", "flip", "rot90"), model_kwargs={"offset": 0.5},
        notes="LR crops (HR 48x48) so that zero-padded borders are a small part of each patch; the paper's "
              "scale augmentation (0.9..0.6)"),
    **{name: TrainingRecipe(
        data="T91", patch_size=41, batch_size=16, optimizer="adam", lr=1e-4, betas=(0.9, 0.999), loss="mse",
        iterations=20_000, lr_schedule={"type": "cosine"}, grad_clip={"type": "norm", "max_norm": 0.4},
        augment=("flip", "rot90"),
        notes="single-scale training; gradient norm clipped at 0.4 as a cheap guard for the deep nets "
              "(DRCN: MSE on the ensemble output; recipe='paper' trains with the recursive-supervision loss)") for name in _PRE},
    "srdensenet": TrainingRecipe(
        data="T91", patch_size=25, batch_size=16, optimizer="adam", lr=1e-4, betas=(0.9, 0.999), loss="mse",
        iterations=20_000, lr_schedule={"type": "cosine"}, augment=("flip", "rot90")),
    **{name: TrainingRecipe(
        data="T91", patch_size={2: 48, 3: 32, 4: 24}, batch_size=16, optimizer="adam", lr=1e-4,
        betas=(0.9, 0.999), loss="l1" if name != "srresnet" else "mse", iterations=20_000,
        lr_schedule={"type": "cosine"}, augment=("flip", "rot90"),
        notes="RGB crops; the papers' DIV2K/ImageNet are replaced by whatever data= names")
       for name in ("srresnet", "edsr_baseline", "edsr", "mdsr")},
}

#: The augmentations training_sampler implements: "flip" (mirror), "rot90" (quarter turns), "scale"
#: (FSRCNN: each image also downscaled by 0.9..0.6).  A recipe naming any other kind is refused.
AUGMENTATIONS = ("flip", "rot90", "scale")

# The paper's FSRCNN LR sub-image sizes (Dong, Loy, Tang 2016, Sec. 4.1).
_FSRCNN_PAPER_PATCH = {2: 10, 3: 7, 4: 6}


def _log_default(msg):
    print(msg, flush=True)


# =============================================================================================== names
def _spec_name(model):
    from .models.registry import get_spec
    return get_spec(model).name


def _registry_name_of(module):
    """The registry name that rebuilds ``module`` (:attr:`SRModel.registry_name`), else None.

    Networks constructed some other way are trained and checkpointed all the same, but :func:`load`
    cannot rebuild them from the checkpoint alone.
    """
    name = getattr(module, "registry_name", None)
    return name if name is not None else getattr(module, "build_name", None)


def _build_kwargs_of(module):
    """Build keyword arguments that rebuild ``module`` (:meth:`SRModel.build_arguments`), else None."""
    if callable(getattr(module, "build_arguments", None)):
        return module.build_arguments()
    kw = getattr(module, "build_kwargs", None)
    return dict(kw) if kw is not None else None


# ======================================================================================= inference copy
def inference_model(model):
    """The network to run on whole images: the model's own :meth:`~SRModel.inference_model`.

    That is the model itself, except for a valid-convolution SRCNN, whose 'same'/replicate twin
    (weights copied, eval mode) is what the authors run on whole images.
    """
    twin = getattr(model, "inference_model", None)
    return twin() if callable(twin) else model


# ========================================================================================= evaluation
def _prepare_eval(hr, scale, convention):
    """``(network input NCHW float32, reference)`` for one HR image (:func:`tinysr.data.protocol.prepare`)."""
    from .data.protocol import prepare
    net_in, ref = prepare(hr, scale, convention)
    if convention == "lr-rgb":
        return net_in.astype(np.float32).transpose(2, 0, 1)[None] / 255.0, ref
    return net_in[None, None].astype(np.float32), ref


def _run_eval(model, items, scale, *, tile=None, self_ensemble=False, with_ssim=True, method="model",
              dataset="images", device=None, border="replicate", progress=False):
    """Score a model on prepared ``(name, net_input, reference)`` items; returns a metrics report."""
    from . import infer, metrics
    net = inference_model(model)
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


def _check_eval_size(hr, scale, name):
    """An HR test image must survive modcrop, the shave of ``scale`` px and SSIM's 11x11 window."""
    from .data.io import check_size
    return check_size(hr, scale, name, min_lr=math.ceil((2 * scale + 11) / scale))


def _convention(model):
    conv = getattr(model, "input_convention", None)
    if conv not in ("bicubic-y", "lr-y", "lr-rgb"):
        raise ValueError(f"{type(model).__name__} has no input_convention ('bicubic-y', 'lr-y' or 'lr-rgb'); "
                         "set model.input_convention to say what it is fed")
    return conv


def _check_scale(model, scale):
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
    (:func:`inference_model`), as the authors evaluate it.

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
        items = [(n, _check_eval_size(hr, int(scale), n)) for n, hr in items]
        rep = metrics.evaluate_bicubic(items, int(scale))
        rep["dataset"] = label
        return rep
    method = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    if isinstance(model, (str, os.PathLike)):
        model = _resolve_model(model, scale)
        method = getattr(model, "tinysr_meta", {}).get("label", method)
    scale = _check_scale(model, scale)
    conv = _convention(model)
    label, images = named_images(dataset, split)
    items = [(name, *_prepare_eval(_check_eval_size(hr, scale, name), scale, conv)) for name, hr in images]
    return _run_eval(model, items, scale, tile=tile, self_ensemble=self_ensemble, with_ssim=ssim,
                     method=method + (" +self-ensemble" if self_ensemble else ""), dataset=label, device=device,
                     border=border, progress=progress)


# ============================================================================================ loading
def _manifest():
    path = WEIGHTS_DIR / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def shipped_weights():
    """``{name: entry}`` of the weights shipped in ``tinysr/weights`` (empty when none are).

    Each entry records the model name, its build keyword arguments, the scale, the exact command that
    reproduces it, the training time on the machine that trained it, and its measured PSNR.
    """
    return {k: v for k, v in _manifest().items() if not k.startswith("_")}


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


def _load_checkpoint_file(path, *, label=None):
    from .models.registry import build
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}" + (" (it is a folder: give a step_*.npz file inside it, "
                                                           "or use tinysr.checkpoint.latest)" if p.is_dir() else ""))
    try:
        state, _, meta = checkpoint.load(p)
    except checkpoint.CheckpointError as e:
        hint = (" (for the authors' released weights use tinysr.models.load_official)"
                if "without tinysr metadata" in str(e) else "")
        raise ValueError(f"{e}{hint}") from None
    except Exception as e:
        raise ValueError(f"{p} is not a readable tinysr checkpoint ({type(e).__name__}: {e})") from None
    name = meta.get("model")
    if not name:
        raise ValueError(f"{p} was written for a custom module ({meta.get('model_class', '?')}), which tinysr cannot "
                         "rebuild by itself: build it and call model.load_state_dict(tinysr.checkpoint.load(path)[0])")
    model = build(name, scale=meta.get("scale"), **(meta.get("model_kwargs") or {}))
    model.load_state_dict(state)
    scales = meta.get("scales") or []
    if len(scales) > 1 and not hasattr(model, "set_scale"):
        model.scales = tuple(scales)      # trained on several scales: evaluate/upscale accept each
    info = {k: meta.get(k) for k in ("model", "model_kwargs", "scale", "recipe", "seed", "step", "tinysr_version",
                                     "data")}
    info["path"] = str(p)
    info["label"] = label or f"{name} x{meta.get('scale')} ({p.name}, step {meta.get('step')})"
    return model, info


def load(name_or_path, *, device="cpu", for_inference=True):
    """Load tinysr-trained weights: a shipped name (``"srcnn-x3"``, ``"fsrcnn-x2"``, ...) or a checkpoint.

    * a shipped name is looked up in ``tinysr/weights/manifest.json`` (see :func:`shipped_weights`);
    * a path is a checkpoint written by :func:`train` (``out_dir/step_*.npz``) or by
      :func:`save_weights`: its metadata names the model, its build arguments and its scale, so the
      network is rebuilt and its weights loaded.  Files are read without pickle (:func:`tinysr.models.readers.read_npz`).

    With ``for_inference`` (the default) a valid-convolution SRCNN comes back as its replicate
    'same'-padding twin (:func:`inference_model`), ready for whole images.  The model is in eval mode,
    on ``device``, and carries ``model.tinysr_meta`` (model, kwargs, scale, recipe, seed, step, ...).
    """
    backend.check_device(device)
    key = os.fspath(name_or_path)
    p = Path(key)
    looks_like_path = p.suffix.lower() == ".npz" or os.sep in key or "/" in key or p.exists()
    if looks_like_path:
        model, info = _load_checkpoint_file(p)
    else:
        shipped = shipped_weights()
        name = key.lower()
        if name not in shipped:
            from .models.registry import registry
            base = name.replace("-", "_")
            hint = ""
            net_name, _, sc = base.partition("_x")
            same_net = sorted((k for k in shipped if k.split("-x")[0] == net_name.replace("_", "-")),
                              key=lambda k: int(k.split("-x")[-1]) if k.split("-x")[-1].isdigit() else 0)
            if base in registry():
                hint = f" (name a scale, e.g. '{name}-x3')"
            elif sc and net_name in registry() and same_net:
                raise ValueError(f"no shipped weights {key!r}: tinysr ships {net_name} for "
                                 f"{', '.join('x' + k.split('-x')[-1] for k in same_net)} only (or train x{sc} with "
                                 f"`tinysr train {net_name} --scale {sc}` and pass the checkpoint it prints)")
            if not shipped:
                raise ValueError(f"no weights are shipped with this copy of tinysr yet, so {key!r} cannot be loaded"
                                 f"{hint}: train them with `tinysr train <model> --scale <s>` and load the checkpoint "
                                 "path it prints")
            raise ValueError(f"unknown shipped weights {key!r}{hint}; shipped: {', '.join(sorted(shipped))}, or give "
                             "a checkpoint path")
        entry = shipped[name]
        model, info = _load_checkpoint_file(WEIGHTS_DIR / entry.get("file", f"{name}.npz"), label=name)
        info["manifest"] = entry
    if for_inference:
        model = inference_model(model)
    if backend.parse_device(device)[0] != "cpu":
        model.to(device)
    model.tinysr_meta = info
    return model.eval()


def save_weights(model, path, meta=None, dtype=None):
    """Write ``model``'s weights as a small checkpoint (no optimiser state) that :func:`load` reads.

    ``meta`` must name what rebuilds the network: ``model`` (registry name), ``model_kwargs``,
    ``scale``; anything else JSON-serialisable is kept (recipe, seed, step, command, PSNR).
    ``dtype="float16"`` halves the file; :func:`load` returns float32 weights either way.
    """
    meta = dict(meta or {})
    if "model" not in meta:
        name = _registry_name_of(model)
        meta.update(model=name, model_kwargs=_build_kwargs_of(model) or {}, scale=getattr(model, "scale", None))
    meta.setdefault("tinysr_version", __version__)
    checkpoint.save(path, model, None, meta, weights_dtype=dtype)
    return Path(path)


#: The package ships a network's weights only when its file is at most this large (float16).
SHIP_LIMIT_BYTES = 2 * 2 ** 20


def ship_weights(checkpoint_path, name, *, command, train_seconds, machine=None,
                 datasets=("Set5", "Set14", "B100"), note="", dtype="float32"):
    """Maintainer tool: copy a checkpoint's weights into ``tinysr/weights/<name>.npz`` and record them.

    The weights are saved without optimiser state or history (a few tens of KB), in ``dtype``
    (``"float16"`` for the larger networks; :func:`load` returns float32), evaluated *as shipped*
    under the protocol on ``datasets``, and ``manifest.json`` gets the entry that :func:`load`,
    :func:`shipped_weights` and the results table of ``docs/results.md`` rely on: model, build arguments,
    scale, the exact reproducing ``command``, the training time and the ``machine`` it was measured on
    (default: this process's CPU count and architecture), and the measured PSNR/SSIM.  A file larger
    than :data:`SHIP_LIMIT_BYTES` is refused (the package stays small).  Returns the entry.
    """
    state_model, _ = _load_checkpoint_file(checkpoint_path)
    _, _, meta = checkpoint.load(checkpoint_path)
    keep = {k: meta.get(k) for k in ("model", "model_kwargs", "scale", "recipe", "recipe_params", "seed", "step",
                                     "data", "patch_size", "lr", "iterations", "tinysr_version")}
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS_DIR / f"{name}.npz"
    tmp = WEIGHTS_DIR / f".{name}.candidate.npz"
    save_weights(state_model, tmp, keep, dtype=None if dtype == "float32" else dtype)
    size = tmp.stat().st_size
    if size > SHIP_LIMIT_BYTES:
        tmp.unlink()
        raise ValueError(f"{name} would be a {size / 2 ** 20:.1f} MB file in {dtype}; the package ships weights of at "
                         f"most {SHIP_LIMIT_BYTES / 2 ** 20:.0f} MB (try dtype='float16', or publish the checkpoint "
                         "and its training command instead)")
    os.replace(tmp, target)
    state_model, _ = _load_checkpoint_file(target)      # evaluate what users will load, rounding included
    entry = {"file": f"{name}.npz", "dtype": dtype, "model": keep["model"], "model_kwargs": keep["model_kwargs"],
             "scale": keep["scale"], "recipe": keep["recipe"], "steps": keep["step"], "seed": keep["seed"],
             "data": keep["data"], "command": command, "train_seconds": round(float(train_seconds)),
             "machine": machine or f"{os.cpu_count()}-core {platform.machine()} CPU", "note": note, "psnr": {}, "ssim": {}}
    for ds in datasets:
        rep = evaluate(state_model, ds, scale=keep["scale"])
        entry["psnr"][rep["dataset"]], entry["ssim"][rep["dataset"]] = round(rep["psnr"], 3), round(rep["ssim"], 4)
        entry["protocol"] = rep["protocol"]
    manifest = _manifest()
    manifest[name] = entry
    checkpoint.atomic_write_text(WEIGHTS_DIR / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return entry


# ========================================================================================== upscaling
def _read_image(image):
    """uint8 array from an array, a file path, or ``"builtin:<photo>"`` (scikit-image's sample photos)."""
    from .data import datasets
    from .data.io import ImageError, imread
    if isinstance(image, np.ndarray):
        return image
    s = os.fspath(image)
    if s.startswith("builtin:"):
        stem = s.split(":", 1)[1]
        files = dict(datasets.list_files("builtin"))
        if stem not in files:
            raise ImageError(s, "no such builtin photo", f"choose one of {', '.join(files)}")
        return imread(files[stem])
    return imread(s)


def _resolve_model(model, scale):
    """A Module from a Module, a shipped/registry name or a checkpoint path; checks the scale."""
    if isinstance(model, (str, os.PathLike)):
        key = os.fspath(model)
        from .models.registry import registry
        if key.lower().replace("-", "_") in registry() and not Path(key).exists() and scale is not None:
            key = f"{key.lower()}-x{scale}"       # "fsrcnn" + scale 3 -> the shipped "fsrcnn-x3"
        model = load(key)
    return model


def _auto_tile(model, shape, scale, tile):
    """Tile side in *image* pixels for an image of ``shape``, or None for one pass."""
    if tile != "auto":
        return None if tile is None else int(tile)
    # About 256 network-input pixels a side keeps the activations (and im2col buffers) of every zoo
    # network to a few hundred MB; a pre-upsampling network sees the image `scale` times larger.
    side = 256 // scale if getattr(model, "input_convention", "") == "bicubic-y" else 256
    return side if max(shape[:2]) > side + side // 2 else None


#: the default ceiling of :func:`upscale`'s estimated memory, in GB (1e9 bytes)
DEFAULT_MAX_MEMORY_GB = 4.0


def _gb(nbytes):
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def _image_shape(image):
    """``(H, W[, 3])`` of an image argument without decoding a file (PIL reads only the header)."""
    if isinstance(image, np.ndarray):
        return image.shape
    s = os.fspath(image)
    if s.startswith("builtin:"):
        return _read_image(s).shape           # small sample photos
    import warnings

    from PIL import Image
    try:
        # only the header is read here, and upscale() weighs the size itself (and says so), so PIL's
        # decompression-bomb check of the pixel count would only pre-empt that sentence less precisely
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(s)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        with im:
            w, h = im.size
            return (h, w) if im.mode in ("L", "I", "I;16", "F", "1") else (h, w, 3)
    except Exception:   # noqa: BLE001 -- imread then reports the file's problem in its own sentence
        return _read_image(s).shape


def upscale_memory(shape, model, scale, tile):
    """Estimated peak bytes of :func:`upscale` for an image of ``shape`` ``(H, W[, C])``.

    The sum of: the uint8 input; the uint8 output, counted twice (the array and the copy the PNG
    encoder makes); and the float32 working set of one pass over a tile (or of the whole image when
    ``tile`` is None): 16 bytes per network-input pixel and channel of the widest layer (its input
    and output activations and the convolution's work buffers, float32) and 96 bytes per output
    pixel (the float64 colour planes of the pipeline). Against tracemalloc's peak for the shipped
    SRCNN, FSRCNN and VDSR x3, tiled and untiled, it lies between 0.5x and 2.1x of the measured
    peak (``tests/test_reliability.py`` keeps SRCNN and FSRCNN within 2.5x either way).
    """
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    s = int(scale)
    io_bytes = h * w * c + 2 * (h * s) * (w * s) * c
    side_h, side_w = (h, w) if tile is None else (min(h, tile), min(w, tile))
    pre = getattr(model, "input_convention", "") == "bicubic-y"
    # network-input pixels of one pass, with the tile margin (pre-upsampling networks see s times more)
    margin = 0 if tile is None else 2 * _tile_margin(model, s)
    px = (side_h + margin) * (side_w + margin) * (s * s if pre else 1)
    widths = [p.shape[0] for p in model.parameters() if p.ndim == 4] or [64]
    width = max(widths)
    out_px = (side_h * s) * (side_w * s)
    work = 16 * width * px + 96 * out_px
    return int(io_bytes + work)


def _tile_margin(net, scale):
    """Image pixels of context each tile needs so that its centre equals the untiled result.

    Two things look past a pixel: the network (half its receptive field, in network-input pixels)
    and MATLAB's bicubic (the upsampled Cb/Cr, and the network input of pre-upsampling networks),
    whose 4-tap kernel reaches 2 pixels; one more pixel each for safety.
    """
    from . import infer
    net_margin = infer.default_margin(net)                 # rf // 2 + 2, network-input pixels
    conv = _convention(net)
    if conv == "bicubic-y":
        return math.ceil(net_margin / scale) + 4
    if conv == "lr-y":
        return net_margin + 4
    return net_margin


def _super_resolve_tiled(net, img, scale, tile, *, self_ensemble=False, device=None):
    """:func:`tinysr.infer.super_resolve` on overlapping tiles of ``tile`` x ``tile`` image pixels.

    The whole colour pipeline (YCbCr, bicubic chroma, bicubic network input, the network, back to
    RGB) runs per tile, with :func:`_tile_margin` pixels of context, and only the tile's centre is
    kept.  Every step is local and the same at every position (MATLAB bicubic maps output pixel
    ``u`` to input ``u/s + (1 - 1/s)/2``, so a crop at an integer offset sees the same weights), hence
    the result equals the untiled one (up to float32 rounding in the GEMMs), while memory holds the
    input, the uint8 output and one tile's activations -- not the float64 copies of the whole picture.
    """
    from . import infer
    s = int(scale)

    def run(t0, b1, l0, r1):
        # only the image's own edges get the replicate border; inner edges have real context
        h, w = img.shape[:2]
        return infer.super_resolve(net, img[t0:b1, l0:r1], s, self_ensemble=self_ensemble, device=device,
                                   sides=(t0 == 0, b1 == h, l0 == 0, r1 == w))
    return infer.run_tiled(run, img.shape[:2], tile, _tile_margin(net, scale), axes=(0, 1), dtype=np.uint8)


def upscale(image, model="fsrcnn", scale=3, *, tile="auto", self_ensemble=False, out=None, device=None,
            max_memory_gb=DEFAULT_MAX_MEMORY_GB, log=None):
    """Super-resolve a photo: returns uint8 ``(scale*H, scale*W[, 3])``; writes it to ``out`` if given.

    Parameters
    ----------
    image : a path, ``"builtin:<photo>"`` (e.g. ``"builtin:chelsea"``), or a uint8 array ``(H, W[, 3])``.
        Files are read with :func:`tinysr.imread` (RGBA loses its alpha with a warning; a missing,
        truncated or non-image file raises :class:`tinysr.data.ImageError` naming it).
    model : a shipped name or registry name (``"fsrcnn"`` means the shipped ``"fsrcnn-x<scale>"``), a
        checkpoint path, or a Module.
    tile : side of a tile in pixels of ``image``; ``"auto"`` (default) tiles big images (about 256
        network-input pixels a tile), ``None`` or ``"off"`` never tiles.  Tiles overlap by the receptive
        field plus the bicubic kernel's reach, so the result equals the untiled one while memory stays
        bounded by the tile size (a 2000x2000 photo at x3: see ``benchmarks/upscale_memory.py``).
    self_ensemble : average the 8 flips/rotations (8x the time, a little sharper).
    max_memory_gb : refuse, before decoding the image, an upscale whose estimated peak memory
        (:func:`upscale_memory`: the image, the output, one tile's activations) exceeds this many GB;
        default :data:`DEFAULT_MAX_MEMORY_GB`.  ``None`` lifts the limit.
    log : a callable that is told the estimate before the work starts (the CLI prints it).

    Colour: Y networks super-resolve the luminance and upsample Cb/Cr with bicubic, as the papers'
    demos do; RGB networks take the RGB image (see :func:`tinysr.infer.super_resolve`).
    """
    from . import infer
    from .data.io import imwrite
    scale, tile = options.check("scale", scale), options.check("tile", tile)
    max_memory_gb = options.check("max_memory_gb", max_memory_gb)
    tile = None if tile == "off" else tile
    net = inference_model(_resolve_model(model, scale))
    scale = _check_scale(net, scale)
    shape = _image_shape(image)
    t = _auto_tile(net, shape, scale, tile)
    need = upscale_memory(shape, net, scale, t)
    h, w = shape[:2]
    what = (f"upscaling {w}x{h} to {w * scale}x{h * scale} needs about {_gb(need)} of memory "
            f"({'tiles of ' + str(t) + ' px' if t is not None and max(h, w) > t else 'one pass'})")
    if max_memory_gb is not None and need > max_memory_gb * 1e9:
        raise MemoryError(f"{what}, above the {max_memory_gb:g} GB limit: allow it with --max-memory "
                          f"{math.ceil(need / 1e9)} (max_memory_gb= in Python) if this machine has that much free, "
                          "or upscale a crop or a smaller copy of the image")
    if log is not None:
        log(what)
    img = _read_image(image)
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {img.shape}")
    if t is None or max(img.shape[:2]) <= t:
        sr = infer.super_resolve(net, img, scale, self_ensemble=self_ensemble, device=device)
    else:
        sr = _super_resolve_tiled(net, img, scale, t, self_ensemble=self_ensemble, device=device)
    if out is not None:
        imwrite(out, sr)
    return sr


def compare(image, model="fsrcnn", scale=3, *, out=None, crop=None, tile="auto", self_ensemble=False, device=None):
    """Treat ``image`` as the ground truth: shrink it by ``scale`` (MATLAB bicubic, uint8), upscale it
    back with bicubic and with ``model``, and measure both against it (Y PSNR/SSIM, ``scale`` px shaved).

    Writes a side-by-side PNG (bicubic | model | original) to ``out`` when given; ``crop`` =
    ``(top, left, size)`` in HR pixels shows a detail instead of the whole picture.  Returns
    ``{"bicubic": {"psnr", "ssim"}, "model": {...}, "images": (bicubic, sr, hr), "out": path}``.
    The LR image here is a real 8-bit image, as a user would have, so the numbers differ slightly from
    :func:`evaluate`, whose LR stays in double precision as in the papers.  ``device`` as in :func:`upscale`.
    """
    from . import metrics
    from .data.io import check_size
    from .data.resize import imresize, modcrop
    scale = options.check("scale", scale)
    hr = _read_image(image)
    check_size(hr, scale, image if not isinstance(image, np.ndarray) else None, min_lr=8)
    hr = modcrop(hr, scale)
    lr = imresize(hr, 1.0 / scale)
    bic = imresize(lr, float(scale))
    net = inference_model(_resolve_model(model, scale))
    sr = upscale(lr, net, scale, tile=tile, self_ensemble=self_ensemble, device=device, max_memory_gb=None)
    res = {k: {"psnr": metrics.psnr(v, hr, scale), "ssim": metrics.ssim(v, hr, scale)}
           for k, v in (("bicubic", bic), ("model", sr))}
    res["images"] = (bic, sr, hr)
    if out is not None:
        res["out"] = str(_side_by_side(out, (bic, sr, hr), res, model, scale, crop))
    return res


def _side_by_side(path, images, res, model, scale, crop):
    # A bare Figure (no pyplot) draws off-screen without touching the session's backend, so a notebook
    # that calls compare() keeps its inline plots.
    from matplotlib.figure import Figure
    name = Path(model).stem if isinstance(model, (str, os.PathLike)) else type(model).__name__
    titles = [f"bicubic  {res['bicubic']['psnr']:.2f} dB", f"{name}  {res['model']['psnr']:.2f} dB", "original (HR)"]
    if crop is not None:
        t, l, s = crop
        images = [im[t:t + s, l:l + s] for im in images]
    h, w = images[0].shape[:2]
    fig = Figure(figsize=(12, 4.2 * h / w + 0.4))
    axes = fig.subplots(1, 3)
    for ax, im, title in zip(axes, images, titles):
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"x{scale}, Y-PSNR with {scale} px shaved", fontsize=9)
    fig.tight_layout()
    checkpoint.atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return Path(path)


# =========================================================================================== training
@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``model`` the trained network (as trained; :func:`inference_model` gives the whole-image twin of
    a valid SRCNN); ``history`` the per-step loss, learning rate and evaluations (also in
    ``out_dir/history.json``); ``metrics`` the final evaluation report on ``eval_data`` (PSNR/SSIM per
    image and mean, with the protocol line) or None; ``checkpoint`` the last checkpoint written;
    ``resumed_from`` the checkpoint the run continued from, or None for a fresh run.
    """
    model: object
    history: dict
    metrics: Optional[dict]
    out_dir: Optional[Path]
    checkpoint: Optional[Path] = None
    resumed_from: Optional[Path] = None
    seconds: float = 0.0
    recipe: dict = field(default_factory=dict)

    def __repr__(self):
        m = f"{self.metrics['psnr']:.3f} dB on {self.metrics['dataset']}" if self.metrics else "not evaluated"
        return (f"TrainResult({type(self.model).__name__}, {len(self.history.get('loss', []))} steps, {m}, "
                f"out_dir={str(self.out_dir)!r})")


def _recipe_for(name, recipe):
    from .models.registry import get_spec
    if isinstance(recipe, TrainingRecipe):
        return recipe, "custom"
    if recipe == "paper":
        return get_spec(name).recipe, "paper"
    if recipe == "fast":
        if name not in FAST_RECIPES:
            raise ValueError(f"tinysr has no fast recipe for {name!r}; use recipe='paper'")
        return FAST_RECIPES[name], "fast"
    raise ValueError(f"recipe must be 'paper', 'fast' or a TrainingRecipe, got {recipe!r}")


def _patch_for(recipe, scale, override, name, recipe_name):
    if override is not None:
        return int(override)
    if name == "fsrcnn" and recipe_name == "paper":
        return _FSRCNN_PAPER_PATCH.get(scale, 7)
    p = recipe.patch_size
    if isinstance(p, dict):
        return int(p.get(scale, p[max(p)]))
    return int(p)


def _load_training_images(data, scale, min_side, log):
    from .data.datasets import named_images
    from .data import datasets
    names = [data] if isinstance(data, (str, os.PathLike, np.ndarray)) else list(data)
    images = []
    for d in names:
        if isinstance(d, np.ndarray):
            images.append(d)
            continue
        if isinstance(d, os.PathLike) or (isinstance(d, str) and Path(d).is_dir() and d not in datasets.REGISTRY):
            images.extend(im for _, im in named_images(d)[1])
            continue
        split = "train" if str(d).lower() == "builtin" else None
        images.extend(datasets.load(d, split=split))
    kept = [im for im in images if min(im.shape[:2]) // scale * scale >= min_side]
    if len(kept) < len(images):
        log(f"  {len(images) - len(kept)} training image(s) smaller than {min_side} px skipped")
    if not kept:
        raise ValueError(f"no training image is large enough for {min_side}x{min_side} px patches at x{scale}")
    return kept


def training_sampler(model, images, scale, *, recipe, recipe_name, patch_size, batch_size, log=_log_default):
    """``(sample(rng) -> (x, y), patches_per_epoch)``: the training batches for ``model`` under ``recipe``.

    * ``bicubic-y`` networks: crops of the bicubic-upsampled Y (``make_pair(upsample=True)``) and the
      HR Y at the same place; a valid-convolution SRCNN gets the label's centre (33 -> 21 for 9-1-5).
      SRCNN's paper recipe takes the fixed grid of 33x33 sub-images every 14 px (``dense_pairs``).
    * ``lr-y`` networks: LR Y crops and the aligned HR crops ``scale`` times larger; FSRCNN's "scale"
      augmentation adds each image downscaled by 0.9..0.6.
    * ``lr-rgb`` networks: the same with RGB (MATLAB uint8 bicubic LR).

    Every random choice comes from the ``rng`` passed in, which the Trainer checkpoints: that is what
    makes a resumed run identical to an uninterrupted one.
    """
    from .data import patches
    from .data.datasets import make_pair
    conv = _convention(model)
    aug = tuple(recipe.augment)
    unknown = [a for a in aug if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"the recipe's augmentation {', '.join(map(repr, unknown))} is not implemented; use "
                         f"{', '.join(map(repr, AUGMENTATIONS))}")
    pre = conv == "bicubic-y"
    if "scale" in aug:
        images = patches.scale_augment(images)
        images = [im for im in images if min(im.shape[:2]) // scale * (scale if pre else 1) >= patch_size]
    border = int(getattr(model, "border", 0) or 0)
    label = patch_size - 2 * border if pre else patch_size * scale
    if recipe.label_size is not None and recipe_name == "custom" and int(recipe.label_size) != label:
        raise ValueError(f"the recipe's label_size {recipe.label_size} does not match what {type(model).__name__} "
                         f"makes of {patch_size} px patches ({label} px); drop label_size or change patch_size")
    pairs = [make_pair(im, scale, upsample=pre, channel="rgb" if conv == "lr-rgb" else "y") for im in images]
    flips = "flip" in aug or "rot90" in aug
    modes = tuple(range(8)) if "flip" in aug else (0, 1, 2, 3)
    grid = getattr(model, "paper_grid_stride", None)
    if grid and recipe_name == "paper":
        # The paper's fixed grid of sub-images (generate_train.m), sampled with replacement.
        xs, ys = [], []
        for a, b in pairs:
            x, y = patches.dense_pairs(a, b, size=patch_size, stride=grid, label_size=patch_size - 2 * border)
            xs.append(x)
            ys.append(y)
        X, Y = np.concatenate(xs), np.concatenate(ys)
        log(f"  {len(X):,} sub-images {patch_size}x{patch_size} (stride {grid}), labels "
            f"{patch_size - 2 * border}x{patch_size - 2 * border}")

        def sample(rng):
            idx = rng.integers(0, len(X), batch_size)
            return patches.to_nchw(X[idx]), patches.to_nchw(Y[idx])
        return sample, len(X)

    # PatchSampler's checks (every image at least one patch large, targets aligned) before sampling
    patches.PatchSampler(pairs, patch_size, batch_size, scale=1 if pre else scale, augment=False, label_crop=border)

    def sample(rng):
        xs, ys = [], []
        for _ in range(batch_size):
            a, b = pairs[int(rng.integers(0, len(pairs)))]
            x, y = patches.random_crop(a, b, patch_size, 1 if pre else scale, rng=rng)
            if flips:
                x, y = patches.random_augment(x, y, rng=rng, modes=modes)
            if border:
                y = y[border:-border, border:-border]
            xs.append(x)
            ys.append(y)
        return patches.to_nchw(np.stack(xs)), patches.to_nchw(np.stack(ys))

    per_epoch = sum((a.shape[0] // patch_size) * (a.shape[1] // patch_size) for a, _ in pairs)
    return sample, max(per_epoch, 1)


def make_optimizer(model, recipe, lr=None):
    """The recipe's optimiser over ``model``'s parameters, with its per-layer learning rates.

    ``per_layer_lr`` keys name top-level modules (SRCNN: ``reconstruction`` at 1e-5, 10x below the
    rest) or ``"convolutions"`` for everything not named (FSRCNN: convolutions 1e-3, deconvolution
    1e-4).  ``lr`` overrides the base rate; the per-layer rates keep their ratio to it.
    """
    from . import optim
    base = float(recipe.lr if lr is None else lr)
    params = list(model.named_parameters())
    if recipe.per_layer_lr:
        plr = dict(recipe.per_layer_lr)
        ref = plr.get("convolutions", max(plr.values()))
        factor = base / ref if lr is not None else 1.0
        groups = {}
        for n, p in params:
            top = n.split(".", 1)[0]
            rate = plr.get(top, plr.get("convolutions", recipe.lr)) * factor
            groups.setdefault(rate, []).append(p)
        spec = [{"params": ps, "lr": r} for r, ps in groups.items()]
    else:
        spec = [{"params": [p for _, p in params], "lr": base}]
    kind = recipe.optimizer.lower()
    if kind == "sgd":
        return optim.SGD(spec, lr=base, momentum=recipe.momentum or 0.0, weight_decay=recipe.weight_decay)
    if kind == "adam":
        return optim.Adam(spec, lr=base, betas=recipe.betas or (0.9, 0.999), weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimiser {recipe.optimizer!r} in the recipe")


def _make_schedule(opt, recipe, iterations, per_epoch_steps, log):
    from . import optim
    s = dict(recipe.lr_schedule or {})
    kind = s.get("type")
    if not kind:
        return None
    if kind == "cosine":
        return optim.CosineAnnealingLR(opt, T_max=max(int(iterations), 1), warmup=int(s.get("warmup", 0)))
    if kind == "step" and "milestones" in s:
        return optim.MultiStepLR(opt, s["milestones"], s.get("gamma", 0.1))
    if kind == "step" and ("every_epochs" in s or "every_iterations" in s):
        every = s.get("every_iterations") or int(s["every_epochs"] * per_epoch_steps)
        return optim.StepLR(opt, max(int(every), 1), s.get("gamma", 0.1))
    if kind == "plateau":
        # Needs the validation loss each epoch, which the Trainer does not hand to a schedule.
        log(f"  note: the recipe's schedule {s} is not automated here; the learning rate stays constant")
        return None
    raise ValueError(f"the recipe's learning-rate schedule {s} is not implemented: use {{'type': 'cosine'}} or "
                     "{'type': 'step'} with 'milestones', 'every_epochs' or 'every_iterations'")


def _make_clip(model, recipe):
    from . import optim
    c = recipe.grad_clip
    if not c:
        return None
    if c.get("type") == "adjustable":
        return lambda opt: optim.clip_grad_adjustable_(opt, c.get("theta", 0.01))
    if c.get("type") == "norm":
        return lambda opt: optim.clip_grad_norm_(model.parameters(), c.get("max_norm", 0.4))
    if c.get("type") == "value":
        return lambda opt: optim.clip_grad_value_(model.parameters(), c["value"])
    raise ValueError(f"unknown gradient clipping {c!r} in the recipe")


class RecursiveSupervision:
    """DRCN's training loss (Kim et al., CVPR 2016, eq. 12) as a :class:`~tinysr.trainer.Trainer` loss.

    ``alpha`` weighs the 16 intermediate predictions against the ensemble output: 1 at the first step,
    falling linearly to 0 at the last (the paper says only that alpha starts at 1 and decays; linear
    over the run is tinysr's reading).  ``beta`` (weight decay inside the loss) is 0 by default
    because the paper recipe's SGD already applies weight decay 1e-4 -- counting it twice would double it.
    """
    needs_model = True

    def __init__(self, iterations, beta=0.0):
        self.iterations, self.beta = int(iterations), float(beta)

    def alpha(self, step):
        return max(0.0, 1.0 - step / max(self.iterations - 1, 1))

    def __call__(self, model, x, y, step):
        from .models.drcn import drcn_loss
        return drcn_loss(model, x, y, self.alpha(step), self.beta)


def _loss_fn(recipe, net=None, scale=1, iterations=None):
    from . import functional as F
    kind = recipe.loss.split()[0].lower()
    if kind == "drcn" and hasattr(net, "forward_all"):
        if getattr(recipe, "loss_border", 0):
            raise ValueError("loss_border is not implemented for DRCN's recursive supervision; set it to 0")
        return RecursiveSupervision(iterations or 1)
    # "mse" (and "drcn" on a network without forward_all: MSE on its output)
    base = F.l1_loss if kind == "l1" else F.mse_loss
    b = getattr(recipe, "loss_border", 0) or 0
    if b == "receptive_field":
        rf = int(getattr(net, "receptive_field", 1) or 1)
        b = (rf // 2) * (scale if _convention(net) != "bicubic-y" else 1)
    b = int(b)
    if b <= 0:
        return base

    def cropped(pred, target):
        # Outputs within b pixels of a patch's edge saw its zero padding, which whole images barely have:
        # learning from them teaches the network about borders instead of about textures.
        return base(pred[..., b:-b, b:-b], target[..., b:-b, b:-b])
    return cropped


def train(model="srcnn", *, scale=3, device="cpu", data="T91", eval_data="Set5", recipe="fast", iterations=None,
          epochs=None, batch_size=None, patch_size=None, lr=None, clip=None, seed=0, out_dir=None, resume=True,
          eval_every=None, checkpoint_every=None, model_kwargs=None, progress=True, log=_log_default):
    """Train a super-resolution network and return a :class:`TrainResult`.

    Parameters
    ----------
    model : a registry name (``"srcnn"``, ``"fsrcnn"``, ``"vdsr"``, ...) or a Module (which must have
        ``input_convention`` and ``scale``).
    scale : the SR factor (2, 3, 4), or several, e.g. ``(2, 3, 4)``: one network trained on all of
        them, each batch drawn at one of the scales (VDSR's multi-scale training, Kim et al. 2016 sec.
        4.3; MDSR, Lim et al. 2017), evaluated at each.  Only networks that can serve several scales
        accept it: those with bicubic-upsampled input, and MDSR.
    device : ``"cpu"`` or ``"cuda"``; checked first, so a missing GPU fails at once with what to install.
    data : training set(s): ``"T91"``, ``"BSD200"``, ``"builtin"``, a folder, or a list of these.
    eval_data : test set evaluated every ``eval_every`` steps and at the end (None: never).
    recipe : ``"fast"`` (tinysr's Adam recipe, :data:`FAST_RECIPES`), ``"paper"`` (the paper's, see
        ``tinysr.models.get_spec(name).recipe``) or a :class:`~tinysr.models.TrainingRecipe`.
    iterations / epochs : length of the run (optimiser steps; an epoch is one pass over the recipe's
        sub-images, or over non-overlapping patches of the training set for random crops).  Default:
        the recipe's.
    batch_size, patch_size, lr : override the recipe.
    clip : clip the gradients' global L2 norm to this value (replacing the recipe's clipping), or
        ``"off"`` for none; default: the recipe's.
    seed : seeds the initialisation and every random crop; a run is a function of its seed.
    out_dir : checkpoints, ``history.json`` and ``curves.png`` (default ``runs/<model>-x<s>-<recipe>-seed<seed>``).
    resume : continue from the newest checkpoint in ``out_dir`` that reads back completely (it says so
        loudly, and names any newer one it skipped and why); with ``resume=False`` an ``out_dir`` that
        already holds checkpoints is refused. A resumed run may change ``lr``, ``clip`` and
        ``patch_size`` (e.g. small patches early, larger later); each change is logged and recorded
        in ``history.json`` under ``"changes"``. Anything else must match the checkpoint's run.
    model_kwargs : build arguments for a registry model (e.g. ``{"variant": "9-5-5"}``).

    A loss that turns NaN or explodes stops the run with :class:`tinysr.trainer.TrainingDiverged`; the last
    good checkpoint is kept and none is written from the diverged state.  Interrupting (Ctrl-C) keeps the
    last checkpoint too: run the same call again to resume.  Every numeric argument is checked first
    (:mod:`tinysr.options`): a wrong one is refused in one sentence before anything is read or written.
    """
    from .data.datasets import named_images
    from .models.registry import build, get_spec
    from .nn import Module, init
    from .trainer import Trainer
    t_start = time.time()
    # every number at the boundary, before any work (one rule table with the CLI: tinysr.options)
    o = options.check_all(iterations=iterations, epochs=epochs, batch_size=batch_size, patch_size=patch_size,
                          lr=lr, clip=clip, seed=seed, eval_every=eval_every, checkpoint_every=checkpoint_every)
    iterations, epochs, batch_size, patch_size = o["iterations"], o["epochs"], o["batch_size"], o["patch_size"]
    lr, clip, seed, eval_every, checkpoint_every = o["lr"], o["clip"], o["seed"], o["eval_every"], o["checkpoint_every"]
    if iterations is not None and epochs is not None:
        raise ValueError("give iterations or epochs, not both")
    device = backend.check_device(device)            # before any work: a missing GPU fails at once
    from .distributed import from_environment
    comm = from_environment(device)                  # under `mpiexec -n N`: one rank of a data-parallel run
    if comm is not None and not comm.is_root:
        log, progress = (lambda *args, **kwargs: None), False     # rank 0 speaks for the run

    # scale=(2, 3, 4): one network for several scales (VDSR's multi-scale training, MDSR)
    scales = tuple(options.check("scale", v) for v in (scale if isinstance(scale, (list, tuple)) else (scale,)))
    if not scales or len(set(scales)) != len(scales):
        raise ValueError(f"scale must be one factor or distinct factors, got {scale!r}")
    scale = scales[0]
    multi = len(scales) > 1
    model_kwargs = dict(model_kwargs or {})
    if isinstance(model, Module):
        net, name = model, _registry_name_of(model)
        if model_kwargs:
            raise ValueError("model_kwargs only apply to a model given by name")
        build_kw = _build_kwargs_of(model)
        if getattr(net, "scale", None) is not None and int(net.scale) not in scales and not multi:
            raise ValueError(f"the model is built for x{net.scale} but scale={scale}")
        key = name or "custom"
        if key == "custom" and recipe == "paper":
            raise ValueError("recipe='paper' needs a registry model; give a TrainingRecipe, or recipe='fast', for "
                             "a custom one")
        rec, recipe_name = _recipe_for(_recipe_family(key, _convention(net), recipe), recipe)
    else:
        name = _spec_name(model)
        spec = get_spec(name)
        for s in scales:
            if s not in spec.scales:
                raise ValueError(f"{name} supports scales {', '.join(f'x{v}' for v in spec.scales)}; got x{s}")
        if spec.input_convention not in ("bicubic-y", "lr-y", "lr-rgb"):
            raise ValueError(f"{name} is not a super-resolution network that tinysr.train can train on its own")
        key = name
        family = _recipe_family(key, spec.input_convention, recipe)
        rec, recipe_name = _recipe_for(family, recipe)
        if family == key:     # a recipe borrowed from another family does not impose its build arguments
            model_kwargs = {**(rec.model_kwargs or {}), **model_kwargs}
        build_kw = {**spec.defaults, **model_kwargs}
        init.seed(seed)
        net = build(name, scale=int(scale), **model_kwargs)
    conv = _convention(net)
    if multi:
        if hasattr(net, "set_scale"):
            missing = [s for s in scales if s not in net.scales]
            if missing:
                raise ValueError(f"this {type(net).__name__} has no branch for x{missing[0]} (its scales: "
                                 f"{net.scales})")
        elif conv == "bicubic-y":
            net.scales = scales          # one network sees bicubic images of every scale (VDSR, sec. 4.3)
        else:
            raise ValueError(f"{key} upsamples by a fixed factor: it cannot train on several scales at once "
                             "(VDSR-style networks and MDSR can)")
    rec = replace(rec, batch_size=int(batch_size or rec.batch_size))
    if clip is not None:
        rec = replace(rec, grad_clip=None if clip == "off" else {"type": "norm", "max_norm": float(clip)})
    ps = {s: _patch_for(rec, s, patch_size, key, recipe_name) for s in scales}
    p = ps[scale]
    if out_dir is None:
        out_dir = Path("runs") / f"{key}-x{'+'.join(map(str, scales))}-{recipe_name}-seed{seed}"
    out_dir = Path(out_dir)
    if not resume and checkpoint.latest(out_dir) is not None:
        raise ValueError(f"{out_dir} already holds checkpoints of an earlier run; to continue it run without --fresh "
                         "(resume=True in Python), or choose another output folder")
    if device != "cpu":
        net.to(device)

    min_side = max(ps[s] * (s if conv != "bicubic-y" else 1) for s in scales)
    log(f"tinysr.train: {key} x{'+x'.join(map(str, scales))}, recipe {recipe_name!r} ({rec.optimizer}, lr "
        f"{lr or rec.lr:g}, batch {rec.batch_size}, patch {p if not multi else ps}), data {_describe(data)}, "
        f"device {device}")
    if comm is not None:
        if rec.batch_size < comm.size:
            raise ValueError(f"a batch of {rec.batch_size} patches cannot be split over {comm.size} ranks: use "
                             f"--batch-size {comm.size} or more, or fewer ranks")
        log(f"  data parallel over {comm.size} ranks: each takes {rec.batch_size / comm.size:g} of the "
            f"{rec.batch_size} patches of a step, and the gradients are all-reduced")
    images = _load_training_images(data, max(scales), min_side, log)
    samplers = {s: training_sampler(net, images, s, recipe=rec, recipe_name=recipe_name, patch_size=ps[s],
                                    batch_size=rec.batch_size, log=log) for s in scales}
    per_epoch = sum(n for _, n in samplers.values())
    if multi:
        def sample(rng):
            # one scale per batch, drawn from the Trainer's generator (so a resumed run repeats it); MDSR
            # is routed through that scale's branches before the Trainer runs it on the batch
            s = scales[int(rng.integers(len(scales)))]
            if hasattr(net, "set_scale"):
                net.set_scale(s)
            return samplers[s][0](rng)
    else:
        sample = samplers[scale][0]
    steps_per_epoch = max(1, math.ceil(per_epoch / rec.batch_size))
    if iterations is None:
        if epochs is not None:
            iterations = int(epochs) * steps_per_epoch
        elif rec.iterations is not None:
            iterations = rec.iterations
        else:
            iterations = (rec.epochs or 1) * steps_per_epoch
    iterations = int(iterations)
    if iterations <= 0:
        raise ValueError(f"iterations must be positive, got {iterations}")

    opt = make_optimizer(net, rec, lr)
    schedule = _make_schedule(opt, rec, iterations, steps_per_epoch, log)
    clip = _make_clip(net, rec)

    evaluate_fn, eval_items = None, None
    if eval_data is not None:
        label, eval_images = named_images(eval_data)
        eval_items = {s: [(n, *_prepare_eval(_check_eval_size(hr, s, n), s, conv)) for n, hr in eval_images]
                      for s in scales}

        def evaluate_fn(m):
            out = {}
            for s in scales:
                if hasattr(m, "set_scale"):
                    m.set_scale(s)
                out["psnr" if not multi else f"psnr_x{s}"] = _run_eval(m, eval_items[s], s, with_ssim=False,
                                                                       dataset=label)["psnr"]
            return out
    if eval_every is None:
        eval_every = max(iterations // 20, 1)
    if checkpoint_every is None:
        checkpoint_every = max(min(1000, iterations // 10), 1)

    recipe_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.to_dict().items()}
    meta = {"model": name, "model_class": type(net).__name__, "model_kwargs": build_kw, "scale": scale,
            "scales": list(scales), "recipe": recipe_name, "recipe_params": recipe_dict,
            "patch_size": p if not multi else {str(s): v for s, v in ps.items()}, "lr": lr or rec.lr,
            "iterations": iterations, "data": _describe(data), "eval_data": _describe(eval_data)}
    trainer = Trainer(net, sample, opt, loss=_loss_fn(rec, net, scale, iterations), schedule=schedule, clip=clip, evaluate=evaluate_fn,
                      eval_every=eval_every, checkpoint_every=checkpoint_every, out_dir=out_dir, seed=seed, meta=meta,
                      device=device, log=log, progress=progress, communicator=comm)
    if comm is None or comm.is_root:             # rank 0 owns the run folder's files
        for tmp in checkpoint.remove_stale_temporaries(out_dir):
            log(f"==> removed {tmp.name}, a half-written file left by a run that was killed while saving")
    resumed = _resume(trainer, out_dir, meta, opt, schedule, iterations, log) if resume else None
    if resumed is None:
        evals = f"evaluating on {_describe(eval_data)} every {eval_every}" if eval_data is not None else "no evaluation"
        log(f"==> starting fresh in {out_dir} ({iterations} steps, {evals})")
    trainer.run(iterations)
    last = checkpoint.latest(out_dir)
    final = None
    if eval_items is not None and (comm is None or comm.is_root):
        per_scale = {}
        for s in scales:
            if hasattr(net, "set_scale"):
                net.set_scale(s)
            per_scale[s] = _run_eval(net, eval_items[s], s, dataset=label,
                                     method=f"{key} x{s} ({recipe_name}, {trainer.step} steps)")
            r_s = per_scale[s]
            log(f"==> {r_s['method']}: {r_s['psnr']:.3f} dB / {r_s['ssim']:.4f} on {label}  ({r_s['protocol']})")
        if hasattr(net, "set_scale"):
            net.set_scale(scale)
        final = dict(per_scale[scale])
        if multi:
            final["per_scale"] = {s: {"psnr": r_s["psnr"], "ssim": r_s["ssim"]} for s, r_s in per_scale.items()}
        final.update(_baselines(eval_data, name, scale, log))
    log(f"==> checkpoint {last}; load it with tinysr.load({str(last)!r})")
    return TrainResult(model=net, history=trainer.history, metrics=final, out_dir=out_dir, checkpoint=last,
                       resumed_from=resumed, seconds=time.time() - t_start, recipe=recipe_dict)


def _resume(trainer, out_dir, meta, opt, schedule, iterations, log):
    """Continue ``trainer`` from the newest checkpoint in ``out_dir`` that reads back (naming any newer one
    skipped, and why); returns its path, or None for a fresh run.  The checkpoint's run must be this one
    (:func:`_check_same_run`) up to the rate, the clipping and the patch size: those changes are logged,
    recorded in ``history.json`` under ``"changes"``, and a new rate takes over through the schedule."""
    latest, loaded, skipped = checkpoint.newest_valid(out_dir)
    for bad, why in skipped:
        log(f"==> skipping {bad}: {why}")
    if latest is None and skipped:
        raise ValueError(f"no checkpoint in {out_dir} can be read ({len(skipped)} tried, the newest: "
                         f"{skipped[0][1]}); move them elsewhere to start this run afresh")
    if latest is None:
        return None
    old = loaded[2]
    changes = _check_same_run(latest, old, meta)
    fresh_lrs = [g["initial_lr"] for g in opt.param_groups]
    resumed = trainer.resume(latest, loaded)
    log(f"==> resuming from {resumed} at step {trainer.step} of {iterations}")
    if changes:
        if "lr" in changes:
            # the checkpoint's optimiser state carries the old rates; the new base rate (and the
            # per-layer rates in proportion) takes over from here, through the schedule if any
            for g, lr0 in zip(opt.param_groups, fresh_lrs):
                g["initial_lr"] = g["lr"] = lr0
            if schedule is not None:
                schedule.load_state_dict(schedule.state_dict())
        trainer.history.setdefault("changes", []).append({"step": trainer.step, **changes})
        log("==> changed on resume (recorded in history.json): " + "; ".join(
            f"{k} {v['from']!r} -> {v['to']!r}" for k, v in changes.items()))
    if old.get("iterations") not in (None, iterations):
        log(f"==> the run was planned for {old['iterations']} steps and now runs to {iterations}: the "
            f"learning-rate schedule is re-planned over {iterations} steps from step {trainer.step}")
    return resumed


def _baselines(eval_data, name, scale, log):
    """What to read a run's final PSNR against: bicubic on the same images (``bicubic_psnr``) and how long
    the shipped weights of this network trained (``shipped_steps``: ``(name, steps)`` or None) -- a few
    hundred steps is far from either, which the final line should say rather than leave to guesswork."""
    bic = evaluate("bicubic", eval_data, scale=scale)["psnr"]
    shipped = [(k, v["steps"]) for k, v in shipped_weights().items()
               if v.get("model") == name and v.get("scale") == scale and v.get("steps")]
    log(f"==> bicubic on the same images: {bic:.3f} dB" + (
        f"; the shipped {shipped[0][0]} trained {shipped[0][1]:,} steps" if shipped else ""))
    return {"bicubic_psnr": bic, "shipped_steps": shipped[0] if shipped else None}


# What makes two runs the same run: resuming with any of these changed would silently train a model that
# no single command describes.  The length (``iterations``) may change: that extends or shortens a run.
_SAME_RUN_KEYS = ("model", "scale", "scales", "recipe", "model_kwargs", "recipe_params", "data")
# What a resumed run may change, as the divergence guard advises (a lower rate, clipping) or as a
# curriculum does (small patches early, larger later); each change is recorded in history.json.
_RESUME_MAY_CHANGE = ("lr", "patch_size")
_RECIPE_MAY_CHANGE = ("grad_clip",)


def _check_same_run(path, old, meta):
    """Refuse to resume from ``path`` when its run differs from this one in anything but its length, the
    learning rate, the gradient clipping and the patch size; returns those changes as
    ``{key: {"from": old, "to": new}}`` (empty when nothing changed).  A refusal names only the
    fields that differ (for a recipe, only its differing entries)."""
    def norm(v):
        return json.loads(json.dumps(v, sort_keys=True, default=str))
    old = dict(old)
    if isinstance(old.get("recipe_params"), dict):
        # A recipe field added after the checkpoint was written is absent there; the run used its default.
        defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                    for f in dataclasses.fields(TrainingRecipe)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        old["recipe_params"] = {**defaults, **old["recipe_params"]}
    changes = {}
    old_rp, new_rp = old.get("recipe_params"), meta.get("recipe_params")
    if isinstance(old_rp, dict) and isinstance(new_rp, dict):
        for k in _RECIPE_MAY_CHANGE:
            if norm(old_rp.get(k)) != norm(new_rp.get(k)):
                changes[k] = {"from": old_rp.get(k), "to": new_rp.get(k)}
        old["recipe_params"] = {**old_rp, **{k: new_rp.get(k) for k in _RECIPE_MAY_CHANGE}}
    for k in _RESUME_MAY_CHANGE:
        if k in old and norm(old[k]) != norm(meta.get(k)):
            changes[k] = {"from": old[k], "to": meta.get(k)}
    diff = []
    for k in _SAME_RUN_KEYS:
        if k not in old or norm(old[k]) == norm(meta[k]):
            continue
        if isinstance(old[k], dict) and isinstance(meta[k], dict):
            a, b = norm(old[k]), norm(meta[k])
            diff += [f"{k}.{f} {a.get(f)!r} there, {b.get(f)!r} now" for f in sorted(set(a) | set(b))
                     if a.get(f) != b.get(f)]
        else:
            diff.append(f"{k} {old[k]!r} there, {meta[k]!r} now")
    diff += [f"{k} {old.get(k)!r} there, {meta[k]!r} now" for k in ("model", "scale", "recipe") if k not in old]
    if diff:
        raise ValueError(f"{path} belongs to another run ({'; '.join(diff)}); resuming would mix two "
                         "configurations, so choose another out_dir (or repeat that run's settings to continue it)")
    return changes


def _describe(data):
    """A short JSON-able name for a data argument (names and folders as given, arrays as '<array>')."""
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, np.ndarray):
        return f"<array {data.shape}>"
    if data and all(isinstance(d, np.ndarray) for d in data):
        return f"<{len(data)} arrays>"           # not one entry per image: a log line, not a listing
    return [_describe(d) for d in data]


_FAMILY = {"bicubic-y": "vdsr", "lr-y": "fsrcnn", "lr-rgb": "edsr_baseline"}


def _recipe_family(key, convention, recipe):
    """Whose recipe a model trains with: its own, or for ``recipe="fast"`` without one of its own (and for
    custom Modules), that of the fast family sharing its input convention."""
    return key if key in FAST_RECIPES or recipe != "fast" else _FAMILY[convention]
