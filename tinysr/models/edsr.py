"""EDSR and MDSR -- Lim, Son, Kim, Nah, Lee. "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017 (NTIRE 2017 winner).

**EDSR** simplifies SRResNet: no BatchNorm, no activation outside the residual blocks, and a
wide model kept stable by **residual scaling**:

* RGB **mean shift** (subtract the DIV2K mean colour, add it back at the end);
* **head** -- 3x3 conv ``3 -> F``;
* **body** -- B residual blocks ``x + s * conv(ReLU(conv(x)))`` and a 3x3 conv, plus the head's
  output (long skip);
* **upsampler** -- sub-pixel convolution (x2, x3, x4), **tail** 3x3 conv ``F -> 3``.

EDSR-baseline: B = 16, F = 64, s = 1 (1.37M parameters for x2). EDSR: B = 32, F = 256, s = 0.1
(43M for x4). **MDSR** is one network for x2, x3 and x4: a shared body of 80 blocks (F = 64)
with, per scale, a **pre-processing** module (two residual blocks with 5x5 kernels) and an
upsampler (8.0M parameters). Input convention ``"lr-rgb"`` (LR RGB in [0, 1]; the official code
uses 0..255). Initialisation: PyTorch default.

**Value range.** Every EDSR code base subtracts the mean colour, but they disagree on the units the body
works in: the official PyTorch code multiplies by 255 (``rgb_range=255``), krasserm's Keras EDSR by 2
(``(x - mean) / 127.5`` on 0..255 pixels). ``rgb_range`` sets that factor: the body sees
``rgb_range * (x - mean)`` and the tail's output is divided by it before the mean is added back, so
weights trained in any of these conventions run unchanged (:func:`tinysr.models.load_official`).
"""
from dataclasses import replace

from .. import nn
from .common import MeanShift, ResBlock, SRModel, chain_receptive_field, upsampler
from .registry import TrainingRecipe, register

#: The EDSR paper's training (Lim et al. 2017, Sec. 4.1), shared by EDSR, its baseline and MDSR.
_DIV2K = TrainingRecipe(data="DIV2K (800 training images)", patch_size=48, batch_size=16, optimizer="adam", lr=1e-4,
                        betas=(0.9, 0.999), loss="l1", iterations=300_000,
                        lr_schedule={"type": "step", "every_iterations": 200_000, "gamma": 0.5},
                        augment=("flip", "rot90"))
_CITATION = "Lim, Son, Kim, Nah, Lee. Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017"


@register(
    "edsr", (2, 3, 4), "lr-rgb",
    _CITATION,
    "32 residual blocks of 256, residual scaling 0.1, mean shift, pixel shuffle",
    replace(_DIV2K, notes="x3/x4 initialised from the trained x2 model"),
    defaults={"blocks": 32, "channels": 256, "res_scale": 0.1}, paper_params="43M (x4)")
@register(
    "edsr_baseline", (2, 3, 4), "lr-rgb",
    _CITATION,
    "16 residual blocks of 64, no BN, residual scaling 1, mean shift, pixel shuffle",
    replace(_DIV2K, notes="LR patches 48x48; x3/x4 initialised from the trained x2 model"),
    defaults={"blocks": 16, "channels": 64, "res_scale": 1.0}, paper_params="1.5M (x4); 1.37M for x2")
