"""DRRN -- Tai, Yang, Liu. "Image Super-Resolution via Deep Recursive Residual Network", CVPR 2017.

A very deep network (52 conv layers for B1U25) with only 297K weights, because weights are shared:

* a **recursive block** starts with one 3x3 conv ``h0 = conv_in(ReLU(x))`` and then applies the same
  **residual unit** U times; the unit is two pre-activation convolutions
  ``u(h) = conv2(ReLU(conv1(ReLU(h))))`` whose two weight tensors are shared by all U units;
* **multi-path local residual learning**: every unit adds the block's first output,
  ``h_u = u(h_{u-1}) + h0`` (not its own input);
* **global residual learning**: ``y = conv_out(ReLU(h_U)) + x``.

DRRN_BbUu stacks B blocks (each with its own weights) of U units; the paper's best is B1U25 and
B1U9 is its small sibling. 128 filters, no biases in the released ports. Depth
``d = (1 + 2U) B + 1``, receptive field ``2d + 1`` (105 for B1U25, 41 for B1U9).
Weights: 297,216 for B1U25 (any U: the units share them). Input convention ``"bicubic-y"``;
initialisation He et al. 2015.

The paper's pre-activation unit is BN-ReLU-conv; the public ports have no BN (``batch_norm=False``,
default, which is also what the 297,216 count assumes). ``skip="relu"`` reproduces a quirk of the
jt827859032 PyTorch port whose weights are public: an in-place ReLU makes every unit add
``ReLU(h0)`` instead of ``h0`` (see ``shared/reference-weights/README.md``).
"""
from .. import functional as F
from .. import nn
from .common import SRModel, init_conv_
from .registry import TrainingRecipe, register


class RecursiveBlock(nn.Module):
    """One DRRN recursive block: input conv, then ``units`` residual units sharing ``conv1``/``conv2``.

    ``conv1`` and ``conv2`` are single Conv2d objects called U times each, so their gradients are
    the sums over the U uses. ``skip`` is ``"pre"`` (paper: add ``h0``) or ``"relu"`` (add ``ReLU(h0)``).
    """

    def __init__(self, in_channels, channels, units, skip="pre", bias=False, batch_norm=False):
        super().__init__()
        self.units, self.skip, self.batch_norm = units, skip, batch_norm
        self.conv_in = init_conv_(nn.Conv2d(in_channels, channels, 3, padding=1, bias=bias), "he")
        self.conv1 = init_conv_(nn.Conv2d(channels, channels, 3, padding=1, bias=bias), "he")
        self.conv2 = init_conv_(nn.Conv2d(channels, channels, 3, padding=1, bias=bias), "he")
        if batch_norm:
            # statistics differ between recursions, so each use gets its own BN
            self.bn1 = nn.ModuleList([nn.BatchNorm2d(channels) for _ in range(units)])
            self.bn2 = nn.ModuleList([nn.BatchNorm2d(channels) for _ in range(units)])

    def forward(self, x):
        h0 = self.conv_in(F.relu(x))
        skip = F.relu(h0) if self.skip == "relu" else h0
        h = h0
        for u in range(self.units):
            t = self.bn1[u](h) if self.batch_norm else h
            t = self.conv1(F.relu(t))
            t = self.bn2[u](t) if self.batch_norm else t
            t = self.conv2(F.relu(t))
            h = t + skip
        return h


@register(
    "drrn", (2, 3, 4), "bicubic-y",
    "Tai, Yang, Liu. Image Super-Resolution via Deep Recursive Residual Network, CVPR 2017",
    "B1U25: recursive block of 25 pre-activation residual units sharing weights, multi-path local + "
    "global residual, 128 filters",
    TrainingRecipe(data="T91 + BSD200 (291 images), multi-scale x2/x3/x4", patch_size=31, batch_size=128,
                   optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, loss="mse", epochs=50,
                   lr_schedule={"type": "step", "every_epochs": 10, "gamma": 0.5},
                   grad_clip={"type": "adjustable", "theta": 0.01},
                   augment=("flip", "rot90", "downscale"),
                   notes="patches 31x31 at stride 21; He init; 4 days on 2 Titan X for B1U25"),
    defaults={"blocks": 1, "units": 25}, paper_params="297K weights (B1U25)")
class DRRN(SRModel):
    """DRRN_B{blocks}U{units}: recursive blocks of shared residual units plus a global residual.

    Shapes: ``(N, 1, H, W) -> (N, 1, H, W)``.
    """

    input_convention = "bicubic-y"

    def __init__(self, scale=3, blocks=1, units=25, channels=128, skip="pre", bias=False, batch_norm=False,
                 in_channels=1):
        super().__init__()
        if skip not in ("pre", "relu"):
            raise ValueError(f"skip must be 'pre' (paper) or 'relu' (jt827859032 port), got {skip!r}")
        self.scale, self.blocks_count, self.units, self.in_channels = scale, blocks, units, in_channels
        self.blocks = nn.ModuleList([RecursiveBlock(in_channels if b == 0 else channels, channels, units, skip,
                                                    bias, batch_norm) for b in range(blocks)])
        self.conv_out = init_conv_(nn.Conv2d(channels, in_channels, 3, padding=1, bias=bias), "he")

    @property
    def depth(self):
        return (1 + 2 * self.units) * self.blocks_count + 1

    @property
    def receptive_field(self):
        return 2 * self.depth + 1

    def forward(self, x):
        """``x``: bicubic-upsampled Y ``(N, 1, H, W)`` -> ``x + residual``, same shape."""
        h = x
        for block in self.blocks:
            h = block(h)
        return self.conv_out(F.relu(h)) + x
