"""VDSR -- Kim, Lee, Lee. "Accurate Image Super-Resolution Using Very Deep Convolutional Networks",
CVPR 2016.

Twenty 3x3 convolutions of 64 filters (ReLU after all but the last) that predict the *residual*
between the bicubic-upsampled input and the HR image; the network output is ``x + residual``
(global residual learning), which lets a very deep plain network train with a high learning rate
(0.1, with adjustable gradient clipping). One model serves x2, x3 and x4 (multi-scale training).

Input convention ``"bicubic-y"`` (bicubic-upsampled Y in [0, 1]), zero padding keeps the size.
Receptive field: 41 x 41 (20 layers of 3x3). Parameters: 664,704 weights (the paper's "665K");
the official model also has 1,217 biases.  Initialisation (paper): He et al. 2015.
"""
from .. import nn
from .common import SRModel, chain_receptive_field, init_conv_
from .registry import TrainingRecipe, register


@register(
    "vdsr", (2, 3, 4), "bicubic-y",
    "Kim, Lee, Lee. Accurate Image Super-Resolution Using Very Deep Convolutional Networks, CVPR 2016",
    "20 3x3 convs of 64, ReLU, global residual; one model for x2/x3/x4",
    TrainingRecipe(data="T91 + BSD200 (291 images), multi-scale x2/x3/x4", patch_size=41, batch_size=64,
                   optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, loss="mse", epochs=80,
                   lr_schedule={"type": "step", "every_epochs": 20, "gamma": 0.1},
                   grad_clip={"type": "adjustable", "theta": 0.01}, augment=("flip", "rot90"),
                   notes="gradients clipped to [-theta/lr, theta/lr]; He init; ~6 h on a Titan Z"),
    paper_params="664,704 weights (665K)")
class VDSR(SRModel):
    """VDSR: ``depth`` 3x3 conv layers, ``channels`` wide, plus the input (global residual).

    ``scale`` is recorded only (one network for every scale). ``bias=False`` gives the bias-free
    variant of the popular PyTorch re-training (twtygqyy). Shapes: ``(N, 1, H, W) -> (N, 1, H, W)``.
    """

    input_convention = "bicubic-y"

    def __init__(self, scale=3, depth=20, channels=64, bias=True, in_channels=1):
        super().__init__()
        if depth < 2:
            raise ValueError(f"VDSR needs depth >= 2, got {depth}")
        self.scale, self.depth, self.in_channels = scale, depth, in_channels
        convs = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=bias)]
        convs += [nn.Conv2d(channels, channels, 3, padding=1, bias=bias) for _ in range(depth - 2)]
        convs += [nn.Conv2d(channels, in_channels, 3, padding=1, bias=bias)]
        self.layers = nn.ModuleList([init_conv_(c, "he") for c in convs])

    @property
    def receptive_field(self):
        return chain_receptive_field([3] * self.depth)

    def forward(self, x):
        """``x``: bicubic-upsampled Y ``(N, 1, H, W)`` -> ``x + residual``, same shape."""
        h = x
        for conv in self.layers[:-1]:
            h = conv(h, activation="relu")      # relu(conv(h)) as one op: one pass over memory less
        return x + self.layers[-1](h)