class EDSR(SRModel):
    """EDSR (and EDSR-baseline with its defaults ``blocks=16, channels=64, res_scale=1``).

    ``rgb_mean`` is the mean colour in [0, 1] units; ``rgb_range`` the factor on the mean-free input (see
    the module docstring).  Shapes: ``(N, 3, h, w) -> (N, 3, scale*h, scale*w)``; scale 2, 3 or 4.
    """

    input_convention = "lr-rgb"
    in_channels = 3

    def __init__(self, scale=2, blocks=16, channels=64, res_scale=1.0, in_channels=3,
                 rgb_mean=(0.4488, 0.4371, 0.4040), rgb_range=1.0):
        super().__init__()
        self.scale, self.n_blocks, self.in_channels = scale, blocks, in_channels
        self.rgb_range = float(rgb_range)
        self.sub_mean = MeanShift(rgb_mean, sign=-1)
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(channels, 3, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.upsample = upsampler(scale, channels)
        self.tail = nn.Conv2d(channels, in_channels, 3, padding=1)
        self.add_mean = MeanShift(rgb_mean, sign=+1)

    @property
    def receptive_field(self):
        return chain_receptive_field([3] * (2 * self.n_blocks + 2)) + 2  # + upsampler/tail, LR px approx.

    def forward(self, x):
        """``x``: LR RGB ``(N, 3, h, w)`` in [0, 1] -> SR RGB ``(N, 3, scale*h, scale*w)``."""
        x = self.sub_mean(x)
        if self.rgb_range != 1.0:
            x = x * self.rgb_range
        h = self.head(x)
        h = self.body(h) + h
        y = self.tail(self.upsample(h))
        if self.rgb_range != 1.0:
            y = y * (1.0 / self.rgb_range)
        return self.add_mean(y)


@register(
    "mdsr", (2, 3, 4), "lr-rgb",
    _CITATION,
    "multi-scale: per-scale 5x5 pre-processing and upsamplers around a shared 80-block body",
    replace(_DIV2K, notes="each minibatch uses one scale drawn at random from x2/x3/x4"),
    defaults={"blocks": 80, "channels": 64}, paper_params="8.0M")
class MDSR(SRModel):
    """MDSR: scale-specific pre-processing and upsamplers around one shared body.

    ``scales`` lists the scales the model serves (default 2, 3, 4); ``scale`` is the one that
    :meth:`forward` uses unless ``forward(x, scale=s)`` says otherwise (see :meth:`set_scale`).
    Shapes: ``(N, 3, h, w) -> (N, 3, s*h, s*w)``.
    """

    input_convention = "lr-rgb"
    in_channels = 3

    def __init__(self, scale=2, scales=(2, 3, 4), blocks=80, channels=64, res_scale=1.0, in_channels=3,
                 rgb_mean=(0.4488, 0.4371, 0.4040)):
        super().__init__()
        self.scales = tuple(scales)
        if scale not in self.scales:
            raise ValueError(f"scale {scale} is not among this MDSR's scales {self.scales}")
        self.scale, self.n_blocks, self.in_channels = scale, blocks, in_channels
        self.sub_mean = MeanShift(rgb_mean, sign=-1)
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.pre_process = nn.ModuleList([nn.Sequential(ResBlock(channels, 5), ResBlock(channels, 5))
                                          for _ in self.scales])
        self.body = nn.Sequential(*[ResBlock(channels, 3, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.upsample = nn.ModuleList([upsampler(s, channels) for s in self.scales])
        self.tail = nn.Conv2d(channels, in_channels, 3, padding=1)
        self.add_mean = MeanShift(rgb_mean, sign=+1)

    def set_scale(self, scale):
        """Choose which scale-specific modules :meth:`forward` uses; returns self."""
        if scale not in self.scales:
            raise ValueError(f"scale {scale} is not among this MDSR's scales {self.scales}")
        self.scale = scale
        return self

    @property
    def receptive_field(self):
        return chain_receptive_field([3] + [5] * 4 + [3] * (2 * self.n_blocks + 1)) + 2

    def forward(self, x, scale=None):
        """``x``: LR RGB ``(N, 3, h, w)`` -> SR RGB at ``scale`` (default ``self.scale``)."""
        s = self.scale if scale is None else scale
        if s not in self.scales:
            raise ValueError(f"scale {s} is not among this MDSR's scales {self.scales}")
        i = self.scales.index(s)
        h = self.pre_process[i](self.head(self.sub_mean(x)))
        h = self.body(h) + h
        return self.add_mean(self.tail(self.upsample[i](h)))
