"""Training recipes: what a paper's training section says, and tinysr's faster one for the CPU.

A network's architecture fixes what it computes; its *recipe* fixes how it learns: the patches it sees,
the optimiser and its learning rates, the schedule, the gradient clipping and the loss.  The papers'
recipes live beside each network (``tinysr.models.get_spec(name).recipe``); this module holds

* :data:`FAST_RECIPES` -- tinysr's CPU-friendly recipe per network, with the reason for each choice;
* :func:`recipe_for`, :func:`recipe_family`, :func:`patch_for` -- which recipe and which patch size a run uses;
* :func:`make_optimizer`, :func:`make_schedule`, :func:`make_clip`, :func:`loss_fn` -- a recipe turned
  into the objects the :class:`~tinysr.trainer.Trainer` runs, including DRCN's
  :class:`RecursiveSupervision` loss.
"""
from __future__ import annotations

from .models.registry import TrainingRecipe, get_spec

__all__ = ["FAST_RECIPES", "AUGMENTATIONS", "FSRCNN_PAPER_PATCH", "recipe_for", "recipe_family", "patch_for",
           "make_optimizer", "make_schedule", "make_clip", "RecursiveSupervision", "loss_fn"]

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
#: * For the deep networks the run's *planned* length matters more than an early decay: two EDSR-baseline x2
#:   runs of this recipe (24x24 LR patches, T91 + BSD200, seed 0) planned for 8,000 and for 40,000 steps stood
#:   at 36.78 and 36.88 dB on Set5 at step 5,000 and at 36.89 and 37.08 dB at step 8,000 (docs/results.md).
#: * A x4 network **starts from the trained x2 one** (``init_from="edsr_baseline-x2"``: everything but the
#:   convolution of the second x2 upsampling stage carries over), as EDSR's paper does for its x3 and x4
#:   models: two EDSR-baseline x4 runs of this recipe (T91 + BSD200, 24x24 LR patches, a 16,000-step plan,
#:   seed 0) stood at 30.24 dB from the x2 weights and 29.12 dB from scratch on Set5 at step 500.
#: * SRResNet keeps the paper's **Adam at 1e-4**: its x4 run of this recipe (T91 + BSD200, seed 0), continued
#:   from step 1,000 for 250 steps at 1e-3, fell to 21.72 dB on Set5, against 28.03 dB at 1e-4.
#: * SRResNet keeps the paper's **MSE**: x4 runs from scratch (T91 + BSD200, seed 0, a 16,000-step plan) stood
#:   on Set5 at 28.04 / 29.02 dB with MSE at steps 1,000 / 2,000 and at 28.55 / 28.81 dB with EDSR's L1 (27.97,
#:   28.84 and 28.93 at steps 1,250-1,750): no lasting gain.  Initialising each residual block's last BatchNorm
#:   scale to 0 (with L1) gave 28.02 dB at step 750 and 27.48 at 1,000 -- no help either.
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

#: The paper's FSRCNN LR sub-image sizes (Dong, Loy, Tang 2016, Sec. 4.1).
FSRCNN_PAPER_PATCH = {2: 10, 3: 7, 4: 6}


# The fast recipe borrowed by a network that has none of its own, by input convention.
_FAMILY = {"bicubic-y": "vdsr", "lr-y": "fsrcnn", "lr-rgb": "edsr_baseline"}


def recipe_family(key, convention, recipe):
    """Whose recipe a model trains with: its own, or for ``recipe="fast"`` without one of its own (and for
    custom Modules), that of the fast family sharing its input convention."""
    return key if key in FAST_RECIPES or recipe != "fast" else _FAMILY[convention]


def recipe_for(name, recipe):
    """``(recipe, recipe_name)`` for network ``name``: ``"paper"`` is the paper's training section
    (``get_spec(name).recipe``), ``"fast"`` tinysr's :data:`FAST_RECIPES` entry, and a
    :class:`~tinysr.models.TrainingRecipe` is used as given (named ``"custom"``)."""
    if isinstance(recipe, TrainingRecipe):
        return recipe, "custom"
    if recipe == "paper":
        return get_spec(name).recipe, "paper"
    if recipe == "fast":
        if name not in FAST_RECIPES:
            raise ValueError(f"tinysr has no fast recipe for {name!r}; use recipe='paper'")
        return FAST_RECIPES[name], "fast"
    raise ValueError(f"recipe must be 'paper', 'fast' or a TrainingRecipe, got {recipe!r}")


def patch_for(recipe, scale, override, name, recipe_name):
    """Side of the square training patch at ``scale``, in network-input pixels.

    ``override`` (the caller's ``patch_size``) wins; FSRCNN's paper recipe uses the paper's LR
    sub-image sizes (:data:`FSRCNN_PAPER_PATCH`); otherwise the recipe's ``patch_size``, which may be
    a ``{scale: size}`` dict (a scale it does not name takes the largest scale's size).
    """
    if override is not None:
        return int(override)
    if name == "fsrcnn" and recipe_name == "paper":
        return FSRCNN_PAPER_PATCH.get(scale, 7)
    p = recipe.patch_size
    if isinstance(p, dict):
        return int(p.get(scale, p[max(p)]))
    return int(p)


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


def make_schedule(opt, recipe, iterations, per_epoch_steps, log):
    """The recipe's learning-rate schedule over ``opt``, or None for a constant rate.

    ``{"type": "cosine", "warmup": w}`` decays to 0 over ``iterations`` steps after a linear warm-up;
    ``{"type": "step"}`` divides the rate by ``1/gamma`` at ``milestones`` (steps) or every
    ``every_iterations`` / ``every_epochs`` (``per_epoch_steps`` steps an epoch).  A plateau schedule needs
    a validation loss each epoch, which the Trainer does not hand over: it is logged and left constant.
    """
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


def make_clip(model, recipe):
    """The recipe's gradient clipping as a callable ``clip(opt)`` the Trainer runs before each step, or None.

    ``{"type": "norm", "max_norm": c}`` rescales the global L2 norm of ``model``'s gradients to at most
    ``c``; ``{"type": "value", "value": v}`` clips each entry to ``[-v, v]``; ``{"type": "adjustable",
    "theta": t}`` is VDSR's adjustable clipping to ``[-t/lr, t/lr]`` (Kim et al. 2016, sec. 3.3).
    """
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


def loss_fn(recipe, net=None, scale=1, iterations=None):
    """The recipe's training loss as ``loss(pred, target)`` (or a :class:`RecursiveSupervision` for DRCN).

    ``"mse"`` or ``"l1"`` on the output; ``"drcn"`` on a network with ``forward_all`` is DRCN's recursive
    supervision over ``iterations`` steps.  ``loss_border`` crops that many output pixels from each edge
    of a patch (``"receptive_field"``: half the network's receptive field, in output pixels) so the
    network does not learn from outputs that saw the zero padding.
    """
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
        b = (rf // 2) * (scale if net.input_convention != "bicubic-y" else 1)
    b = int(b)
    if b <= 0:
        return base

    def cropped(pred, target):
        # Outputs within b pixels of a patch's edge saw its zero padding, which whole images barely have:
        # learning from them teaches the network about borders instead of about textures.
        return base(pred[..., b:-b, b:-b], target[..., b:-b, b:-b])
    return cropped


