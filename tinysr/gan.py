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

One iteration (:class:`SRGANStep`, ``d_steps=1`` as in the paper): sample a batch, ``SR = G(LR)``; one
discriminator step on ``(HR, SR detached)``; one generator step on ``content(SR, HR) + w *
adversarial(D(SR))``. Both optimisers are Adam (beta1 0.9), lr 1e-4 in the paper. The generator starts
from a trained SRResNet (the paper: "we employed the trained MSE-based SRResNet network as
initialization for the generator").  The iteration is a step of :class:`tinysr.trainer.Trainer`, the
loop every network trains in: checkpoints, exact resume, progress, history and the divergence guard
are the Trainer's.
"""
import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import functional as F
from . import nn, optim, options
from .autograd import Tensor, no_grad
from .models.srresnet import SRGANDiscriminator
from .models.vgg import VGG19_FILE
from .recipes import FAST_RECIPES
from .sampling import load_training_images, training_sampler
from .shipped import save_weights
from .trainer import Trainer

__all__ = ["generator_adversarial_loss", "discriminator_loss", "train_srgan", "SRGANResult", "SRGANStep",
           "content_loss"]


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


class GeneratorAndDiscriminator(nn.Module):
    """SRGAN's two networks as one Module: a checkpoint holds both (``generator.*``, ``discriminator.*``)
    and the Trainer's divergence guard checks every parameter of both."""

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator


class _Both:
    """The generator's and the discriminator's Adam as one optimiser state for a checkpoint (the second's
    state arrays are numbered after the first's parameters).  The Trainer keeps the learning rates this run
    was given over the checkpoint's (through ``param_groups``): a resumed run may lower them."""

    def __init__(self, g, d):
        self.g, self.d = g, d

    def state_dict(self):
        sg, sd = self.g.state_dict(), self.d.state_dict()
        n = sum(len(group["params"]) for group in self.g.param_groups)
        return {"param_groups": {"g": sg["param_groups"], "d": sd["param_groups"], "split": n},
                "state": {**sg["state"], **{i + n: v for i, v in sd["state"].items()}}}

    @property
    def param_groups(self):
        """Both optimisers' groups, the generator's first: the Trainer keeps their rates over a checkpoint's."""
        return self.g.param_groups + self.d.param_groups

    def load_state_dict(self, state):
        groups, n = state["param_groups"], state["param_groups"]["split"]
        self.g.load_state_dict({"param_groups": groups["g"],
                                "state": {i: v for i, v in state["state"].items() if int(i) < n}})
        self.d.load_state_dict({"param_groups": groups["d"],
                                "state": {int(i) - n: v for i, v in state["state"].items() if int(i) >= n}})


def _probability(logits):
    """The discriminator's mean probability that a batch is real, from its logits."""
    return float(F.sigmoid(Tensor(logits.data)).data.mean())


class SRGANStep:
    """One SRGAN iteration (Ledig et al. 2017, Sec. 2.2) as a step of :class:`tinysr.trainer.Trainer`.

    ``SR = G(LR)``; ``d_steps`` discriminator updates (the paper: 1; each further one draws a new batch)
    on :func:`discriminator_loss` of ``(HR, SR detached)``; then one generator update on
    ``content(SR, HR) + adv_weight * generator_adversarial_loss(D(SR))``, with D as just updated.
    ``generator`` and ``discriminator`` (NCHW RGB in [0, 1]; D returns one logit per patch) are trained in
    place with Adam each (``lr``, ``d_lr`` defaulting to ``lr``, ``betas``); ``content(sr, hr) -> Tensor``
    is the content loss (:func:`content_loss`).

    Per step it records ``d_loss``, ``g_loss`` (the total), ``content``, ``adversarial`` (NaN when
    ``adv_weight`` is 0) and ``d_real`` / ``d_fake``, D's mean probability on the HR and on the SR
    patches.  The divergence guard follows ``g_loss`` and stops at a non-finite ``d_loss`` too; a
    checkpoint holds both networks (``model``) and both Adam states (``optimizer``).
    """
    keys = ("d_loss", "g_loss", "content", "adversarial", "d_real", "d_fake")
    watched, schedule = "g_loss", None
    advice = ("Lower the learning rates (--lr, or lr= and d_lr= in Python), then run the same command again: it "
              "resumes from the last good checkpoint with the new rates")

    def __init__(self, generator, discriminator, content, *, lr=1e-4, d_lr=None, betas=(0.9, 0.999),
                 adv_weight=1e-3, d_steps=1):
        self.generator, self.discriminator, self.content = generator, discriminator, content
        self.adv_weight, self.d_steps = float(adv_weight), int(d_steps)
        self.opt_g = optim.Adam(generator.parameters(), lr=lr, betas=betas)
        self.opt_d = optim.Adam(discriminator.parameters(), lr=d_lr or lr, betas=betas)
        self.model = GeneratorAndDiscriminator(generator, discriminator)
        self.optimizer = _Both(self.opt_g, self.opt_d)

    def generator_loss(self, sr, hr):
        """``(total, content, adversarial)`` of the generator's output ``sr`` against ``hr`` (adversarial
        None when its weight is 0, and then not computed)."""
        content = self.content(sr, hr)
        if not self.adv_weight:
            return content, content, None
        adversarial = generator_adversarial_loss(self.discriminator(sr))
        return content + adversarial * self.adv_weight, content, adversarial

    def loss(self, x, y, done):
        """The generator's total loss of the current networks on one batch (the Trainer's checkpoint test)."""
        return self.generator_loss(self.generator(x), y)[0].item()

    def __call__(self, batch, guard, done):
        # a diverging pass overflows; the guard's one sentence says so, NumPy's warnings would bury it
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(self.d_steps):
                x, y = batch()
                if k == 0:
                    sr, hr = self.generator(x), y     # kept, with its graph, for the generator update
                    fake = Tensor(sr.data)            # detached: the D update must not train G
                else:
                    with no_grad():
                        fake = Tensor(self.generator(x).data)
                real_logits, fake_logits = self.discriminator(y), self.discriminator(fake)
                d_loss = discriminator_loss(real_logits, fake_logits)
                d_value = d_loss.item()
                guard("discriminator loss", d_value)
                self.opt_d.zero_grad()
                d_loss.backward()
                self.opt_d.step()
            g_loss, content, adversarial = self.generator_loss(sr, hr)
            g_value = g_loss.item()
            guard("generator loss", g_value, watched=True)
            self.opt_g.zero_grad()
            g_loss.backward()
            self.opt_g.step()
            self.opt_d.zero_grad()                   # D's gradients from the generator loss are not applied
        return dict(d_loss=d_value, g_loss=g_value, content=content.item(),
                    adversarial=adversarial.item() if adversarial is not None else float("nan"),
                    d_real=_probability(real_logits), d_fake=_probability(fake_logits))


#: What makes a resumed SRGAN run the same run, beside the seed; the length may change, and the learning
#: rates (``lr``, ``d_lr``: lowered after a divergence, recorded in the history's ``changes``).
_SAME_RUN = ("scale", "batch_size", "patch_size", "adv_weight", "d_steps", "content")


def train_srgan(generator, *, sample=None, data=None, scale=None, discriminator=None, iterations=100,
                batch_size=16, patch_size=24, lr=1e-4, d_lr=None, betas=(0.9, 0.999), adv_weight=1e-3,
                vgg=None, vgg_layer="relu5_4", d_steps=1, copy_generator=True, discriminator_kwargs=None,
                evaluate=None, eval_every=0, seed=0, device="cpu", progress=False, log=print, on_step=None,
                out_dir=None, checkpoint_every=100, resume=True):
    """Train SRGAN: ``generator`` (a trained SRResNet, copied unless ``copy_generator=False``) against a
    discriminator, :class:`SRGANStep` by step in a :class:`tinysr.trainer.Trainer`; returns an
    :class:`SRGANResult`.

    Parameters
    ----------
    generator : an ``lr-rgb`` network, normally a (trained) SRResNet; its weights are the starting point.
    sample : callable(rng) -> (lr, hr), NumPy float32 NCHW RGB batches in [0, 1]. Default: random crops
        of ``data`` (``patch_size`` LR pixels, flips), as :func:`tinysr.api.training_sampler` draws them.
    data : training images when ``sample`` is None: dataset names (``"T91"``, ``"builtin"``), folders or
        arrays, as :func:`tinysr.train` takes them.
    scale : the SR factor (default: ``generator.scale``).
    discriminator : a discriminator for HR patches (default: a new
        :class:`~tinysr.models.srresnet.SRGANDiscriminator` sized to ``patch_size * scale``, built with
        ``discriminator_kwargs`` such as ``{"base": 32, "dense": 256}`` for a reduced one).
    iterations, batch_size, patch_size : run length and batches.
    lr, d_lr, betas, adv_weight, d_steps : the step's settings (see :class:`SRGANStep`; the paper: lr
        1e-4 for both networks, ``adv_weight`` 1e-3, one D step per G step).
    vgg, vgg_layer : content loss (see :func:`content_loss`); None: pixel MSE, said in the log.
    evaluate, eval_every : ``evaluate(generator) -> dict`` every ``eval_every`` steps and at the end.
    seed : seeds the discriminator's initialisation and every batch.
    progress, log, on_step : a progress bar; where messages go; ``on_step(step, history)`` after each step.
    out_dir, checkpoint_every, resume : as for :func:`tinysr.train`: with ``out_dir``, both networks, both
        optimisers, the batch generator's state and the history are saved atomically every
        ``checkpoint_every`` steps and at the end, with ``history.json`` and ``curves.png``, and a run
        continues from the newest checkpoint of the same run (``resume=False`` refuses a folder that
        holds one): a killed run ends with the parameters of an uninterrupted one.  A loss that turns
        NaN or explodes stops the run (:class:`tinysr.trainer.TrainingDiverged`) and no checkpoint is
        written from that state.  The finished generator is also ``out_dir/generator.npz``, which
        :func:`tinysr.load` reads.

    ``history``: per step ``step`` and the values :class:`SRGANStep` records, ``eval`` entries, the
    training ``seconds``, and ``changes`` when a resumed run changed its learning rates.
    """
    options.check_all(iterations=iterations, batch_size=batch_size, patch_size=patch_size, lr=lr,
                      adv_weight=adv_weight, seed=seed, checkpoint_every=checkpoint_every,
                      eval_every=eval_every or None)
    scale = int(scale or getattr(generator, "scale"))
    gen = copy.deepcopy(generator) if copy_generator else generator
    gen.to(device)
    sample = sample or _random_crops(gen, data, scale, patch_size, batch_size)
    if discriminator is None:
        nn.init.seed(seed)
        discriminator = SRGANDiscriminator(input_size=patch_size * scale, **(discriminator_kwargs or {}))
    disc = discriminator.to(device)
    content_fn, content_desc = content_loss(vgg, vgg_layer)
    if isinstance(content_fn, nn.Module):
        content_fn.to(device)
    log(f"SRGAN: content loss = {content_desc}, + {adv_weight:g} x adversarial" if vgg is not None else
        f"SRGAN: no VGG-19 weights given, so the content loss is the pixel MSE (the paper's SRGAN-MSE) + "
        f"{adv_weight:g} x adversarial; pass vgg='path/to/{VGG19_FILE}' for the VGG loss.")
    step = SRGANStep(gen, disc, content_fn, lr=lr, d_lr=d_lr, betas=betas, adv_weight=adv_weight, d_steps=d_steps)
    config = dict(scale=scale, iterations=iterations, batch_size=batch_size, patch_size=patch_size, lr=lr,
                  d_lr=d_lr or lr, adv_weight=adv_weight, d_steps=d_steps, seed=seed, content=content_desc)
    trainer = Trainer(sample=sample, step=step, evaluate=evaluate and (lambda both: evaluate(gen)),
                      eval_every=eval_every, checkpoint_every=checkpoint_every, out_dir=out_dir, seed=seed,
                      meta=dict(config, generator=_describe_net(gen)), same_run=_SAME_RUN, may_change=("lr", "d_lr"),
                      device=device, log=log, progress=progress)
    trainer.begin(iterations, resume=resume)
    trainer.run(iterations, on_step=on_step and (lambda t: on_step(t.step, t.history)))
    info = _describe_net(gen)
    if out_dir is not None:
        save_weights(gen, Path(out_dir) / "generator.npz",
                     meta=dict(info, recipe="srgan", srgan=config, step=iterations) if info else None)
    return SRGANResult(gen, disc, trainer.history, content_desc, trainer.history["seconds"], config)


def _random_crops(gen, data, scale, patch_size, batch_size):
    """The default batches of :func:`train_srgan`: random crops of ``data`` with flips, as SRResNet's fast
    recipe draws them."""
    if data is None:
        raise ValueError("train_srgan needs sample= (a batch function) or data= (training images)")
    images = load_training_images(data, scale, patch_size * scale, lambda m: None)
    sample, _ = training_sampler(gen, images, scale, recipe=FAST_RECIPES["srresnet"], recipe_name="fast",
                                 patch_size=patch_size, batch_size=batch_size, log=lambda m: None)
    return sample


def _describe_net(gen):
    """What rebuilds the generator (registry name, build arguments, scale), or None for a custom network."""
    name = getattr(gen, "registry_name", None)
    if name is None:
        return None
    return dict(model=name, model_kwargs=gen.build_arguments() or {}, scale=getattr(gen, "scale", None))
