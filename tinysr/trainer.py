"""The training loop: batches, one *step* per iteration, periodic evaluation, atomic checkpoints, resume,
and a guard against a loss that turns NaN or explodes.

:class:`Trainer` is model-agnostic: it takes a *sampler* ``sample(rng) -> (input, target)`` of NumPy
float32 NCHW batches and a *step*, the object that turns batches into one optimisation step.  The
default step, :class:`SupervisedStep`, is the one every network of the papers trains with (loss,
backward, clipping, optimiser and schedule steps); SRGAN's alternating discriminator and generator
updates (:class:`tinysr.gan.SRGANStep`) are another step run by the same loop.  Everything random in a
step comes from the trainer's own ``numpy.random.Generator``, whose state is saved in every checkpoint
beside the step's parameters and optimiser state; that is why a run that is killed and resumed ends
with exactly the parameters of a run that never stopped.
"""
import json
import math
import time
from pathlib import Path

import numpy as np

from . import checkpoint
from .version import __version__
from . import functional as F
from .autograd import Tensor, no_grad
from .backend import to_device


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the last good checkpoint is kept and no checkpoint is
    written from the diverged state."""


ADVICE = ("Lower the learning rate (--lr, or lr= in Python) or clip the gradients (--clip, or clip=), then run the "
          "same command again: it resumes from the last good checkpoint with the new setting")


class SupervisedStep:
    """One supervised optimisation step, the default step of a :class:`Trainer`: the loss of
    ``model(x)`` against ``y``, backward, the optional gradient clipping, the optimiser step and the LR
    schedule's step.

    A *step* is what the Trainer runs once per iteration.  Any object with these members can take this
    one's place (SRGAN's alternating step, :class:`tinysr.gan.SRGANStep`, is one):

    * ``step(batch, guard, done) -> dict``: one iteration after ``done`` earlier ones.  ``batch()`` draws
      the next batch ``(x, y)`` (Tensors on the device) from the trainer's generator;
      ``guard(name, value, watched=False)`` must see every loss before the update it drives is applied
      (it raises :class:`TrainingDiverged`).  Returns this iteration's value for each name in ``keys``.
    * ``keys``: the per-step entries of the history; ``watched``: the loss the divergence guard follows
      (a value ``explode_factor`` times the median of its recent values is "exploding").
    * ``loss(x, y, done) -> float``: the watched loss of the current parameters on one batch, tested
      before every checkpoint.
    * ``model``: a Module holding every parameter and buffer the step trains; ``optimizer``: anything with
      ``state_dict()`` / ``load_state_dict()`` of all optimiser state; ``schedule`` (or None).  A
      checkpoint holds these three and a resume restores them.
    * ``advice``: the sentence that ends a divergence message (what to change, how to continue).

    ``loss(pred, target)`` defaults to MSE; a loss with ``needs_model = True`` is called as
    ``loss(model, x, y, done)`` instead (DRCN's recursive supervision sees every recursion's
    prediction and changes its weighting with the step).  ``communicator``: the data-parallel
    :class:`tinysr.distributed.Communicator` that all-reduces the gradients (the Trainer's own).
    """
    keys, watched, advice = ("loss", "lr"), "loss", ADVICE

    def __init__(self, model, optimizer, loss=None, schedule=None, clip=None, communicator=None):
        self.model, self.optimizer, self.schedule, self.clip = model, optimizer, schedule, clip
        self.loss_fn = loss or F.mse_loss
        self.communicator = communicator

    def loss(self, x, y, done, keep_graph=False):
        """The loss of the current parameters on ``(x, y)`` (a Tensor with ``keep_graph``, else a float)."""
        # A diverging forward pass overflows; NumPy's RuntimeWarnings would only bury the sentence the
        # guard writes, which stops the run before the bad step is applied and says what to do.
        with np.errstate(over="ignore", invalid="ignore"):
            if getattr(self.loss_fn, "needs_model", False):
                loss = self.loss_fn(self.model, x, y, done)
            else:
                loss = self.loss_fn(self.model(x), y)
            return loss if keep_graph else loss.item()

    def __call__(self, batch, guard, done):
        x, y = batch()
        loss = self.loss(x, y, done, keep_graph=True)
        with np.errstate(over="ignore", invalid="ignore"):
            value = loss.item()
        if self.communicator is not None:          # gradients and loss of the global batch, on every rank
            value = self.communicator.backward_and_reduce(loss, self.model, self.optimizer)
        guard("training loss", value, watched=True)
        if self.communicator is None:
            self.optimizer.zero_grad()
            loss.backward()
        if self.clip is not None:
            self.clip(self.optimizer)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return {"loss": value, "lr": self.optimizer.param_groups[0]["lr"]}


class Trainer:
    """Runs ``iterations`` training steps with checkpoints every ``checkpoint_every``.

    Parameters
    ----------
    model : tinysr.nn.Module
    sample : callable(rng) -> (x, y)
        One training batch as NumPy float32 arrays (N, C, H, W).
    optimizer : tinysr.optim.Optimizer
    loss : callable(pred, target) -> Tensor, default MSE
    schedule : an LR schedule stepped once per iteration (or None)
    clip : callable(optimizer) applied after backward (e.g. VDSR's adjustable clipping), or None
    step : what one iteration does (see :class:`SupervisedStep`, which ``model``, ``optimizer``,
        ``loss``, ``schedule`` and ``clip`` build when ``step`` is None); a step brings its own model and
        optimiser, so none of those five is given with it
    evaluate : callable(model) -> dict of metrics (e.g. {"psnr": 32.1}), called every ``eval_every``
    out_dir : folder for checkpoints, ``history.json`` and ``curves.png`` (None: keep nothing)
    seed : seeds the sampler's generator
    meta : extra JSON metadata recorded in every checkpoint (model name, config, scale)
    same_run, may_change : entries of ``meta`` that make a checkpoint this run's (a resume from one
        that differs is refused, as is one with another seed), and entries a resumed run may change
        (each change is logged and recorded in the history under ``"changes"``); see :meth:`resume`
    check_run : callable(path, old_meta, meta) -> changes, a further test a checkpoint must pass to be this
        run's (:func:`tinysr.fit.check_same_run` compares recipes field by field); it raises to refuse
        and returns the entries allowed to differ, as ``{key: {"from": old, "to": new}}``; it may set in
        ``meta`` (the run's own) what the resumed run keeps from the checkpoint
    explode_factor : a loss this many times the median of the (up to 50) losses before it counts as
        exploding; the guard works from the second step on (the first can only be non-finite), and
        every checkpoint is preceded by the same test of the just-updated parameters on the step's
        own batch, so that no checkpoint is ever written from a diverged state.
    communicator : a :class:`tinysr.distributed.Communicator` for data-parallel training under
        ``mpiexec`` (None: one process).  Each rank trains on its slice of every batch and the gradients
        are all-reduced; only rank 0 evaluates, reports and writes files.
    """

    def __init__(self, model=None, sample=None, optimizer=None, *, loss=None, schedule=None, clip=None, step=None,
                 evaluate=None, eval_every=0, checkpoint_every=1000, out_dir=None, seed=0, meta=None, device="cpu",
                 explode_factor=1e4, log=print, progress=True, communicator=None, same_run=(), may_change=(),
                 check_run=None):
        if sample is None:
            raise TypeError("Trainer needs sample=, a function rng -> (x, y) of training batches")
        if step is None:
            if model is None or optimizer is None:
                raise TypeError("Trainer needs a model and an optimizer, or a step= that holds them")
            step = SupervisedStep(model, optimizer, loss, schedule, clip, communicator)
        elif any(v is not None for v in (model, optimizer, loss, schedule, clip)):
            raise TypeError("a step= holds its own model, optimiser, loss, schedule and clipping: give the Trainer "
                            "none of them")
        if communicator is not None and getattr(step, "communicator", None) is not communicator:
            raise ValueError("data-parallel training needs a step that all-reduces the gradients over the same "
                             "communicator (SupervisedStep does)")
        self.communicator = communicator
        if communicator is not None:
            evaluate = communicator.evaluate_on_root(evaluate)
            if not communicator.is_root:
                progress, log = False, (lambda *args, **kwargs: None)
        self.step_fn, self.sample = step, sample
        self.model, self.optimizer, self.schedule = step.model, step.optimizer, step.schedule
        self.evaluate, self.eval_every, self.checkpoint_every = evaluate, eval_every, checkpoint_every
        self.out_dir = Path(out_dir) if out_dir else None
        self.seed, self.meta, self.device = seed, dict(meta or {}), device
        self.same_run, self.may_change, self.check_run = tuple(same_run), tuple(may_change), check_run
        self.explode_factor, self.log, self.progress = explode_factor, log, progress
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.history = {"step": [], **{k: [] for k in step.keys}, "eval": []}
        self._last_batch = None

    # ------------------------------------------------------------------ checkpoints
    def _meta(self):
        m = dict(self.meta)
        m.update(step=self.step, seed=self.seed, tinysr_version=__version__,
                 rng_state=self.rng.bit_generator.state, history=self.history,
                 schedule=self.schedule.state_dict() if self.schedule else None)
        return m

    def _clock(self):
        # training-loop seconds so far, counting earlier runs of a resumed training; kept in every
        # checkpoint, so a run that is killed (no clean-up at all) still reports its time when resumed
        start = getattr(self, "_run_start", None)
        if start is not None:
            self.history["seconds"] = self._seconds_before + time.time() - start

    def _kept(self):
        """Where the last good checkpoint is, for the divergence message."""
        last = checkpoint.latest(self.out_dir) if self.out_dir else None
        return f"the last good checkpoint {last} is kept" if last else "no checkpoint was written"

    def _check_updated_state(self):
        """Raise :class:`TrainingDiverged` if the parameters after the last update are not finite or give a
        loss on the step's own batch that the guard would stop at. Buffers (BatchNorm's running
        statistics) are restored afterwards, so the check changes nothing a resumed run could see."""
        advice = self.step_fn.advice
        for name, p in self.model.named_parameters():
            if not bool(p.xp.isfinite(p.data).all()):
                raise TrainingDiverged(f"parameter {name} is no longer finite after step {self.step}; no checkpoint "
                                       f"is written from it and {self._kept()}. {advice}.")
        if self._last_batch is None:
            return
        x, y, scale = self._last_batch
        saved = [(b, b.copy()) for _, b in self.model.named_buffers()]
        routed = hasattr(self.model, "set_scale")      # MDSR: the batch's branches, not the evaluation's last
        previous = getattr(self.model, "scale", None)
        try:
            if routed:
                self.model.set_scale(scale)
            with no_grad(), np.errstate(over="ignore", invalid="ignore"):
                value = self.step_fn.loss(x, y, self.step - 1)
        finally:
            for b, copy in saved:
                b[...] = copy
            if routed:
                self.model.set_scale(previous)
        if not math.isfinite(value) or self._exploding(value):
            raise TrainingDiverged(f"after step {self.step} the updated parameters give a loss of {value:.4g} on that "
                                   f"step's batch; no checkpoint is written from them and {self._kept()}. {advice}.")

    def _writes(self):
        return self.out_dir is not None and (self.communicator is None or self.communicator.is_root)

    def save_checkpoint(self):
        if not self._writes():
            return None
        self._clock()
        self._check_updated_state()
        return checkpoint.save_step(self.out_dir, self.step, self.model, self.optimizer, self._meta())

    def resume(self, path=None, loaded=None):
        """Load ``path``, or else the newest checkpoint in ``out_dir`` that reads back completely (a newer,
        damaged one is skipped and named in the log); returns the path loaded, or None.  ``loaded`` is
        ``checkpoint.load(path)`` when the caller has already read it (the file is not read again).

        The checkpoint must be this run's: the same seed and the same ``same_run`` entries of the
        metadata, else nothing is loaded and a ``ValueError`` says which differ.  The ``may_change``
        entries that differ are logged and appended to ``history["changes"]``."""
        if path is not None:
            loaded = loaded if loaded is not None else checkpoint.load(path)
        elif self.out_dir is not None:
            path, loaded, skipped = checkpoint.newest_valid(self.out_dir)
            for bad, why in skipped:
                self.log(f"==> skipping {bad}: {why}")
        if path is None:
            return None
        state, opt_state, meta = loaded
        changes = self._check_same_run(path, meta)
        if self.check_run is not None:
            changes.update(self.check_run(path, meta, self.meta))
        # The rates this run was built with take over from the checkpoint's: a resumed run may lower them.
        fresh = [{k: g[k] for k in ("lr", "initial_lr") if k in g} for g in getattr(self.optimizer, "param_groups", ())]
        self.model.load_state_dict(state)
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
            for group, rates in zip(getattr(self.optimizer, "param_groups", ()), fresh):
                group.update(rates)
        self.step = int(meta["step"])
        self.rng.bit_generator.state = meta["rng_state"]
        self.history = meta["history"]
        if self.schedule and meta.get("schedule"):
            self.schedule.load_state_dict(meta["schedule"])
        if changes:
            self.history.setdefault("changes", []).append({"step": self.step, **changes})
            was = ", ".join(f"{k} {v['from']!r}" for k, v in changes.items())
            now = ", ".join(f"{k} {v['to']!r}" for k, v in changes.items())
            self.log(f"==> {Path(path).name} was written with {was}; the run goes on with {now} (recorded in "
                     "history.json under 'changes')")
        planned, now = meta.get("iterations"), self.meta.get("iterations")
        if planned is not None and now is not None and planned != now:
            self.log(f"==> the run was planned for {planned} steps and now runs to {now}: the learning-rate "
                     f"schedule is re-planned over {now} steps from step {self.step}")
        return path

    def _check_same_run(self, path, old):
        """Refuse the checkpoint ``path`` (metadata ``old``) unless its seed and ``same_run`` entries are this
        run's; returns the ``may_change`` entries that differ, as ``{key: {"from": old, "to": new}}``."""
        def norm(v):      # as JSON keeps it: a tuple given now equals the list read back
            return json.loads(json.dumps(v, sort_keys=True, default=str))
        missing = [k for k in ("seed", *self.same_run) if k not in old]
        if missing:
            raise ValueError(f"{path} does not record {', '.join(missing)}, so it cannot be told to be this run's (it "
                             "was written by another kind of run or another tinysr version); choose another out_dir")
        if old.get("seed") != self.seed:
            raise ValueError(f"{path} was written with seed {old.get('seed')} but this run uses seed {self.seed}; "
                             "use another out_dir, or the same seed to continue it")
        diff = [f"{k} {old.get(k)!r} there, {self.meta.get(k)!r} now" for k in self.same_run
                if norm(old.get(k)) != norm(self.meta.get(k))]
        if diff:
            raise ValueError(f"{path} belongs to another run ({'; '.join(diff)}); choose another out_dir, or repeat "
                             "that run's settings to continue it")
        return {k: {"from": old[k], "to": self.meta.get(k)} for k in self.may_change
                if k in old and norm(old[k]) != norm(self.meta.get(k))}

    def begin(self, iterations, resume=True, plan=""):
        """Open ``out_dir`` for a run of ``iterations`` steps: delete the half-written temporaries a killed
        run left there, then continue from the newest checkpoint that reads back (``resume=True``, see
        :meth:`resume`), or with ``resume=False`` refuse a folder that already holds checkpoints.  Says
        which in the log (a fresh start with ``plan``, e.g. what it evaluates); returns the checkpoint resumed
        from, or None."""
        if self.out_dir is None:
            return None
        if self._writes():
            for tmp in checkpoint.remove_stale_temporaries(self.out_dir):
                self.log(f"==> removed {tmp.name}, a half-written file left by a run that was killed while saving")
        if not resume and checkpoint.latest(self.out_dir) is not None:
            raise ValueError(f"{self.out_dir} already holds checkpoints of an earlier run; choose another output "
                             "folder, or resume to continue it")
        path, loaded, skipped = checkpoint.newest_valid(self.out_dir) if resume else (None, None, [])
        for bad, why in skipped:
            self.log(f"==> skipping {bad}: {why}")
        if path is None and skipped:
            raise ValueError(f"no checkpoint in {self.out_dir} can be read ({len(skipped)} tried, the newest: "
                             f"{skipped[0][1]}); move them elsewhere to start this run afresh")
        if path is not None:
            path = self.resume(path, loaded)
        if path is None:
            self.log(f"==> starting fresh in {self.out_dir} ({iterations} steps{', ' + plan if plan else ''})")
        else:
            self.log(f"==> resuming from {path} at step {self.step} of {iterations}")
        return path

    # ------------------------------------------------------------------ the loop
    def train_step(self):
        """One step on batches drawn from the trainer's generator; returns the values it records."""
        drawn = []

        def batch():
            x, y = self.sample(self.rng)
            if self.communicator is not None:      # every rank drew the global batch; keep this rank's rows
                x, y = self.communicator.local_batch(x, y)
            # the model's scale after sampling: MDSR's sampler routes it through the batch's branches
            drawn.append((Tensor(to_device(x, self.device)), Tensor(to_device(y, self.device)),
                          getattr(self.model, "scale", None)))
            return drawn[-1][:2]

        values = self.step_fn(batch, self._guard, self.step)
        self._last_batch = drawn[0]                # what the checkpoint guard re-tests the updated parameters on
        self.step += 1
        return values

    def _guard(self, name, value, watched=False):
        """Stop the run, before the update that ``value`` drives is applied, if ``value`` is not finite or
        (for the watched loss) explodes."""
        if math.isfinite(value) and not (watched and self._exploding(value)):
            return
        before = self.history[self.step_fn.watched]
        median = f" (the median of the steps before was {self._reference():.4g})" if watched and before else ""
        raise TrainingDiverged(f"the {name} became {value:.4g} at step {self.step + 1}{median}; stopped before "
                               f"applying it and {self._kept()}. {self.step_fn.advice}.")

    def _reference(self):
        recent = self.history[self.step_fn.watched][-50:]
        return float(np.median(recent)) if recent else float("nan")

    def _exploding(self, value):
        # from the second step on: one earlier loss is reference enough for a factor of explode_factor
        return bool(self.history[self.step_fn.watched]) and value > self.explode_factor * self._reference()

    def run(self, iterations, on_step=None):
        """Train until ``iterations`` steps in total (counting resumed ones); returns the history."""
        self.model.train()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=iterations, initial=self.step, desc="training", unit="step", leave=True)
        t0 = time.time()
        self._run_start, self._seconds_before = t0, float(self.history.get("seconds", 0.0))
        if self.communicator is not None:
            self.communicator.check_same_start(self.step, self.model, self.rng)
        try:
            while self.step < iterations:
                values = self.train_step()
                self.history["step"].append(self.step)
                for k in self.step_fn.keys:
                    self.history[k].append(values[k])
                if self.evaluate and self.eval_every and (self.step % self.eval_every == 0 or self.step == iterations):
                    self._evaluate(iterations, values, t0, bar)
                if bar is not None:
                    self._show(bar, values)
                if self.step % self.checkpoint_every == 0 or self.step == iterations:
                    self.save_checkpoint()
                if on_step is not None:
                    on_step(self)
        except BaseException:
            if self.communicator is not None:   # the other ranks would wait for this one's gradients
                self.communicator.abort_at_exit()
            raise
        finally:
            if bar is not None:
                bar.close()
            self._clock()
            self._run_start = None
            self.write_history()
        self.model.eval()
        return self.history

    def _evaluate(self, iterations, values, t0, bar):
        self.model.eval()
        metrics = self.evaluate(self.model)
        self.model.train()
        # the training seconds and threads at each evaluation give a curve of quality against compute
        # (CPU-hours = seconds x threads), not only against steps
        self._clock()
        self.history["eval"].append(dict(step=self.step, seconds=round(self.history["seconds"], 1),
                                         threads=_threads(self.device), **metrics))
        if bar is None:   # no bar to show it on: a log line, so a long run's log tells its progress
            watched = self.step_fn.watched
            vals = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            self.log(f"  step {self.step}/{iterations}: {watched} {values[watched]:.6f}, {vals} "
                     f"({time.time() - t0:.0f} s)")

    def _show(self, bar, values):
        watched = self.step_fn.watched
        post = {watched: f"{values[watched]:.5f}"}
        if self.history["eval"]:
            post.update({k: f"{v:.2f}" for k, v in self.history["eval"][-1].items()
                         if k not in ("step", "seconds", "threads")})
        bar.set_postfix(post, refresh=False)
        bar.update(1)

    # ------------------------------------------------------------------ outputs
    def write_history(self):
        """``history.json`` and ``curves.png`` (the watched loss and evaluation curves) in ``out_dir``."""
        if not self._writes():
            return
        checkpoint.atomic_write_text(self.out_dir / "history.json", json.dumps(self.history))
        if self.history[self.step_fn.watched]:
            plot_history(self.history, self.out_dir / "curves.png", key=self.step_fn.watched)


