"""SRGAN training: a generator (an SRResNet) and a discriminator trained in turns -- Ledig et al.,
"Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network", CVPR 2017.

The losses (Sec. 2.2 of the paper), all on RGB images in [0, 1]:

* **discriminator** -- ``-log D(HR) - log(1 - D(G(LR)))``: binary cross-entropy that calls real HR
  patches 1 and generated ones 0 (:func:`discriminator_loss`);
* **adversarial, for the generator** -- ``-log D(G(LR))`` (not ``log(1 - D(G(LR)))``, which the paper
  notes gives vanishing gradients early on): :func:`generator_adversarial_loss`;
* **content** -- pixel MSE (the paper's SRGAN-MSE), or the VGG feature MSE ``l_VGG/i.j`` with the
  1/12.75 rescaling (SRGAN-VGG22 / SRGAN-VGG54, :class:`tinysr.models.vgg.PerceptualLoss`);
* **generator total** -- ``content + 1e-3 * adversarial``.

``D`` outputs logits and the sigmoid lives inside the loss (``bce_with_logits``: ``softplus(-x)`` for a
target of 1, never ``log(sigmoid(x))``, which overflows once ``D`` is confident).

VGG-19 ImageNet weights cannot be downloaded here: pass ``vgg=`` a user-supplied torchvision
``vgg19-dcbb9e9d.pth`` (see :func:`tinysr.models.vgg.load_vgg19`); without one the content loss is the
pixel MSE and :func:`train_srgan` says so.

One iteration (``d_steps=1`` as in the paper): sample a batch, ``SR = G(LR)``; one discriminator step
on ``(HR, SR detached)``; one generator step on ``content(SR, HR) + w * adversarial(D(SR))``. Both
optimisers are Adam (beta1 0.9), lr 1e-4 in the paper. The generator starts from a trained SRResNet
(the paper: "we employed the trained MSE-based SRResNet network as initialization for the generator").
"""
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import __version__, checkpoint
from . import functional as F
from . import optim
from .autograd import Tensor, no_grad
from .backend import to_device

__all__ = ["generator_adversarial_loss", "discriminator_loss", "train_srgan", "SRGANResult", "content_loss"]


def generator_adversarial_loss(fake_logits):
    """``mean(-log D(G(x)))`` from the discriminator's logits on generated images, computed stably as
    ``mean(softplus(-logit))`` = BCE-with-logits against a target of 1."""
    xp = fake_logits.xp
    return F.bce_with_logits(fake_logits, xp.ones(fake_logits.shape, dtype=fake_logits.dtype))


def discriminator_loss(real_logits, fake_logits):
    """``mean(-log D(HR)) + mean(-log(1 - D(G(LR))))``: BCE with target 1 on real, 0 on generated logits."""
    xp = real_logits.xp
    return (F.bce_with_logits(real_logits, xp.ones(real_logits.shape, dtype=real_logits.dtype))
            + F.bce_with_logits(fake_logits, xp.zeros(fake_logits.shape, dtype=fake_logits.dtype)))


def content_loss(vgg=None, layer="relu5_4"):
    """``(loss_fn, description)``: pixel MSE when ``vgg`` is None, else SRGAN's VGG loss.

    ``vgg``: a path to torchvision's VGG-19 ``.pth``, a :class:`~tinysr.models.vgg.VGG19Features`, or a
    :class:`~tinysr.models.vgg.PerceptualLoss`.
    """
    from .models.vgg import PerceptualLoss, VGG19Features, load_vgg19
    if vgg is None:
        return F.mse_loss, "pixel MSE (no VGG-19 file given)"
    if isinstance(vgg, PerceptualLoss):
        return vgg, f"VGG feature MSE at {vgg.vgg.layer} (x{vgg.feature_scale:.4g} features)"
    if not isinstance(vgg, VGG19Features):
        vgg = load_vgg19(vgg, layer=layer)
    loss = PerceptualLoss(vgg)
    return loss, f"VGG feature MSE at {vgg.layer} (features x 1/12.75)"


