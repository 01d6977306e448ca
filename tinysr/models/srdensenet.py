"""SRDenseNet -- Tong, Li, Liu, Gao. "Image Super-Resolution Using Dense Skip Connections", ICCV 2017.

DenseNet for SR, on the LR grid, in the paper's full variant ("SRDenseNet_All"):

* **low-level features** -- 3x3 conv ``1 -> 128``, ReLU;
* **dense blocks** -- 8 blocks of 8 3x3 conv layers (ReLU), growth rate k = 16: every layer sees
  the concatenation of the block input and all earlier layers' outputs; a block outputs the
  concatenation of its 8 layers (8 x 16 = 128 maps);
* **dense skip connections** -- the low-level features and the outputs of all 8 blocks are
  concatenated (128 + 8 x 128 = 1152 maps);
* **bottleneck** -- 1x1 conv to 256 maps, ReLU;
* **deconvolution layers** -- two 3x3 transposed convs with stride 2 (256 -> 256, ReLU) for x4;
* **reconstruction** -- 3x3 conv ``256 -> 1``.

Input convention ``"lr-y"`` (LR Y in [0, 1]); the paper trains and reports x4 only; x2 (one
deconvolution) and x8 (three) are the same design. Receptive field, in LR pixels: the longest path
crosses the low-level conv and all 64 dense layers (1 + 2 x 65 = 131), and the upsampling end (two
deconvolutions and the 3x3 reconstruction) reads a 3-pixel LR window for the worst-placed HR pixel:
133 x 133 (see :attr:`SRDenseNet.receptive_field`).  Initialisation: He et al. 2015.
"""
import math

from .. import functional as F
from .. import nn
from .common import SRModel, init_conv_
from .registry import TrainingRecipe, register


class DenseBlock(nn.Module):
    """``layers`` 3x3 conv+ReLU layers, each fed the concatenation of everything before it in the block.

    ``(N, C_in, h, w) -> (N, layers * growth, h, w)`` (the concatenation of the new feature maps).
    """

    def __init__(self, in_channels, growth=16, layers=8):
        super().__init__()
        self.layers = nn.ModuleList([init_conv_(nn.Conv2d(in_channels + i * growth, growth, 3, padding=1), "he")
                                     for i in range(layers)])

    def forward(self, x):
        feats = [x]
        new = []
        for conv in self.layers:
            inp = feats[0] if len(feats) == 1 else F.concat(feats, axis=1)
            y = F.relu(conv(inp))
            feats.append(y)
            new.append(y)
        return new[0] if len(new) == 1 else F.concat(new, axis=1)


@register(
    "srdensenet", (4,), "lr-y",
    "Tong, Li, Liu, Gao. Image Super-Resolution Using Dense Skip Connections, ICCV 2017",
    "8 dense blocks x 8 layers (growth 16), dense skips, 1x1 bottleneck 256, two stride-2 deconvs, 3x3 "
    "reconstruction",
    TrainingRecipe(data="ImageNet subset (50,000 images)", patch_size=25, batch_size=32, optimizer="adam",
                   lr=1e-4, loss="mse", betas=(0.9, 0.999),
                   lr_schedule={"type": "step", "gamma": 0.1, "note": "reduced when training stalls"},
                   notes="LR 25x25 / HR 100x100 patches; x4 only"),
    paper_params="not stated")
class SRDenseNet(SRModel):
    """SRDenseNet_All: dense blocks with dense skip connections, bottleneck, deconvolutions.

    Shapes: ``(N, 1, h, w) -> (N, 1, scale*h, scale*w)``; ``scale`` a power of two.
    """

    input_convention = "lr-y"

    def __init__(self, scale=4, blocks=8, layers=8, growth=16, low_channels=128, bottleneck=256, in_channels=1):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"SRDenseNet upsamples with stride-2 deconvolutions: scale 2, 4 or 8, got {scale}")
        self.scale, self.in_channels = scale, in_channels
        self.n_blocks, self.n_layers = blocks, layers
        self.low_level = init_conv_(nn.Conv2d(in_channels, low_channels, 3, padding=1), "he")
        block_out = layers * growth
        self.dense_blocks = nn.ModuleList([DenseBlock(low_channels if b == 0 else block_out, growth, layers)
                                           for b in range(blocks)])
        self.bottleneck = init_conv_(nn.Conv2d(low_channels + blocks * block_out, bottleneck, 1), "he")
        deconvs = []
        for _ in range(int(math.log2(scale))):
            layer = nn.ConvTranspose2d(bottleneck, bottleneck, 3, stride=2, padding=1, output_padding=1)
            nn.init.normal_(layer.weight, std=math.sqrt(2.0 / (bottleneck * 9)))
            nn.init.zeros_(layer.bias)
            deconvs.append(layer)
        self.deconvolution = nn.ModuleList(deconvs)
        self.reconstruction = init_conv_(nn.Conv2d(bottleneck, in_channels, 3, padding=1), "he")

    @property
    def receptive_field(self):
        """Side of the LR window that one output pixel depends on (exact, the widest over output pixels).

        Walk back from one HR pixel: the reconstruction reads a ``k``-pixel window; a transposed
        convolution (kernel ``k``, stride ``s``, padding ``p``) fills output ``o`` from the inputs ``i``
        with ``o = s*i - p + t``, ``0 <= t < k``, so an output window ``[a, b]`` reads the inputs
        ``[ceil((a + p - k + 1) / s), floor((b + p) / s)]``; which LR pixels that reaches depends on
        where the HR pixel sits among the ``scale`` it shares an LR pixel with, and the widest case
        counts.  Then every 3x3 convolution on the longest LR path (the low-level conv and all
        ``blocks * layers`` dense layers: the dense connections add shorter paths, never longer ones)
        widens the window by 2.  The 1x1 bottleneck adds nothing.
        """
        k_rec = self.reconstruction.kernel_size[0]
        step = 2 ** len(self.deconvolution)
        widest = 0
        for o in range(step):                       # each HR position inside one LR pixel's block
            a, b = o - k_rec // 2, o + k_rec // 2
            for layer in reversed(list(self.deconvolution)):
                (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
                a, b = -(-(a + p - k + 1) // s), (b + p) // s     # ceil, floor
            widest = max(widest, b - a + 1)
        return widest + 2 * (1 + self.n_blocks * self.n_layers)

    def forward(self, x):
        """``x``: LR Y ``(N, 1, h, w)`` -> SR Y ``(N, 1, scale*h, scale*w)``."""
        h = F.relu(self.low_level(x))
        skips = [h]
        for block in self.dense_blocks:
            h = block(h)
            skips.append(h)
        h = F.relu(self.bottleneck(F.concat(skips, axis=1)))
        for deconv in self.deconvolution:
            h = F.relu(deconv(h))
        return self.reconstruction(h)
