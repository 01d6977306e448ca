"""SRResNet and the SRGAN discriminator -- Ledig et al. "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network", CVPR 2017.

**SRResNet** (the generator, trained with MSE):

* 9x9 conv ``3 -> 64``, PReLU;
* **B = 16 residual blocks**: ``x + BN(conv3x3(PReLU(BN(conv3x3(x)))))``;
* 3x3 conv, BN, plus the output of the first layer (a long skip connection);
* **upsampling**: two sub-pixel stages ``conv3x3(64 -> 256), PixelShuffle(2), PReLU`` for x4;
* 9x9 conv ``64 -> 3``.

Input convention ``"lr-rgb"``: the LR RGB image in [0, 1] (the paper scales HR targets to [-1, 1];
tinysr keeps [0, 1] on both sides). About 1.55M parameters for x4. Initialisation: PyTorch default
(the paper does not say), PReLU slopes 0.25.

Public SRResNet/SRGAN generators differ in details the paper leaves open; the constructor's options
name them, so that :func:`tinysr.models.load_official` loads each into this class: ``prelu``
(one slope per channel or one per layer), ``bias`` (the convolutions before a BN need none),
``post_residual`` (conv + BN as in the paper, or conv + PReLU) and ``output`` (how the tail's value
becomes an image in [0, 1]: as is, ``(y + 1) / 2`` for a network trained on [-1, 1] targets, or
``(tanh(y) + 1) / 2``).

**SRGAN discriminator** (:class:`SRGANDiscriminator`): eight 3x3 conv layers, 64-64-128-128-256-256-
512-512 filters with strides 1-2-1-2-1-2-1-2, LeakyReLU(0.2), BN on all but the first; then a dense
layer of 1024, LeakyReLU(0.2), and a dense layer of 1 (the logit; the sigmoid is in the loss).
Input: HR RGB patches (96 x 96 in the paper).
"""
from .. import functional as F
from .. import nn
from .common import SRModel, chain_receptive_field, upsampler
from .registry import TrainingRecipe, register


_OUTPUTS = ("linear", "affine", "tanh")


class SRResBlock(nn.Module):
    """SRResNet residual block: conv-BN-PReLU-conv-BN plus the identity (shapes preserved).

    ``prelu_slopes``: 1 (shared by all channels) or ``channels``; ``bias``: whether the convs have biases.
    """

    def __init__(self, channels=64, prelu_slopes=None, bias=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels if prelu_slopes is None else prelu_slopes)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


@register(
    "srresnet", (2, 4), "lr-rgb",
    "Ledig et al. Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial Network, "
    "CVPR 2017",
    "9x9 head, 16 residual blocks (BN, PReLU), pixel-shuffle upsampling, 9x9 tail",
    TrainingRecipe(data="ImageNet (350K images)", patch_size=24, label_size=96, batch_size=16, optimizer="adam",
                   lr=1e-4, betas=(0.9, 0.999), loss="mse", iterations=1_000_000,
                   notes="x4; HR 96x96 crops; SRGAN then trains 1e5 updates at 1e-4 and 1e5 at 1e-5 with "
                         "VGG54 content loss + 1e-3 adversarial loss, initialised from SRResNet"),
    paper_params="~1.5M")