@dataclass
class SRGANResult:
    """What :func:`train_srgan` returns: the trained ``generator`` and ``discriminator`` (eval mode), the
    per-step ``history`` and the ``content`` loss it used, in words."""
    generator: object
    discriminator: object
    history: dict
    content: str
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    def __repr__(self):
        n = len(self.history.get("step", []))
        return f"SRGANResult({n} steps, content: {self.content}, {self.seconds:.0f} s)"


def _check_finite(values, step):
    from .trainer import TrainingDiverged
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise TrainingDiverged(f"SRGAN training: {', '.join(bad)} became non-finite at step {step}; lower the "
                               "learning rates or the adversarial weight and start again.")


class _Both:
    """The generator's and the discriminator's Adam as one optimiser for a checkpoint (state arrays of the
    second are numbered after the first's parameters)."""

    def __init__(self, g, d):
        self.g, self.d = g, d

    def state_dict(self):
        sg, sd = self.g.state_dict(), self.d.state_dict()
        n = len(self.g._params())
        return {"param_groups": {"g": sg["param_groups"], "d": sd["param_groups"], "split": n},
                "state": {**sg["state"], **{i + n: v for i, v in sd["state"].items()}}}

    def load_state_dict(self, state):
        groups, n = state["param_groups"], state["param_groups"]["split"]
        self.g.load_state_dict({"param_groups": groups["g"],
                                "state": {i: v for i, v in state["state"].items() if int(i) < n}})
        self.d.load_state_dict({"param_groups": groups["d"],
                                "state": {int(i) - n: v for i, v in state["state"].items() if int(i) >= n}})


def _pair(gen, disc):
    from . import nn

    class GeneratorAndDiscriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator, self.discriminator = gen, disc
    return GeneratorAndDiscriminator()


#: What makes a resumed SRGAN run the same run (the length may change).
_SAME_RUN = ("scale", "batch_size", "patch_size", "lr", "d_lr", "adv_weight", "d_steps", "seed", "content")


