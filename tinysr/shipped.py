"""The weights tinysr ships and the checkpoints it writes: finding them, loading them, saving them.

::

    model = tinysr.load("srcnn-x3")                                 # a shipped name (tinysr/weights/)
    model = tinysr.load("runs/srcnn-x3-fast-seed0/step_0002000.npz")  # a checkpoint of tinysr.train
    tinysr.api.save_weights(model, "srcnn.npz", dtype="float16")     # weights only, half the bytes

``tinysr/weights/`` holds ``<name>.npz`` files and ``manifest.json``, which records for each one the
network, its build arguments, its scale, the command that reproduces it and the PSNR it reaches.  A
checkpoint's JSON metadata names the registry network and its build arguments, so :func:`load` rebuilds
the network before it loads the weights -- no pickle, no code in the file.

The package stays small: a shipped file is at most :data:`SHIP_LIMIT_BYTES` and all of
``tinysr/weights/`` at most :data:`SHIP_TOTAL_LIMIT_BYTES` (:func:`check_ship_size`); larger networks
publish their checkpoint and training command instead.  :func:`tinysr.evaluation.ship_weights` is the
maintainer tool that adds a file, measured as shipped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import backend, checkpoint
from .version import __version__
from .models.common import SRModel

__all__ = ["WEIGHTS_DIR", "SHIP_LIMIT_BYTES", "SHIP_TOTAL_LIMIT_BYTES", "read_manifest", "shipped_weights",
           "training_curve", "load_checkpoint_file", "load", "resolve_model", "save_weights", "check_ship_size",
           "stage_weights", "record_shipped"]

#: Where the weights that tinysr trained itself live (``<name>.npz`` + ``manifest.json``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: The largest file the package ships for one network (4 MiB: EDSR-baseline in float16 is about 2.7 MB).
SHIP_LIMIT_BYTES = 4 * 2 ** 20
#: The most that all files in ``tinysr/weights/`` may take together (20 MiB), so the package stays small.
SHIP_TOTAL_LIMIT_BYTES = 20 * 2 ** 20


def read_manifest():
    """``tinysr/weights/manifest.json`` as a dict (empty when there is none); keys with ``_`` are notes."""
    path = WEIGHTS_DIR / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def shipped_weights():
    """``{name: entry}`` of the weights shipped in ``tinysr/weights`` (empty when none are).

    Each entry records the model name, its build keyword arguments, the scale, the exact command that
    reproduces it, the training time on the machine that trained it, and its measured PSNR.
    """
    return {k: v for k, v in read_manifest().items() if not k.startswith("_")}


def load_checkpoint_file(path, *, label=None):
    """``(model, info)`` from a checkpoint file: the registry network its metadata names, with its weights.

    ``info`` holds the run's model, build arguments, scale, recipe, seed, step, tinysr version and data,
    the ``path`` and a ``label`` to print with its scores.  A missing file, a folder, an unreadable file
    and a checkpoint of a custom Module (which tinysr cannot rebuild) are each refused in one sentence.
    """
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
    * a path is a checkpoint written by :func:`tinysr.fit.train` (``out_dir/step_*.npz``) or by
      :func:`save_weights`: its metadata names the model, its build arguments and its scale, so the
      network is rebuilt and its weights loaded.  Files are read without pickle
      (:func:`tinysr.models.readers.read_npz`).

    With ``for_inference`` (the default) a valid-convolution SRCNN comes back as its replicate
    'same'-padding twin (:meth:`~tinysr.models.SRModel.inference_model`), ready for whole images.  The
    model is in eval mode, on ``device``, and carries ``model.tinysr_meta`` (model, kwargs, scale,
    recipe, seed, step, ...).
    """
    backend.check_device(device)
    key = os.fspath(name_or_path)
    p = Path(key)
    # a bare shipped name stays a name even where a folder of that name (a run's) is in the working directory
    looks_like_path = (p.suffix.lower() == ".npz" or os.sep in key or "/" in key
                       or (p.exists() and key.lower() not in shipped_weights()))
    if looks_like_path:
        model, info = load_checkpoint_file(p)
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
        model, info = load_checkpoint_file(WEIGHTS_DIR / entry.get("file", f"{name}.npz"), label=name)
        info["manifest"] = entry
    if for_inference:
        model = model.inference_model()
    if backend.parse_device(device)[0] != "cpu":
        model.to(device)
    model.tinysr_meta = info
    return model.eval()


def resolve_model(model, scale):
    """A Module from a Module, a shipped name, a registry name or a checkpoint path.

    A registry name with a ``scale`` means the shipped weights for it: ``("fsrcnn", 3)`` loads the
    shipped ``"fsrcnn-x3"``; anything else that is a name or a path goes to :func:`load`.
    """
    if isinstance(model, (str, os.PathLike)):
        key = os.fspath(model)
        from .models.registry import registry
        if key.lower().replace("-", "_") in registry() and not Path(key).exists() and scale is not None:
            key = f"{key.lower()}-x{scale}"       # "fsrcnn" + scale 3 -> the shipped "fsrcnn-x3"
        model = load(key)
    return model