class SRResNet(SRModel):
    """SRResNet: 9x9 head, ``blocks`` residual blocks with BN/PReLU, sub-pixel upsampling, 9x9 tail.

    Shapes: ``(N, 3, h, w) -> (N, 3, scale*h, scale*w)``; scales 2, 3, 4, 8 (the paper: 4).

    Options (defaults: the paper as tinysr trains it):

    * ``prelu`` -- ``"channel"`` (one slope per channel) or ``"shared"`` (one per layer);
    * ``bias`` -- biases on the residual blocks' and the post-residual convs (BN follows each of them,
      so a bias is redundant; PyTorch's demo SRResNet has none);
    * ``post_residual`` -- ``"bn"`` (conv + BN, the paper) or ``"prelu"`` (conv + PReLU);
    * ``output`` -- ``"linear"`` (the tail's value is the image), ``"affine"`` (``(y + 1) / 2``: trained on
      [-1, 1] images) or ``"tanh"`` (``(tanh(y) + 1) / 2``).
    """

    input_convention = "lr-rgb"
    in_channels = 3

    def __init__(self, scale=4, blocks=16, channels=64, in_channels=3, prelu="channel", bias=True,
                 post_residual="bn", output="linear"):
        super().__init__()
        if prelu not in ("channel", "shared"):
            raise ValueError(f"prelu must be 'channel' or 'shared', got {prelu!r}")
        if post_residual not in ("bn", "prelu"):
            raise ValueError(f"post_residual must be 'bn' or 'prelu', got {post_residual!r}")
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(_OUTPUTS)}, got {output!r}")
        self.scale, self.n_blocks, self.in_channels = scale, blocks, in_channels
        self.output = output
        slopes = channels if prelu == "channel" else 1
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU(slopes))
        self.residual_blocks = nn.Sequential(*[SRResBlock(channels, slopes, bias) for _ in range(blocks)])
        after = nn.BatchNorm2d(channels) if post_residual == "bn" else nn.PReLU(slopes)
        self.post_residual = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=bias), after)
        self.upsampling = upsampler(scale, channels, activation=lambda: nn.PReLU(slopes))
        self.tail = nn.Conv2d(channels, in_channels, 9, padding=4)

    @property
    def receptive_field(self):
        return chain_receptive_field([9] + [3] * (2 * self.n_blocks + 1) + [3]) + 4  # + tail, in LR px approx.

    def forward(self, x):
        """``x``: LR RGB ``(N, 3, h, w)`` in [0, 1] -> SR RGB ``(N, 3, scale*h, scale*w)``."""
        h0 = self.head(x)
        h = self.post_residual(self.residual_blocks(h0)) + h0
        y = self.tail(self.upsampling(h))
        if self.output == "affine":
            return (y + 1.0) * 0.5
        if self.output == "tanh":
            return (F.tanh(y) + 1.0) * 0.5
        return y


class SRGANDiscriminator(nn.Module):
    """SRGAN's discriminator: 8 conv layers (LeakyReLU 0.2, BN), dense 1024, dense 1 -> one logit per image.

    ``input_size`` is the HR patch side (96 in the paper); the dense layer's width depends on it:
    ``512 * (input_size / 16)^2`` inputs. Shapes: ``(N, 3, S, S) -> (N, 1)``.
    """

    input_convention = "hr-rgb"

    def __init__(self, input_size=96, in_channels=3, base=64, dense=1024):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16 (four stride-2 layers), got {input_size}")
        self.input_size = input_size
        widths = [base, base, 2 * base, 2 * base, 4 * base, 4 * base, 8 * base, 8 * base]
        layers, cin = [], in_channels
        for i, w in enumerate(widths):
            layers.append(nn.Conv2d(cin, w, 3, stride=1 + i % 2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2))
            cin = w
        self.features = nn.Sequential(*layers)
        side = input_size // 16
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, dense), nn.LeakyReLU(0.2),
                                        nn.Linear(dense, 1))

    def forward(self, x):
        """``x``: HR (real or super-resolved) RGB ``(N, 3, S, S)`` -> logits ``(N, 1)``."""
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ValueError(f"the discriminator was built for {self.input_size}x{self.input_size} patches, "
                             f"got {tuple(x.shape[-2:])}")
        return self.classifier(self.features(x))


@register(
    "srgan_discriminator", (2, 4), "hr-rgb",
    "Ledig et al. CVPR 2017 (SRGAN discriminator)",
    "8 conv layers (LeakyReLU 0.2, BN), dense 1024, dense 1",
    TrainingRecipe(data="ImageNet (350K images)", patch_size=96, batch_size=16, optimizer="adam", lr=1e-4,
                   betas=(0.9, 0.999), loss="bce (adversarial)", iterations=200_000,
                   lr_schedule={"type": "step", "milestones": [100_000], "gamma": 0.1}),
    defaults={"input_size": 96})
def srgan_discriminator(scale=4, **kwargs):
    """SRGAN's discriminator (see :class:`SRGANDiscriminator`), recording the ``scale`` of its generator."""
    model = SRGANDiscriminator(**kwargs)
    model.scale = scale
    return model