def train_srgan(generator, *, sample=None, data=None, scale=None, discriminator=None, iterations=100,
                batch_size=16, patch_size=24, lr=1e-4, d_lr=None, betas=(0.9, 0.999), adv_weight=1e-3,
                vgg=None, vgg_layer="relu5_4", d_steps=1, copy_generator=True, discriminator_kwargs=None,
                evaluate=None, eval_every=0, seed=0, device="cpu", progress=False, log=print, on_step=None,
                out_dir=None, checkpoint_every=100, resume=True):
    """Train SRGAN: ``generator`` (a trained SRResNet, copied unless ``copy_generator=False``) against a
    discriminator, in alternating steps; returns an :class:`SRGANResult`.

    Parameters
    ----------
    generator : an ``lr-rgb`` network, normally a (trained) SRResNet; its weights are the starting point.
    sample : callable(rng) -> (lr, hr), NumPy float32 NCHW RGB batches in [0, 1]. Default: random crops
        of ``data`` built by :func:`tinysr.api.training_sampler` (``patch_size`` LR pixels, flips).
    data : training images when ``sample`` is None: dataset names (``"T91"``, ``"builtin"``), folders or
        arrays, as :func:`tinysr.train` takes them.
    scale : the SR factor (default: ``generator.scale``).
    discriminator : a discriminator for HR patches (default: a new
        :class:`~tinysr.models.srresnet.SRGANDiscriminator` sized to ``patch_size * scale``, built with
        ``discriminator_kwargs`` such as ``{"base": 32, "dense": 256}`` for a reduced one).
    iterations, batch_size, patch_size : run length and batches.
    lr, d_lr, betas : Adam for the generator and (``d_lr``, default ``lr``) the discriminator.
    adv_weight : the adversarial term's weight (the paper: 1e-3); 0 trains the generator on content only.
    vgg, vgg_layer : content loss (see :func:`content_loss`); None: pixel MSE, said in the log.
    d_steps : discriminator steps per generator step (the paper: 1).
    evaluate, eval_every : ``evaluate(generator) -> dict`` every ``eval_every`` steps and at the end.
    seed : seeds the discriminator's initialisation and every batch.
    out_dir, checkpoint_every, resume : with ``out_dir``, both networks, both optimisers, the batch
        generator's state and the history are saved atomically every ``checkpoint_every`` steps and at
        the end (the two newest kept), and a run finds the newest and continues from it -- a killed run
        resumes and ends with the parameters of an uninterrupted one.  The finished generator is also
        written as ``out_dir/generator.npz``, which :func:`tinysr.load` reads.

    ``history``: per step ``step``, ``d_loss``, ``g_loss`` (total), ``content``, ``adversarial``,
    ``d_real`` / ``d_fake`` (mean D probability on HR and on SR patches), and ``eval`` entries.
    """
    from . import nn, options
    from .models.srresnet import SRGANDiscriminator
    options.check_all(iterations=iterations, batch_size=batch_size, patch_size=patch_size, lr=lr,
                      adv_weight=adv_weight, seed=seed, checkpoint_every=checkpoint_every,
                      eval_every=eval_every or None)
    scale = int(scale or getattr(generator, "scale"))
    gen = copy.deepcopy(generator) if copy_generator else generator
    gen.to(device)
    if sample is None:
        if data is None:
            raise ValueError("train_srgan needs sample= (a batch function) or data= (training images)")
        from .api import FAST_RECIPES, _load_training_images, training_sampler
        images = _load_training_images(data, scale, patch_size * scale, lambda m: None)
        sample, _ = training_sampler(gen, images, scale, recipe=FAST_RECIPES["srresnet"], recipe_name="fast",
                                     patch_size=patch_size, batch_size=batch_size, log=lambda m: None)
    hr_size = patch_size * scale
    if discriminator is None:
        nn.init.seed(seed)
        discriminator = SRGANDiscriminator(input_size=hr_size, **(discriminator_kwargs or {}))
    disc = discriminator.to(device)
    content_fn, content_desc = content_loss(vgg, vgg_layer)
    if isinstance(content_fn, nn.Module):
        content_fn.to(device)
    if vgg is None:
        log("SRGAN: no VGG-19 weights given, so the content loss is the pixel MSE (the paper's SRGAN-MSE) "
            f"+ {adv_weight:g} x adversarial; pass vgg='path/to/{_vgg_file()}' for the VGG loss.")
    else:
        log(f"SRGAN: content loss = {content_desc}, + {adv_weight:g} x adversarial")

    opt_g = optim.Adam(gen.parameters(), lr=lr, betas=betas)
    opt_d = optim.Adam(disc.parameters(), lr=d_lr or lr, betas=betas)
    rng = np.random.default_rng(seed)
    keys = ("d_loss", "g_loss", "content", "adversarial", "d_real", "d_fake")
    history = {"step": [], **{k: [] for k in keys}, "eval": []}
    config = dict(scale=scale, iterations=iterations, batch_size=batch_size, patch_size=patch_size, lr=lr,
                  d_lr=d_lr or lr, adv_weight=adv_weight, d_steps=d_steps, seed=seed, content=content_desc)
    start, seconds_before = 0, 0.0
    both, pair = _Both(opt_g, opt_d), _pair(gen, disc)
    if out_dir is not None:
        from pathlib import Path
        out_dir = Path(out_dir)
        found = checkpoint.latest(out_dir) if resume else None
        if found is None and not resume and checkpoint.latest(out_dir) is not None:
            raise ValueError(f"{out_dir} already holds SRGAN checkpoints and resume=False: choose another "
                             "out_dir, or delete them to start over")
        if found is not None:
            state, opt_state, meta = checkpoint.load(found)
            old = meta.get("config", {})
            diff = [f"{k} {old.get(k)!r} there, {config[k]!r} now" for k in _SAME_RUN if old.get(k) != config[k]]
            if diff:
                raise ValueError(f"{found} belongs to another SRGAN run ({'; '.join(diff)}); choose another "
                                 "out_dir, or repeat that run's settings to continue it")
            pair.load_state_dict(state)
            both.load_state_dict(opt_state)
            start, history = int(meta["step"]), meta["history"]
            rng.bit_generator.state = meta["rng_state"]
            seconds_before = float(history.get("seconds", 0.0))
            log(f"==> SRGAN: resuming from {found} at step {start} of {iterations}")
        else:
            log(f"==> SRGAN: starting fresh in {out_dir} ({iterations} steps)")
    run_start = time.time()

    def save(step):
        history["seconds"] = seconds_before + time.time() - run_start
        meta = dict(config=config, step=step, rng_state=rng.bit_generator.state, history=history,
                    tinysr_version=__version__, generator=_describe_net(gen))
        checkpoint.save_step(out_dir, step, pair, both, meta)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=iterations, initial=start, desc="SRGAN", unit="step")

    def prob(logits):
        return float(F.sigmoid(Tensor(logits.data)).data.mean())

    gen.train()
    disc.train()
    try:
        for step in range(start + 1, iterations + 1):
            # -- discriminator: real HR patches -> 1, the generator's current output -> 0
            for k in range(d_steps):
                lr_b, hr_b = sample(rng)
                x, y = Tensor(to_device(lr_b, device)), Tensor(to_device(hr_b, device))
                if k == 0:
                    sr = gen(x)                      # kept (with its graph) for the generator step below
                    x_g, y_g = x, y
                    fake = Tensor(sr.data)           # detached: the D step must not train G
                else:
                    with no_grad():
                        fake = Tensor(gen(x).data)
                real_logits, fake_logits = disc(y), disc(fake)
                d_loss = discriminator_loss(real_logits, fake_logits)
                d_val = d_loss.item()
                _check_finite({"discriminator loss": d_val}, step)
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
            d_real, d_fake = prob(real_logits), prob(fake_logits)

            # -- generator: content + adv_weight * -log D(G(x)); D's gradients are discarded
            c_loss = content_fn(sr, y_g)
            if adv_weight:
                adv = generator_adversarial_loss(disc(sr))
                g_loss = c_loss + adv * float(adv_weight)
                adv_val = adv.item()
            else:
                g_loss, adv_val = c_loss, float("nan")
            g_val = g_loss.item()
            _check_finite({"generator loss": g_val}, step)
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            opt_d.zero_grad()

            history["step"].append(step)
            for k, v in zip(keys, (d_val, g_val, c_loss.item(), adv_val, d_real, d_fake)):
                history[k].append(float(v))
            if evaluate is not None and eval_every and (step % eval_every == 0 or step == iterations):
                gen.eval()
                history["eval"].append(dict(step=step, **evaluate(gen)))
                gen.train()
            if bar is not None:
                bar.set_postfix({"D": f"{d_val:.3f}", "G": f"{g_val:.4f}"}, refresh=False)
                bar.update(1)
            if out_dir is not None and (step % checkpoint_every == 0 or step == iterations):
                save(step)
            if on_step is not None:
                on_step(step, history)
    finally:
        if bar is not None:
            bar.close()
    gen.eval()
    disc.eval()
    seconds = seconds_before + time.time() - run_start
    history["seconds"] = seconds
    if out_dir is not None:
        from .api import save_weights
        info = _describe_net(gen)
        save_weights(gen, out_dir / "generator.npz",
                     meta=dict(info, recipe="srgan", srgan=config, step=iterations) if info else None)
    return SRGANResult(gen, disc, history, content_desc, seconds, config)


def _describe_net(gen):
    """What rebuilds the generator (registry name, build arguments, scale), or None for a custom network."""
    from .api import _build_kwargs_of, _registry_name_of
    name = _registry_name_of(gen)
    if name is None:
        return None
    return dict(model=name, model_kwargs=_build_kwargs_of(gen) or {}, scale=getattr(gen, "scale", None))


def _vgg_file():
    from .models.vgg import VGG19_FILE
    return VGG19_FILE
