"""Training a super-resolution network: :func:`train`, from a name to a checkpoint and its PSNR.

::

    result = tinysr.train("srcnn", scale=3, iterations=2000)      # patches, Adam, checkpoints, PSNR
    print(result.metrics["psnr"])                                  # Set5, under the papers' protocol

A paper's training section leaves much implicit; :func:`train` spells it out in named steps, each a
function below:

1. ``_check_options`` -- every number at the boundary, before any work;
2. ``_build_network`` -- the network and its recipe (:mod:`tinysr.recipes`), for one scale or several;
3. :func:`tinysr.sampling.run_sampler` -- the training images and their patch sampler;
4. ``_run_length`` -- how many optimiser steps the run takes;
5. ``_evaluator`` -- the periodic evaluation on the test set (:func:`tinysr.evaluation.run_eval`);
6. the :class:`~tinysr.trainer.Trainer` with the recipe's optimiser, schedule, clipping and loss;
7. :meth:`~tinysr.trainer.Trainer.begin` -- tidy the run folder and continue an interrupted run, if it is
   the same run (:func:`check_same_run` beside the Trainer's own seed test);
8. ``_final_report`` -- the final PSNR/SSIM, beside bicubic and the shipped weights.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from . import backend, checkpoint, options
from .evaluation import baselines, check_eval_size, describe, input_convention, prepare_eval, run_eval
from .models.common import SRModel
from .models.registry import TrainingRecipe
from .recipes import loss_fn, make_clip, make_optimizer, make_schedule, patch_for, recipe_family, recipe_for
# load_training_images and training_sampler are re-exported: they are part of training's public surface
from .sampling import load_training_images, run_sampler, training_sampler

__all__ = ["train", "TrainResult", "training_sampler", "load_training_images", "check_same_run"]


def _log_default(msg):
    print(msg, flush=True)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``model`` the trained network (as trained; its ``inference_model()`` is the whole-image twin of
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


def train(model="srcnn", *, scale=3, device="cpu", data="T91", eval_data="Set5", recipe="fast", iterations=None,
          epochs=None, batch_size=None, patch_size=None, lr=None, clip=None, seed=0, out_dir=None, resume=True,
          eval_every=None, checkpoint_every=None, model_kwargs=None, init_from=None, progress=True, log=_log_default):
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
    iterations / epochs : optimiser steps, or passes over the recipe's sub-images (or over
        non-overlapping patches, for random crops); default: the recipe's.
    batch_size, patch_size, lr : override the recipe.
    clip : clip the gradients' global L2 norm to this value (replacing the recipe's clipping), or
        ``"off"`` for none; default: the recipe's.
    seed : seeds the initialisation and every random crop; a run is a function of its seed.
    out_dir : checkpoints, ``history.json`` and ``curves.png`` (default ``runs/<model>-x<s>-<recipe>-seed<seed>``).
    resume : continue from the newest checkpoint in ``out_dir`` that reads back (naming any newer one skipped);
        ``resume=False`` refuses an ``out_dir`` with checkpoints.  A resumed run may change ``lr``, ``clip``
        and ``patch_size`` (each change logged under ``"changes"`` in ``history.json``), and nothing else.
    model_kwargs : build arguments for a registry model (e.g. ``{"variant": "9-5-5"}``).
    init_from : trained weights to start from (a shipped name or a checkpoint), copying every parameter of
        the same name and shape with a fresh optimiser: EDSR's x4 starts from its x2 (Lim et al. 2017).

    A loss that turns NaN or explodes stops the run (:class:`tinysr.trainer.TrainingDiverged`) with the last
    good checkpoint kept; so does Ctrl-C: the same call resumes.  Every numeric argument is checked first
    (:mod:`tinysr.options`), a wrong one refused in one sentence before anything is read or written.
    """
    from .distributed import from_environment
    from .trainer import Trainer
    t_start, o = time.time(), _check_options(scale, device, iterations=iterations, epochs=epochs, lr=lr, clip=clip,
                                             batch_size=batch_size, patch_size=patch_size, seed=seed,
                                             eval_every=eval_every, checkpoint_every=checkpoint_every)
    scales, device, seed = o["scales"], o["device"], o["seed"]
    comm = from_environment(device)                  # under `mpiexec -n N`: one rank of a data-parallel run
    if comm is not None and not comm.is_root:
        log, progress = (lambda *args, **kwargs: None), False     # rank 0 speaks for the run
    net, name, key, build_kw, rec, recipe_name = _build_network(model, scales, recipe, seed, model_kwargs)
    rec = _override_recipe(rec, o["batch_size"], o["clip"])
    started_from = _init_from(net, init_from, log) if init_from is not None else None
    ps = {s: patch_for(rec, s, o["patch_size"], key, recipe_name) for s in scales}
    out_dir = _out_dir(out_dir, key, scales, recipe_name, seed, resume)
    if device != "cpu":
        net.to(device)
    _announce(key, scales, recipe_name, rec, o["lr"], ps, data, device, comm, log)
    sample, steps_per_epoch = run_sampler(net, data, rec, recipe_name, ps, scales, log)
    iterations = _run_length(o["iterations"], o["epochs"], rec, steps_per_epoch)
    opt = make_optimizer(net, rec, o["lr"])
    schedule = make_schedule(opt, rec, iterations, steps_per_epoch, log)
    clip_fn = make_clip(net, rec)
    evaluate_fn, eval_items, label = _evaluator(net, eval_data, scales)
    eval_every, checkpoint_every = _cadence(iterations, o["eval_every"], o["checkpoint_every"])
    meta = {"model": name, "model_class": type(net).__name__, "model_kwargs": build_kw, "scale": scales[0],
            "scales": list(scales), "recipe": recipe_name, "recipe_params": _recipe_dict(rec),
            "patch_size": ps[scales[0]] if len(scales) == 1 else {str(s): v for s, v in ps.items()},
            "lr": o["lr"] or rec.lr, "iterations": iterations, "data": describe(data),
            "eval_data": describe(eval_data), "init_from": started_from}
    trainer = Trainer(net, sample, opt, loss=loss_fn(rec, net, scales[0], iterations), schedule=schedule,
                      clip=clip_fn, evaluate=evaluate_fn, eval_every=eval_every, checkpoint_every=checkpoint_every,
                      out_dir=out_dir, seed=seed, meta=meta, device=device, log=log, progress=progress,
                      communicator=comm, check_run=_resume_keeping_start)
    evals = f"evaluating on {describe(eval_data)} every {eval_every}" if eval_data is not None else "no evaluation"
    resumed = trainer.begin(iterations, resume=resume, plan=evals)
    trainer.run(iterations)
    last = checkpoint.latest(out_dir)
    final = (_final_report(net, eval_items, label, scales, (key, recipe_name, trainer.step), eval_data, name, log)
             if eval_items is not None and (comm is None or comm.is_root) else None)
    log(f"==> checkpoint {last}; load it with tinysr.load({str(last)!r})")
    return TrainResult(model=net, history=trainer.history, metrics=final, out_dir=out_dir, checkpoint=last,
                       resumed_from=resumed, seconds=time.time() - t_start, recipe=_recipe_dict(rec))


