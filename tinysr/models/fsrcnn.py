"""FSRCNN -- Dong, Loy, Tang. "Accelerating the Super-Resolution Convolutional Neural Network",
ECCV 2016.

SRCNN made fast by working on the *LR* image and upsampling only at the end with a learned
transposed convolution ("deconvolution"). Five parts, named as in the paper (FSRCNN(d, s, m)):

1. **feature extraction** -- 5x5 conv, ``1 -> d``, PReLU;
2. **shrinking** -- 1x1 conv, ``d -> s``, PReLU (fewer channels for the mapping);
3. **mapping** -- ``m`` 3x3 convs, ``s -> s``, each with PReLU;
4. **expanding** -- 1x1 conv, ``s -> d``, PReLU;
5. **deconvolution** -- 9x9 transposed conv, ``d -> 1``, stride = scale.

FSRCNN is (56, 12, 4); FSRCNN-s is (32, 5, 1). Input convention ``"lr-y"``: LR Y in ``[0, 1]``;
output ``scale`` times larger (upsampling: the learned deconvolution). Parameters as the paper
counts them (convolution weights only): 12,464 for FSRCNN x3 -- it is the same for every scale
because the deconvolution's 9x9 kernel does not depend on the stride.

Receptive field (LR pixels): ``5 + 2m`` from the convolutions plus ``ceil(9 / scale) - 1`` from the
deconvolution, e.g. 15 for FSRCNN x3.

The authors' released weights use **one PReLU slope per layer** shared by all channels
(``prelu="shared"``, the default) and their test code pads with replicate borders, including a
one-pixel replicate pad of the LR feature map before the deconvolution (``padding_mode="replicate"``).
Initialisation (paper): He for the convolutions (PReLU), Gaussian N(0, 0.001^2) for the deconvolution.
"""
import math

from .. import functional as F
from .. import nn
from .common import SRModel, chain_receptive_field, init_conv_
from .registry import TrainingRecipe, register


@register(
    "fsrcnn", (2, 3, 4), "lr-y",
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
    defaults={"d": 56, "s": 12, "m": 4}, paper_params="12,464 conv weights (x3)")
class FSRCNN(SRModel):
    """FSRCNN(d, s, m): feature extraction, shrinking, mapping, expanding, deconvolution.

    Parameters
    ----------
    scale : int (2, 3, 4; any integer >= 2 works) -- the deconvolution's stride.
    d, s, m : the paper's width of the feature/expanding layers, of the shrunk mapping, and the
        number of mapping layers.
    prelu : ``"shared"`` (one slope per layer, the authors' weights) or ``"channel"`` (one per channel).
    padding_mode : ``"zeros"`` (ordinary 'same' zero padding) or ``"replicate"`` (the authors' test
        code: replicate borders everywhere and a 1-pixel replicate pre-pad of the deconvolution input).

    deconv_padding : the deconvolution's ``padding`` on the LR map (default with zero padding: the one that
        centres each LR pixel on its HR block, ``4 - (scale-1)//2``; with replicate padding: 4, the authors'
        ``deconv.m`` placement); ports of other code may need theirs (``output_padding`` follows so that the
        output is exactly ``scale`` times the input). The authors' x3 files were trained one HR pixel off
        their own placement: their importer uses 3 (see :mod:`tinysr.models.official`).
    offset : tinysr's fast recipe option (not the paper's): compute ``f(x - offset) + offset``, i.e. see and
        predict centred intensities (see :class:`tinysr.models.srcnn.SRCNN` for why it speeds Adam up).
    Shapes: ``(N, 1, h, w) -> (N, 1, scale*h, scale*w)``.
    """

    input_convention = "lr-y"
    registry_name = "fsrcnn"

    def __init__(self, scale=3, d=56, s=12, m=4, prelu="shared", padding_mode="zeros", channels=1, offset=0.0,
                 deconv_padding=None):
        super().__init__()
        if prelu not in ("shared", "channel"):
            raise ValueError(f"prelu must be 'shared' or 'channel', got {prelu!r}")
        if padding_mode not in ("zeros", "replicate"):
            raise ValueError(f"padding_mode must be 'zeros' or 'replicate', got {padding_mode!r}")
        self.scale, self.d, self.s, self.m = int(scale), d, s, m
        if deconv_padding is not None and not 0 <= 2 * int(deconv_padding) - 9 + int(scale) < int(scale):
            raise ValueError(f"deconv_padding {deconv_padding} cannot give an output exactly {scale} times the input "
                             f"(need 9 - scale <= 2 * padding < 9)")
        self.padding_mode, self.in_channels = padding_mode, channels
        self.offset = float(offset)

        def stage(cin, cout, k):
            conv = init_conv_(nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode=padding_mode), "he-prelu")
            return nn.Sequential(conv, nn.PReLU(1 if prelu == "shared" else cout))

        self.feature_extraction = stage(channels, d, 5)
        self.shrinking = stage(d, s, 1)
        self.mapping = nn.Sequential(*[stage(s, s, 3) for _ in range(m)])
        self.expanding = stage(s, d, 1)
        r = self.scale
        if padding_mode == "replicate":
            # authors' deconv.m: 1-px replicate pad of the LR map, then crop from (9-1)/2 + r, i.e. the
            # placement of padding 4 on the unpadded map; the pre-pad adds r to the padding.
            pad = 4 if deconv_padding is None else int(deconv_padding)
            self.deconv_padding = pad
            self.deconvolution = nn.ConvTranspose2d(d, channels, 9, stride=r, padding=pad + r,
                                                    output_padding=2 * pad - 9 + r)
        else:
            # LR pixel i covers HR pixels r*i .. r*i + r-1, so its centre is HR r*i + (r-1)/2.  The kernel's
            # centre tap lands on HR r*i - padding + 4: padding 4 - (r-1)//2 puts it on the centre (x3:
            # exactly; even scales: half a pixel off, the best an odd kernel can do).  padding=4 would
            # shift x3 by a pixel, the offset the authors' x3 files carry (see tinysr.models.official).
            pad = max(4 - (r - 1) // 2, 0) if deconv_padding is None else int(deconv_padding)
            self.deconv_padding = pad
            self.deconvolution = nn.ConvTranspose2d(d, channels, 9, stride=r, padding=pad,
                                                    output_padding=2 * pad - 9 + r)
        nn.init.normal_(self.deconvolution.weight, std=1e-3)
        nn.init.zeros_(self.deconvolution.bias)

    @property
    def receptive_field(self):
        return chain_receptive_field([5, 1] + [3] * self.m + [1]) + math.ceil(9 / self.scale) - 1

    def build_arguments(self):
        """The keyword arguments that rebuild this network, read off its layers."""
        prelu = "shared" if self.shrinking[1].weight.size == 1 else "channel"
        return {"d": self.d, "s": self.s, "m": self.m, "prelu": prelu, "padding_mode": self.padding_mode,
                "channels": int(self.in_channels), "offset": float(getattr(self, "offset", 0.0)),
                "deconv_padding": int(self.deconvolution.padding[0]) if self.padding_mode == "zeros" else None}

    def forward(self, x):
        """``x``: LR Y ``(N, 1, h, w)`` in [0, 1] -> SR Y ``(N, 1, scale*h, scale*w)``."""
        if self.offset:
            x = x - self.offset
        h = self.feature_extraction(x)
        h = self.shrinking(h)
        h = self.mapping(h)
        h = self.expanding(h)
        if self.padding_mode == "replicate":
            h = F.pad(h, (1, 1, 1, 1), mode="replicate")
        y = self.deconvolution(h)
        return y + self.offset if self.offset else y
