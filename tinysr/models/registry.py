"""The model registry: name -> builder, supported scales, input convention, paper and training recipe.

``build("vdsr", scale=3)`` makes a network; ``registry()`` gives every :class:`ModelSpec`. Each spec
carries the paper's training recipe (:class:`TrainingRecipe`) as plain data, for the training
pipeline to follow. Recipes are transcribed from the papers' "implementation details" sections;
``notes`` says where a paper is silent or ambiguous.
"""
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Tuple


@dataclass(frozen=True)
class TrainingRecipe:
    """How a paper trained its network (units: patch sizes in pixels; ``iterations`` in updates).

    ``patch_size`` is the *input* patch side (LR for post-upsampling networks, HR-size for
    pre-upsampling ones); ``label_size`` the target's side when it differs (SRCNN's valid output).
    ``lr_schedule`` is a small dict, e.g. ``{"type": "step", "every_epochs": 20, "gamma": 0.1}`` or
    ``{"type": "cosine", "warmup": 500}``.
    """

    data: str
    patch_size: int
    batch_size: int
    optimizer: str
    lr: float
    loss: str
    iterations: Optional[int] = None
    epochs: Optional[int] = None
    label_size: Optional[int] = None
    lr_schedule: dict = field(default_factory=dict)
    momentum: Optional[float] = None
    weight_decay: float = 0.0
    betas: Optional[Tuple[float, float]] = None
    grad_clip: Optional[dict] = None
    augment: Tuple[str, ...] = ()
    per_layer_lr: Optional[dict] = None
    notes: str = ""
    #: output pixels cropped from each side of prediction and label before the loss: an int, or
    #: ``"receptive_field"`` for half the network's receptive field (times the scale for networks that
    #: upsample) -- the outputs that saw the zero padding of a small training patch.
    loss_border: object = 0
    #: build arguments the recipe trains with (e.g. tinysr's fast SRCNN: ``{"offset": 0.5}``); the
    #: caller's ``model_kwargs`` override them.
    model_kwargs: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry (see :func:`build`).

    ``builder(scale=..., **kwargs)`` returns the model; ``defaults`` are the keyword arguments that
    make the paper's main configuration; ``scales`` the scales it supports.
    """

    name: str
    builder: Callable
    scales: Tuple[int, ...]
    input_convention: str
    citation: str
    description: str
    recipe: TrainingRecipe
    defaults: dict = field(default_factory=dict)
    paper_params: Optional[str] = None

    def build(self, scale, **kwargs):
        return self.builder(scale=scale, **{**self.defaults, **kwargs})


def _srcnn(**kw):
    from .srcnn import SRCNN
    return SRCNN(**kw)


def _fsrcnn(**kw):
    from .fsrcnn import FSRCNN
    return FSRCNN(**kw)


def _vdsr(**kw):
    from .vdsr import VDSR
    return VDSR(**kw)


def _drcn(**kw):
    from .drcn import DRCN
    return DRCN(**kw)


def _red30(**kw):
    from .red import RED30
    return RED30(**kw)


def _drrn(**kw):
    from .drrn import DRRN
    return DRRN(**kw)


def _srdensenet(**kw):
    from .srdensenet import SRDenseNet
    return SRDenseNet(**kw)


def _srresnet(**kw):
    from .srresnet import SRResNet
    return SRResNet(**kw)


def _srgan_d(scale=4, **kw):
    from .srresnet import SRGANDiscriminator
    model = SRGANDiscriminator(**kw)
    model.scale = scale
    return model


def _edsr(**kw):
    from .edsr import EDSR
    return EDSR(**kw)


def _mdsr(**kw):
    from .edsr import MDSR
    return MDSR(**kw)


_AUG8 = ("flip", "rot90")

_SPECS = [
    ModelSpec(
        "srcnn", _srcnn, (2, 3, 4), "bicubic-y",
        "Dong, Loy, He, Tang. Learning a Deep Convolutional Network for Image Super-Resolution, ECCV 2014; "
        "Image Super-Resolution Using Deep Convolutional Networks, TPAMI 2016",
        "3 convs (9-1-5 / 9-3-5 / 9-5-5), ReLU; valid or same borders",
        TrainingRecipe(data="T91 (ECCV'14; TPAMI'16 also ImageNet, 395,909 images)", patch_size=33, label_size=21,
                       batch_size=128, optimizer="sgd", lr=1e-4, momentum=0.9, loss="mse",
                       iterations=15_000_000, per_layer_lr={"patch_extraction": 1e-4, "non_linear_mapping": 1e-4,
                                                            "reconstruction": 1e-5},
                       notes="sub-images 33x33 at stride 14 from Gaussian-blurred, bicubic down/up-sampled HR; "
                             "valid convolutions so the 33x33 input predicts the 21x21 label centre; "
                             "init N(0, 0.001^2); the paper counts ~8e8 backpropagations (iterations here "
                             "= 8e8 / batch is approximate)"),
        defaults={"variant": "9-1-5"}, paper_params="8,129 (9-1-5) / 57,281 (9-5-5) incl. biases"),
    ModelSpec(
        "fsrcnn", _fsrcnn, (2, 3, 4), "lr-y",
        "Dong, Loy, Tang. Accelerating the Super-Resolution Convolutional Neural Network, ECCV 2016",
        "FSRCNN(d, s, m): 5x5 feature extraction, 1x1 shrinking, m 3x3 mapping, 1x1 expanding, PReLU, 9x9 deconv",
        TrainingRecipe(data="T91 then fine-tuned on T91 + General-100, augmented (scales 0.9-0.6, rotations 90-270)",
                       patch_size=7, batch_size=128, optimizer="sgd", lr=1e-3, loss="mse",
                       per_layer_lr={"convolutions": 1e-3, "deconvolution": 1e-4},
                       lr_schedule={"type": "fine-tune", "factor": 0.5},
                       augment=("scale", "rot90"),
                       notes="LR sub-images 10/7/6 px for x2/x3/x4 (HR = scale x that, 19/21/24 with the "
                             "deconv's overlap); the x2/x4 models are fine-tuned from x3 (only the "
                             "deconvolution changes); learning rates halved during fine-tuning"),
        defaults={"d": 56, "s": 12, "m": 4}, paper_params="12,464 conv weights (x3)"),
    ModelSpec(
        "vdsr", _vdsr, (2, 3, 4), "bicubic-y",
        "Kim, Lee, Lee. Accurate Image Super-Resolution Using Very Deep Convolutional Networks, CVPR 2016",
        "20 3x3 convs of 64, ReLU, global residual; one model for x2/x3/x4",
        TrainingRecipe(data="T91 + BSD200 (291 images), multi-scale x2/x3/x4", patch_size=41, batch_size=64,
                       optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, loss="mse", epochs=80,
                       lr_schedule={"type": "step", "every_epochs": 20, "gamma": 0.1},
                       grad_clip={"type": "adjustable", "theta": 0.01}, augment=("flip", "rot90"),
                       notes="gradients clipped to [-theta/lr, theta/lr]; He init; ~6 h on a Titan Z"),
        paper_params="664,704 weights (665K)"),
    ModelSpec(
        "drcn", _drcn, (2, 3, 4), "bicubic-y",
        "Kim, Lee, Lee. Deeply-Recursive Convolutional Network for Image Super-Resolution, CVPR 2016",
        "embedding net, one 3x3 conv recursed 16 times (shared weights), reconstruction per recursion, "
        "skip, learned ensemble",
        TrainingRecipe(data="T91", patch_size=41, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9,
                       weight_decay=1e-4, loss="drcn (recursive supervision, alpha 1 -> 0, beta 1e-4)",
                       lr_schedule={"type": "plateau", "patience_epochs": 5, "gamma": 0.1, "min_lr": 1e-6},
                       grad_clip={"type": "norm"},
                       notes="patches at stride 21; recursive weights start as identity, others He; "
                             "alpha decays from 1 to 0 during training (tinysr.models.drcn.drcn_loss); "
                             "multi-scale training as VDSR; ~6 days on a Titan X"),
        paper_params="1,774K weights"),
    ModelSpec(
        "red30", _red30, (2, 3, 4), "bicubic-y",
        "Mao, Shen, Yang. Image Restoration Using Very Deep Convolutional Encoder-Decoder Networks with "
        "Symmetric Skip Connections, NIPS 2016",
        "15 convs + 15 transposed convs, symmetric skips every 2 layers, input residual",
        TrainingRecipe(data="BSD (300 images, grayscale)", patch_size=50, batch_size=64, optimizer="adam",
                       lr=1e-4, betas=(0.9, 0.999), loss="mse",
                       notes="one model for several scales; batch size and iteration count are not stated in the "
                             "paper (64 is tinysr's choice)"),
        paper_params="4,131K weights (128 filters, as listed by DRRN)"),
    ModelSpec(
        "drrn", _drrn, (2, 3, 4), "bicubic-y",
        "Tai, Yang, Liu. Image Super-Resolution via Deep Recursive Residual Network, CVPR 2017",
        "B1U25: recursive block of 25 pre-activation residual units sharing weights, multi-path local + "
        "global residual, 128 filters",
        TrainingRecipe(data="T91 + BSD200 (291 images), multi-scale x2/x3/x4", patch_size=31, batch_size=128,
                       optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, loss="mse", epochs=50,
                       lr_schedule={"type": "step", "every_epochs": 10, "gamma": 0.5},
                       grad_clip={"type": "adjustable", "theta": 0.01},
                       augment=("flip", "rot90", "downscale"),
                       notes="patches 31x31 at stride 21; He init; 4 days on 2 Titan X for B1U25"),
        defaults={"blocks": 1, "units": 25}, paper_params="297K weights (B1U25)"),
    ModelSpec(
        "srdensenet", _srdensenet, (4,), "lr-y",
        "Tong, Li, Liu, Gao. Image Super-Resolution Using Dense Skip Connections, ICCV 2017",
        "8 dense blocks x 8 layers (growth 16), dense skips, 1x1 bottleneck 256, two stride-2 deconvs, 3x3 "
        "reconstruction",
        TrainingRecipe(data="ImageNet subset (50,000 images)", patch_size=25, batch_size=32, optimizer="adam",
                       lr=1e-4, loss="mse", betas=(0.9, 0.999),
                       lr_schedule={"type": "step", "gamma": 0.1, "note": "reduced when training stalls"},
                       notes="LR 25x25 / HR 100x100 patches; x4 only"),
        paper_params="not stated"),
    ModelSpec(
        "srresnet", _srresnet, (2, 4), "lr-rgb",
        "Ledig et al. Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network, "
        "CVPR 2017",
        "9x9 head, 16 residual blocks (BN, PReLU), pixel-shuffle upsampling, 9x9 tail",
        TrainingRecipe(data="ImageNet (350K images)", patch_size=24, label_size=96, batch_size=16, optimizer="adam",
                       lr=1e-4, betas=(0.9, 0.999), loss="mse", iterations=1_000_000,
                       notes="x4; HR 96x96 crops; SRGAN then trains 1e5 updates at 1e-4 and 1e5 at 1e-5 with "
                             "VGG54 content loss + 1e-3 adversarial loss, initialised from SRResNet"),
        paper_params="~1.5M"),
    ModelSpec(
        "srgan_discriminator", _srgan_d, (2, 4), "hr-rgb",
        "Ledig et al. CVPR 2017 (SRGAN discriminator)",
        "8 conv layers (LeakyReLU 0.2, BN), dense 1024, dense 1",
        TrainingRecipe(data="ImageNet (350K images)", patch_size=96, batch_size=16, optimizer="adam", lr=1e-4,
                       betas=(0.9, 0.999), loss="bce (adversarial)", iterations=200_000,
                       lr_schedule={"type": "step", "milestones": [100_000], "gamma": 0.1}),
        defaults={"input_size": 96}),
    ModelSpec(
        "edsr_baseline", _edsr, (2, 3, 4), "lr-rgb",
        "Lim, Son, Kim, Nah, Lee. Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017",
        "16 residual blocks of 64, no BN, residual scaling 1, mean shift, pixel shuffle",
        TrainingRecipe(data="DIV2K (800 training images)", patch_size=48, batch_size=16, optimizer="adam", lr=1e-4,
                       betas=(0.9, 0.999), loss="l1", iterations=300_000,
                       lr_schedule={"type": "step", "every_iterations": 200_000, "gamma": 0.5},
                       augment=_AUG8, notes="LR patches 48x48; x3/x4 initialised from the trained x2 model"),
        defaults={"blocks": 16, "channels": 64, "res_scale": 1.0}, paper_params="1.5M (x4); 1.37M for x2"),
    ModelSpec(
        "edsr", _edsr, (2, 3, 4), "lr-rgb",
        "Lim, Son, Kim, Nah, Lee. Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017",
        "32 residual blocks of 256, residual scaling 0.1, mean shift, pixel shuffle",
        TrainingRecipe(data="DIV2K (800 training images)", patch_size=48, batch_size=16, optimizer="adam", lr=1e-4,
                       betas=(0.9, 0.999), loss="l1", iterations=300_000,
                       lr_schedule={"type": "step", "every_iterations": 200_000, "gamma": 0.5},
                       augment=_AUG8, notes="x3/x4 initialised from the trained x2 model"),
        defaults={"blocks": 32, "channels": 256, "res_scale": 0.1}, paper_params="43M (x4)"),
    ModelSpec(
        "mdsr", _mdsr, (2, 3, 4), "lr-rgb",
        "Lim, Son, Kim, Nah, Lee. Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017",
        "multi-scale: per-scale 5x5 pre-processing and upsamplers around a shared 80-block body",
        TrainingRecipe(data="DIV2K (800 training images)", patch_size=48, batch_size=16, optimizer="adam", lr=1e-4,
                       betas=(0.9, 0.999), loss="l1", iterations=300_000,
                       lr_schedule={"type": "step", "every_iterations": 200_000, "gamma": 0.5},
                       augment=_AUG8, notes="each minibatch uses one scale drawn at random from x2/x3/x4"),
        defaults={"blocks": 80, "channels": 64}, paper_params="8.0M"),
]

_REGISTRY = {s.name: s for s in _SPECS}


def registry():
    """``{name: ModelSpec}`` of every network (a copy)."""
    return dict(_REGISTRY)


def list_models():
    """The registered model names, in the papers' chronological order."""
    return list(_REGISTRY)


def get_spec(name):
    """The :class:`ModelSpec` of ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    key = str(name).lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def build(name, scale=None, **kwargs):
    """Build the network ``name`` for ``scale`` with the paper's configuration (``kwargs`` override it).

    ``scale`` defaults to the first supported scale of the model. An unsupported scale raises
    ``ValueError`` naming the supported ones. Examples::

        build("srcnn", scale=3, variant="9-5-5", padding="same")
        build("fsrcnn", scale=2, d=32, s=5, m=1)      # FSRCNN-s
        build("drrn", scale=4, units=9)               # B1U9
    """
    spec = get_spec(name)
    if scale is None:
        scale = spec.scales[0]
    if scale not in spec.scales:
        raise ValueError(f"{spec.name} supports scales {', '.join(f'x{s}' for s in spec.scales)}; got x{scale}")
    model = spec.build(scale, **kwargs)
    # Remember how the network was made, so that a checkpoint of it (tinysr.train, save_weights) can
    # name what rebuilds it even when the module itself is what the user passes around.
    model.build_name, model.build_kwargs = spec.name, dict(kwargs)
    return model