def _init_from(net, source, log):
    """Copy into ``net`` every parameter of the weights ``source`` (a shipped name or a checkpoint path) that
    has the same name and shape; returns what the checkpoint records of the start: the source, the steps
    it had been trained for and how many arrays were copied.  Weights that share nothing are refused."""
    from .shipped import load
    src = load(source, for_inference=False)
    theirs, ours = src.state_dict(), net.state_dict()
    same = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not same:
        raise ValueError(f"the weights {source!r} ({type(src).__name__}) share no parameter of the same name and "
                         f"shape with this {type(net).__name__}: give weights of the same architecture")
    net.load_state_dict({**ours, **same})
    fresh = [k for k in ours if k not in same]
    log(f"==> starting from the weights {source}: {len(same)} of {len(ours)} parameter arrays copied"
        + (f"; initialised afresh: {', '.join(fresh)}" if fresh else ""))
    start = {"weights": str(source), "steps": int(src.tinysr_meta.get("step") or 0), "copied": len(same)}
    entry = src.tinysr_meta.get("manifest")
    if entry:
        # Shipped weights are re-shipped as the runs continuing them improve: the run keeps what they cost
        # and how they got there at its start, so its own curve and hours never count a later version.
        start.update(train_seconds=entry.get("train_seconds", 0), scale=entry.get("scale"),
                     curve=entry.get("curve", []))
    return start