def save_weights(model, path, meta=None, dtype=None):
    """Write ``model``'s weights as a small checkpoint (no optimiser state) that :func:`load` reads.

    ``meta`` must name what rebuilds the network: ``model`` (registry name), ``model_kwargs``,
    ``scale``; anything else JSON-serialisable is kept (recipe, seed, step, command, PSNR).
    ``dtype="float16"`` halves the file; :func:`load` returns float32 weights either way.
    """
    meta = dict(meta or {})
    if "model" not in meta:
        # a zoo network answers for itself what rebuilds it; a custom Module is saved as one
        own = isinstance(model, SRModel)
        meta.update(model=model.registry_name if own else None,
                    model_kwargs=(model.build_arguments() if own else None) or {},
                    scale=getattr(model, "scale", None))
    meta.setdefault("tinysr_version", __version__)
    checkpoint.save(path, model, None, meta, weights_dtype=dtype)
    return Path(path)


def check_ship_size(size, name, dtype, *, replacing=None):
    """Refuse a ``size``-byte file ``name`` that would break a limit of the shipped weights.

    Two limits keep the package small: one file at most :data:`SHIP_LIMIT_BYTES`, and all files in
    :data:`WEIGHTS_DIR` together at most :data:`SHIP_TOTAL_LIMIT_BYTES` (a file ``replacing`` an
    existing one frees that one's bytes; half-written candidates, whose names start with a dot, are not
    counted).  Each refusal is one sentence that names the size and what to do instead.
    """
    mb = 2 ** 20
    if size > SHIP_LIMIT_BYTES:
        raise ValueError(f"{name} would be a {size / mb:.1f} MB file in {dtype}; the package ships weights of at "
                         f"most {SHIP_LIMIT_BYTES / mb:.0f} MB a file (try dtype='float16', or publish the "
                         "checkpoint and its training command instead)")
    others = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir()
                 if p.is_file() and not p.name.startswith(".") and p.name != replacing) if WEIGHTS_DIR.is_dir() else 0
    if others + size > SHIP_TOTAL_LIMIT_BYTES:
        raise ValueError(f"{name} ({size / mb:.1f} MB in {dtype}) would bring tinysr/weights/ to "
                         f"{(others + size) / mb:.1f} MB, above the {SHIP_TOTAL_LIMIT_BYTES / mb:.0f} MB the package "
                         "ships in all (remove a shipped file first, try dtype='float16', or publish the checkpoint "
                         "and its training command instead)")


def stage_weights(checkpoint_path, name, dtype="float32"):
    """Copy a checkpoint's weights into ``tinysr/weights/<name>.npz``; returns ``(path, metadata kept, the run's
    history)``.

    The file holds the weights only (no optimiser state, no history), in ``dtype`` (``"float16"`` halves
    it; :func:`load` returns float32 either way), and the metadata that rebuilds the network and tells
    the run apart (model, build arguments, scale, recipe, seed, step, data, ...).  It is written to a
    candidate file first and moves into place only within the limits of :func:`check_ship_size`, so a
    refused file leaves ``tinysr/weights/`` as it was.
    """
    state_model, _ = load_checkpoint_file(checkpoint_path)
    _, _, meta = checkpoint.load(checkpoint_path)
    keep = {k: meta.get(k) for k in ("model", "model_kwargs", "scale", "recipe", "recipe_params", "seed", "step",
                                     "data", "patch_size", "lr", "iterations", "tinysr_version", "init_from")}
    # a run continued from trained weights counts the steps those weights had already had
    keep["step"] = int(meta.get("step") or 0) + int((meta.get("init_from") or {}).get("steps", 0))
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS_DIR / f"{name}.npz"
    tmp = WEIGHTS_DIR / f".{name}.candidate.npz"
    save_weights(state_model, tmp, keep, dtype=None if dtype == "float32" else dtype)
    try:
        check_ship_size(tmp.stat().st_size, name, dtype, replacing=target.name)
    except ValueError:
        tmp.unlink()
        raise
    os.replace(tmp, target)
    return target, keep, meta.get("history", {})


def training_curve(history, init_from=None, manifest=None, scale=None):
    """The quality a run reached against the compute it spent: one point per evaluation in ``history``
    (a checkpoint's), ``{"step", "cpu_hours", "psnr"}``, where CPU hours add up the training seconds of each
    interval between evaluations times the threads the run used then.  A run started from shipped weights
    (``init_from``, as :func:`tinysr.fit.train` records it) continues the curve those weights shipped with,
    in steps and in hours; weights of another scale than the run's (``scale``: x4 from x2) pass on their
    steps and hours but not their points, whose PSNR measures another task.  The source's curve is the one
    ``init_from`` recorded at the run's start; a record without one takes the points of ``manifest``'s entry
    up to the steps the run started from."""
    manifest = read_manifest() if manifest is None else manifest
    init_from = init_from or {}
    steps0 = int(init_from.get("steps", 0))
    start = init_from if "curve" in init_from else manifest.get(init_from.get("weights"), {})
    earlier = [p for p in start.get("curve", []) if p["step"] <= steps0]
    hours0 = earlier[-1]["cpu_hours"] if earlier else 0.0
    before = earlier if scale is None or start.get("scale") == scale else []
    points, hours, seconds = [], hours0, 0.0
    for e in history.get("eval", []):
        if "psnr" in e and "seconds" in e:
            # a resumed run may use another thread count: each interval counts at the threads of its end
            hours += (e["seconds"] - seconds) * e.get("threads", 1) / 3600
            seconds = e["seconds"]
            points.append({"step": steps0 + int(e["step"]), "psnr": round(float(e["psnr"]), 3),
                           "cpu_hours": round(hours, 3)})
    return before + points


def record_shipped(name, entry):
    """Write ``entry`` under ``name`` into ``tinysr/weights/manifest.json`` (atomically; other entries kept)."""
    manifest = read_manifest()
    manifest[name] = entry
    checkpoint.atomic_write_text(WEIGHTS_DIR / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
