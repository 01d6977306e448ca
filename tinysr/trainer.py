"""The training loop: batches, loss, backward, clipping, optimiser and schedule steps, periodic
evaluation, atomic checkpoints, resume, and a guard against a loss that turns NaN or explodes.

:class:`Trainer` is model-agnostic: it takes a model, a *sampler* ``sample(rng) -> (input, target)``
of NumPy float32 NCHW batches, an optimiser and a loss.  Everything random in a step comes from the
trainer's own ``numpy.random.Generator``, whose state is saved in every checkpoint; that is why a run
that is killed and resumed ends with exactly the parameters of a run that never stopped.
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


class Trainer:
    """Runs ``iterations`` optimisation steps of ``model`` with checkpoints every ``checkpoint_every``.

    Parameters
    ----------
    model : tinysr.nn.Module
    sample : callable(rng) -> (x, y)
        One training batch as NumPy float32 arrays (N, C, H, W).
    optimizer : tinysr.optim.Optimizer
    loss : callable(pred, target) -> Tensor, default MSE
    schedule : an LR schedule stepped once per iteration (or None)
    clip : callable(optimizer) applied after backward (e.g. VDSR's adjustable clipping), or None
    evaluate : callable(model) -> dict of metrics (e.g. {"psnr": 32.1}), called every ``eval_every``
    out_dir : folder for checkpoints, ``history.json`` and ``curves.png`` (None: keep nothing)
    seed : seeds the sampler's generator
    meta : extra JSON metadata recorded in every checkpoint (model name, config, scale)
    explode_factor : a loss this many times the median of the (up to 50) losses before it counts as
        exploding; the guard works from the second step on (the first can only be non-finite), and
        every checkpoint is preceded by the same test of the just-updated parameters on the step's
        own batch, so that no checkpoint is ever written from a diverged state.
    communicator : a :class:`tinysr.distributed.Communicator` for data-parallel training under
        ``mpiexec`` (None: one process).  Each rank trains on its slice of every batch and the gradients
        are all-reduced; only rank 0 evaluates, reports and writes files.
    """

    def __init__(self, model, sample, optimizer, *, loss=None, schedule=None, clip=None, evaluate=None,
                 eval_every=0, checkpoint_every=1000, out_dir=None, seed=0, meta=None, device="cpu",
                 explode_factor=1e4, log=print, progress=True, communicator=None):
        self.communicator = communicator
        if communicator is not None:
            evaluate = communicator.evaluate_on_root(evaluate)
            if not communicator.is_root:
                progress, log = False, (lambda *args, **kwargs: None)
        self.model, self.sample, self.optimizer = model, sample, optimizer
        self.loss_fn = loss or F.mse_loss
        self.schedule, self.clip, self.evaluate = schedule, clip, evaluate
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.out_dir = Path(out_dir) if out_dir else None
        self.seed, self.meta, self.device = seed, dict(meta or {}), device
        self.explode_factor, self.log, self.progress = explode_factor, log, progress
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.history = {"step": [], "loss": [], "lr": [], "eval": []}
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
        for name, p in self.model.named_parameters():
            if not bool(p.xp.isfinite(p.data).all()):
                raise TrainingDiverged(f"parameter {name} is no longer finite after step {self.step}; no checkpoint "
                                       f"is written from it and {self._kept()}. {ADVICE}.")
        if self._last_batch is None:
            return
        x, y, scale = self._last_batch
        saved = [(b, b.copy()) for _, b in self.model.named_buffers()]
        routed = hasattr(self.model, "set_scale")      # MDSR: the batch's branches, not the evaluation's last
        previous = getattr(self.model, "scale", None)
        try:
            if routed:
                self.model.set_scale(scale)
            with no_grad():
                value = self._loss(x, y, self.step - 1)
        finally:
            for b, copy in saved:
                b[...] = copy
            if routed:
                self.model.set_scale(previous)
        if not math.isfinite(value) or self._exploding(value):
            raise TrainingDiverged(f"after step {self.step} the updated parameters give a loss of {value:.4g} on that "
                                   f"step's batch; no checkpoint is written from them and {self._kept()}. {ADVICE}.")

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
        ``checkpoint.load(path)`` when the caller has already read it (the file is not read again)."""
        if path is not None:
            loaded = loaded if loaded is not None else checkpoint.load(path)
        elif self.out_dir is not None:
            path, loaded, skipped = checkpoint.newest_valid(self.out_dir)
            for bad, why in skipped:
                self.log(f"==> skipping {bad}: {why}")
        if path is None:
            return None
        state, opt_state, meta = loaded
        if meta.get("seed") != self.seed:
            raise ValueError(f"{path} was written with seed {meta.get('seed')} but this run uses seed {self.seed}; "
                             "use another out_dir, or the same seed to continue it")
        self.model.load_state_dict(state)
        if opt_state is not None:
            self.optimizer.load_state_dict(opt_state)
        self.step = int(meta["step"])
        self.rng.bit_generator.state = meta["rng_state"]
        self.history = meta["history"]
        if self.schedule and meta.get("schedule"):
            self.schedule.load_state_dict(meta["schedule"])
        return path

    # ------------------------------------------------------------------ the loop
    def _loss(self, x, y, step, keep_graph=False):
        """The loss of the current parameters on ``(x, y)`` (a Tensor with ``keep_graph``, else a float)."""
        # A diverging forward pass overflows; NumPy's RuntimeWarnings would only bury the sentence the
        # guard writes, which stops the run before the bad step is applied and says what to do.
        with np.errstate(over="ignore", invalid="ignore"):
            if getattr(self.loss_fn, "needs_model", False):
                # a loss on more than the output (DRCN's recursive supervision sees every recursion's
                # prediction); it may depend on the step, which the checkpoint holds, so resume stays exact
                loss = self.loss_fn(self.model, x, y, step)
            else:
                loss = self.loss_fn(self.model(x), y)
            return loss if keep_graph else loss.item()

    def train_step(self):
        x, y = self.sample(self.rng)
        if self.communicator is not None:          # every rank drew the global batch; keep this rank's rows
            x, y = self.communicator.local_batch(x, y)
        x, y = Tensor(to_device(x, self.device)), Tensor(to_device(y, self.device))
        loss = self._loss(x, y, self.step, keep_graph=True)
        with np.errstate(over="ignore", invalid="ignore"):
            value = loss.item()
        if self.communicator is not None:          # gradients and loss of the global batch, on every rank
            value = self.communicator.backward_and_reduce(loss, self.model, self.optimizer)
        if not math.isfinite(value) or self._exploding(value):
            raise TrainingDiverged(
                f"the training loss became {value:.4g} at step {self.step + 1}"
                f"{f' (the median of the steps before was {self._reference():.4g})' if self.history['loss'] else ''}; "
                f"stopped before applying it and {self._kept()}. {ADVICE}.")
        self._last_batch = (x, y, getattr(self.model, "scale", None))
        if self.communicator is None:
            self.optimizer.zero_grad()
            loss.backward()
        if self.clip is not None:
            self.clip(self.optimizer)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        self.step += 1
        return value

    def _reference(self):
        recent = self.history["loss"][-50:]
        return float(np.median(recent)) if recent else float("nan")

    def _exploding(self, value):
        # from the second step on: one earlier loss is reference enough for a factor of explode_factor
        return bool(self.history["loss"]) and value > self.explode_factor * self._reference()

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
                value = self.train_step()
                self.history["step"].append(self.step)
                self.history["loss"].append(value)
                self.history["lr"].append(self.optimizer.param_groups[0]["lr"])
                if self.evaluate and self.eval_every and (self.step % self.eval_every == 0 or self.step == iterations):
                    self.model.eval()
                    metrics = self.evaluate(self.model)
                    self.model.train()
                    # the training seconds and threads at each evaluation give a curve of quality
                    # against compute (CPU-hours = seconds x threads), not only against steps
                    self._clock()
                    self.history["eval"].append(dict(step=self.step, seconds=round(self.history["seconds"], 1),
                                                     threads=_threads(self.device), **metrics))
                    if bar is None:   # no bar to show it on: a log line, so a long run's log tells its progress
                        vals = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
                        self.log(f"  step {self.step}/{iterations}: loss {value:.6f}, {vals} "
                                 f"({time.time() - t0:.0f} s)")
                if bar is not None:
                    post = {"loss": f"{value:.5f}"}
                    if self.history["eval"]:
                        post.update({k: f"{v:.2f}" for k, v in self.history["eval"][-1].items()
                                     if k not in ("step", "seconds", "threads")})
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
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

    # ------------------------------------------------------------------ outputs
    def write_history(self):
        """``history.json`` and ``curves.png`` (loss and evaluation curves) in ``out_dir``."""
        if not self._writes():
            return
        checkpoint.atomic_write_text(self.out_dir / "history.json", json.dumps(self.history))
        if self.history["loss"]:
            plot_history(self.history, self.out_dir / "curves.png")


def _threads(device):
    """Threads a CPU step runs on (Numba's pool), or 1 for a GPU run."""
    if device != "cpu":
        return 1
    import numba
    return int(numba.get_num_threads())


def plot_history(history, path):
    """Draw the training loss (log scale) and, if present, the evaluation PSNR against the step.

    Returns the matplotlib ``Figure`` (a notebook shows it when it is the cell's value).
    """
    # A bare Figure (no pyplot) draws without touching the process-wide backend, so a notebook's
    # inline plots keep working and a headless training run never needs a display.
    from matplotlib.figure import Figure

    evals = history.get("eval") or []
    fig = Figure(figsize=(10 if evals else 5, 3.5))
    axes = fig.subplots(1, 2 if evals else 1, squeeze=False)
    ax = axes[0, 0]
    steps, loss = np.asarray(history["step"]), np.asarray(history["loss"])
    ax.semilogy(steps, loss, lw=0.6, alpha=0.5, label="per step")
    if len(loss) >= 20:
        k = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.semilogy(steps[k - 1:], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
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
