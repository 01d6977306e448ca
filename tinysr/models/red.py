"""RED30 -- Mao, Shen, Yang. "Image Restoration Using Very Deep Convolutional Encoder-Decoder Networks
with Symmetric Skip Connections", NIPS 2016 (RED-Net).

A residual encoder-decoder of 3x3 layers at full resolution (no pooling, stride 1):

* **encoder** -- 15 convolutions (``1 -> C``, then ``C -> C``), each with ReLU: they extract
  features and suppress corruption;
* **decoder** -- 15 transposed convolutions (``C -> C``, last ``C -> 1``): they recover details;
* **symmetric skip connections** every two layers: the output of encoder layer ``15 - k`` is added
  to the output of decoder layer ``k`` (k = 2, 4, ..., 14) before its ReLU, so that gradients reach
  the bottom directly and image details lost by the encoder are passed forward;
* the **input** itself is added to the last decoder output (the network learns the residual).

Input convention ``"bicubic-y"``; receptive field 61 x 61 (30 layers of 3x3). With ``C = 128``
the weights total 4,131,072 -- the "4,131K" that later papers (e.g. DRRN, CVPR 2017) list for
RED30; ``channels=64`` gives the narrower 1.03M variant. A stride-1 transposed 3x3 convolution
with padding 1 is a convolution with the flipped kernel, so size is kept everywhere.
Initialisation: He et al. 2015 (ReLU).
"""
from .. import functional as F
from .. import nn
from .common import SRModel, chain_receptive_field, init_conv_
from .registry import TrainingRecipe, register


@register(
    "red30", (2, 3, 4), "bicubic-y",
    "Mao, Shen, Yang. Image Restoration Using Very Deep Convolutional Encoder-Decoder Networks with "
    "Symmetric Skip Connections, NIPS 2016",
    "15 convs + 15 transposed convs, symmetric skips every 2 layers, input residual",
    TrainingRecipe(data="BSD (300 images, grayscale)", patch_size=50, batch_size=64, optimizer="adam",
                   lr=1e-4, betas=(0.9, 0.999), loss="mse",
                   notes="one model for several scales; batch size and iteration count are not stated in the "
                         "paper (64 is tinysr's choice)"),
    paper_params="4,131K weights (128 filters, as listed by DRRN)")
class RED30(SRModel):
    """RED-Net with ``depth`` conv + ``depth`` deconv layers (15 + 15 = RED30), skips every ``skip_every``.

    Shapes: ``(N, 1, H, W) -> (N, 1, H, W)``.
    """

    input_convention = "bicubic-y"

    def __init__(self, scale=3, depth=15, channels=128, skip_every=2, in_channels=1):
        super().__init__()
        self.scale, self.depth, self.skip_every, self.in_channels = scale, depth, skip_every, in_channels
        c = channels
        self.encoder = nn.ModuleList([init_conv_(nn.Conv2d(in_channels if i == 0 else c, c, 3, padding=1), "he")
                                      for i in range(depth)])
        decoder = []
        for i in range(depth):
            layer = nn.ConvTranspose2d(c, in_channels if i == depth - 1 else c, 3, padding=1)
            # fan-in of a transposed conv is over its input channels: dim 0 of this layout.
            nn.init.normal_(layer.weight, std=(2.0 / (c * 9)) ** 0.5)
            nn.init.zeros_(layer.bias)
            decoder.append(layer)
        self.decoder = nn.ModuleList(decoder)

    @property
    def receptive_field(self):
        return chain_receptive_field([3] * (2 * self.depth))

    def forward(self, x):
        """``x``: bicubic-upsampled Y ``(N, 1, H, W)`` -> restored image, same shape."""
        features = []
        h = x
        for conv in self.encoder:
            h = conv(h, activation="relu")
            features.append(h)
        for k, deconv in enumerate(self.decoder[:-1], start=1):
            h = deconv(h)
            mirror = self.depth - k  # encoder layer (1-based) at the same depth
            if k % self.skip_every == 0 and mirror >= 1:
                h = h + features[mirror - 1]
            h = F.relu(h)
        return self.decoder[-1](h) + x