def _threads(device):
    """Threads a CPU step runs on (Numba's pool), or 1 for a GPU run."""
    if device != "cpu":
        return 1
    import numba
    return int(numba.get_num_threads())


def plot_history(history, path, key="loss"):
    """Draw the training loss ``history[key]`` (log scale; SRGAN's is ``"g_loss"``) and, if present, the
    evaluation PSNR against the step.

    Returns the matplotlib ``Figure`` (a notebook shows it when it is the cell's value).
    """
    # A bare Figure (no pyplot) draws without touching the process-wide backend, so a notebook's
    # inline plots keep working and a headless training run never needs a display.
    from matplotlib.figure import Figure

    evals = history.get("eval") or []
    fig = Figure(figsize=(10 if evals else 5, 3.5))
    axes = fig.subplots(1, 2 if evals else 1, squeeze=False)
    ax = axes[0, 0]
    steps, loss = np.asarray(history["step"]), np.asarray(history[key])
    ax.semilogy(steps, loss, lw=0.6, alpha=0.5, label="per step")
    if len(loss) >= 20:
        k = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.semilogy(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss" if key == "loss" else key)
    ax.legend()
    if evals:
        ax = axes[0, 1]
        keys = [k for k in evals[0] if k not in ("step", "seconds", "threads")]
        for k in keys:
            ax.plot([e["step"] for e in evals], [e[k] for e in evals], marker="o", label=k)
        ax.set_xlabel("step")
        ax.set_ylabel(", ".join(keys))
        ax.legend()
    fig.tight_layout()
    if path is not None:
        checkpoint.atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return fig