def _resume_keeping_start(path, old, meta):
    """The resume test of :func:`train`: :func:`check_same_run`, and then the resumed run keeps the start it was
    made from (``meta["init_from"]`` becomes the checkpoint's), since its source may have been re-shipped since."""
    changes = check_same_run(path, old, meta)
    if "init_from" in old:
        meta["init_from"] = old["init_from"]
    return changes


def _override_recipe(rec, batch_size, clip):
    """The recipe with the caller's ``batch_size`` and ``clip`` (a global-norm bound, or ``"off"``) in
    place of its own, where given."""
    rec = replace(rec, batch_size=int(batch_size or rec.batch_size))
    if clip is not None:
        rec = replace(rec, grad_clip=None if clip == "off" else {"type": "norm", "max_norm": float(clip)})
    return rec


def _recipe_dict(rec):
    """The recipe as the JSON-able dict a checkpoint records (tuples as lists, as JSON reads them back)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.to_dict().items()}


def _cadence(iterations, eval_every, checkpoint_every):
    """``(eval_every, checkpoint_every)`` in steps: the caller's, else 20 evaluations a run and a
    checkpoint every tenth of it (at most every 1,000 steps, so an interrupted long run loses little)."""
    if eval_every is None:
        eval_every = max(iterations // 20, 1)
    if checkpoint_every is None:
        checkpoint_every = max(min(1000, iterations // 10), 1)
    return eval_every, checkpoint_every


def _check_options(scale, device, **numbers):
    """Every argument of :func:`train` that can be wrong on its own, checked before any work.

    The numbers follow the one rule table shared with the command line (:mod:`tinysr.options`), so a
    wrong one is refused in the same sentence in Python and in the CLI, before anything is read or
    written; the device is checked next, so a missing GPU fails at once with what to install.
    ``scale`` may be one factor or several distinct ones (VDSR's multi-scale training, MDSR): they come
    back as the tuple ``o["scales"]``, the first one the run's main scale.
    """
    o = options.check_all(**numbers)
    if o["iterations"] is not None and o["epochs"] is not None:
        raise ValueError("give iterations or epochs, not both")
    o["device"] = backend.check_device(device)
    scales = tuple(options.check("scale", v) for v in (scale if isinstance(scale, (list, tuple)) else (scale,)))
    if not scales or len(set(scales)) != len(scales):
        raise ValueError(f"scale must be one factor or distinct factors, got {scale!r}")
    o["scales"] = scales
    return o


def _build_network(model, scales, recipe, seed, model_kwargs):
    """``(net, name, key, build_kw, recipe, recipe_name)``: the network a run trains, and its recipe.

    ``model`` is a registry name -- the network is built for ``scales[0]`` after seeding the
    initialisation, with the recipe's build arguments under the caller's ``model_kwargs`` -- or a
    Module, trained as it is.  ``name`` is the registry name that rebuilds it (None for a custom
    Module), ``key`` the name runs and recipes go by (``"custom"`` for one), ``build_kw`` its build
    arguments.  A network without a fast recipe of its own borrows that of its input convention's
    family (:func:`tinysr.recipes.recipe_family`).
    """
    from .models.registry import build, get_spec
    from .nn import Module, init
    scale, multi = scales[0], len(scales) > 1
    model_kwargs = dict(model_kwargs or {})
    if isinstance(model, Module):
        net = model
        own = isinstance(net, SRModel)          # a zoo network answers for itself what rebuilds it
        name, build_kw = (net.registry_name, net.build_arguments()) if own else (None, None)
        if model_kwargs:
            raise ValueError("model_kwargs only apply to a model given by name")
        if getattr(net, "scale", None) is not None and int(net.scale) not in scales and not multi:
            raise ValueError(f"the model is built for x{net.scale} but scale={scale}")
        key = name or "custom"
        if key == "custom" and recipe == "paper":
            raise ValueError("recipe='paper' needs a registry model; give a TrainingRecipe, or recipe='fast', for "
                             "a custom one")
        rec, recipe_name = recipe_for(recipe_family(key, input_convention(net), recipe), recipe)
    else:
        spec = get_spec(model)
        name = key = spec.name
        for s in scales:
            if s not in spec.scales:
                raise ValueError(f"{name} supports scales {', '.join(f'x{v}' for v in spec.scales)}; got x{s}")
        if spec.input_convention not in ("bicubic-y", "lr-y", "lr-rgb"):
            raise ValueError(f"{name} is not a super-resolution network that tinysr.train can train on its own")
        family = recipe_family(key, spec.input_convention, recipe)
        rec, recipe_name = recipe_for(family, recipe)
        if family == key:     # a recipe borrowed from another family does not impose its build arguments
            model_kwargs = {**(rec.model_kwargs or {}), **model_kwargs}
        build_kw = {**spec.defaults, **model_kwargs}
        init.seed(seed)
        net = build(name, scale=int(scale), **model_kwargs)
    if multi:
        _serve_scales(net, key, scales)
    return net, name, key, build_kw, rec, recipe_name


def _serve_scales(net, key, scales):
    """Make ``net`` serve every one of ``scales``, or refuse in one sentence.

    A pre-upsampling network sees bicubic images of any scale, so one network learns them all (VDSR,
    Kim et al. 2016 sec. 4.3); MDSR has a branch per scale (Lim et al. 2017); a network that upsamples
    by a fixed factor cannot.
    """
    if hasattr(net, "set_scale"):
        missing = [s for s in scales if s not in net.scales]
        if missing:
            raise ValueError(f"this {type(net).__name__} has no branch for x{missing[0]} (its scales: "
                             f"{net.scales})")
    elif input_convention(net) == "bicubic-y":
        net.scales = scales
    else:
        raise ValueError(f"{key} upsamples by a fixed factor: it cannot train on several scales at once "
                         "(VDSR-style networks and MDSR can)")


def _out_dir(out_dir, key, scales, recipe_name, seed, resume):
    """The run folder: ``out_dir``, or ``runs/<key>-x<scales>-<recipe>-seed<seed>``.

    Without ``resume`` a folder that already holds checkpoints is refused: a fresh run there would mix
    its checkpoints with an earlier run's.
    """
    if out_dir is None:
        out_dir = Path("runs") / f"{key}-x{'+'.join(map(str, scales))}-{recipe_name}-seed{seed}"
    out_dir = Path(out_dir)
    if not resume and checkpoint.latest(out_dir) is not None:
        raise ValueError(f"{out_dir} already holds checkpoints of an earlier run; to continue it run without --fresh "
                         "(resume=True in Python), or choose another output folder")
    return out_dir


def _announce(key, scales, recipe_name, rec, lr, ps, data, device, comm, log):
    """Log what the run is (network, scales, recipe, optimiser, rate, batch, patch, data, device) and,
    under MPI, how each step's batch is split over the ranks (refusing a batch smaller than the ranks)."""
    patch = ps[scales[0]] if len(scales) == 1 else ps
    log(f"tinysr.train: {key} x{'+x'.join(map(str, scales))}, recipe {recipe_name!r} ({rec.optimizer}, lr "
        f"{lr or rec.lr:g}, batch {rec.batch_size}, patch {patch}), data {describe(data)}, device {device}")
    if comm is not None:
        if rec.batch_size < comm.size:
            raise ValueError(f"a batch of {rec.batch_size} patches cannot be split over {comm.size} ranks: use "
                             f"--batch-size {comm.size} or more, or fewer ranks")
        log(f"  data parallel over {comm.size} ranks: each takes {rec.batch_size / comm.size:g} of the "
            f"{rec.batch_size} patches of a step, and the gradients are all-reduced")


def _run_length(iterations, epochs, rec, steps_per_epoch):
    """Optimiser steps of the run: ``iterations``, else ``epochs`` epochs, else the recipe's own length
    (its ``iterations``, or its ``epochs``, or one epoch)."""
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
    return iterations


def _evaluator(net, eval_data, scales):
    """``(evaluate(model) -> {"psnr": ...}, prepared items per scale, data set label)`` for the Trainer's
    periodic evaluations, or ``(None, None, None)`` without ``eval_data``.

    The test images are read, checked and prepared once, before training starts
    (:func:`tinysr.evaluation.prepare_eval`, in ``net``'s input convention); each evaluation then only
    runs the network and scores PSNR (SSIM waits for the final report).  With several scales it
    reports ``psnr_x<s>`` for each.
    """
    from .data.datasets import named_images
    if eval_data is None:
        return None, None, None
    conv = input_convention(net)
    label, eval_images = named_images(eval_data)
    items = {s: [(n, *prepare_eval(check_eval_size(hr, s, n), s, conv)) for n, hr in eval_images] for s in scales}

    def evaluate(m):
        out = {}
        for s in scales:
            if hasattr(m, "set_scale"):
                m.set_scale(s)
            key = "psnr" if len(scales) == 1 else f"psnr_x{s}"
            out[key] = run_eval(m, items[s], s, with_ssim=False, dataset=label)["psnr"]
        return out
    return evaluate, items, label


def _final_report(net, eval_items, label, scales, run, eval_data, name, log):
    """The final evaluation report of a run: PSNR and SSIM on ``eval_data`` at each scale, logged.

    ``run`` is ``(key, recipe_name, steps)`` for the report's method line.  The report is that of the
    first scale, with ``per_scale`` scores when there are several, and the numbers to read it against:
    bicubic on the same images and how long the shipped weights trained
    (:func:`tinysr.evaluation.baselines`).
    """
    key, recipe_name, steps = run
    per_scale = {}
    for s in scales:
        if hasattr(net, "set_scale"):
            net.set_scale(s)
        r_s = per_scale[s] = run_eval(net, eval_items[s], s, dataset=label,
                                      method=f"{key} x{s} ({recipe_name}, {steps} steps)")
        log(f"==> {r_s['method']}: {r_s['psnr']:.3f} dB / {r_s['ssim']:.4f} on {label}  ({r_s['protocol']})")
    if hasattr(net, "set_scale"):
        net.set_scale(scales[0])
    final = dict(per_scale[scales[0]])
    if len(scales) > 1:
        final["per_scale"] = {s: {"psnr": r_s["psnr"], "ssim": r_s["ssim"]} for s, r_s in per_scale.items()}
    final.update(baselines(eval_data, name, scales[0], log))
    return final


# What makes two runs the same run: resuming with any of these changed would silently train a model that
# no single command describes.  The length (``iterations``) may change: that extends or shortens a run.
_SAME_RUN_KEYS = ("model", "scale", "scales", "recipe", "model_kwargs", "recipe_params", "data", "init_from")
# What a resumed run may change, as the divergence guard advises (a lower rate, clipping) or as a
# curriculum does (small patches early, larger later); each change is recorded in history.json.
_RESUME_MAY_CHANGE = ("lr", "patch_size")
_RECIPE_MAY_CHANGE = ("grad_clip",)


def check_same_run(path, old, meta):
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
    # A run started from shipped weights is the same run whichever version of them is shipped now: only the
    # source's name tells runs apart.
    old, meta = dict(old), dict(meta)
    for m in (old, meta):
        if isinstance(m.get("init_from"), dict):
            m["init_from"] = m["init_from"].get("weights")
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


