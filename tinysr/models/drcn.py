"""DRCN -- Kim, Lee, Lee. "Deeply-Recursive Convolutional Network for Image Super-Resolution",
CVPR 2016.

Depth without extra parameters: one 3x3 convolution is applied ``D = 16`` times with the *same*
weights. Three sub-networks, named as in the paper:

1. **embedding net** ``f1`` -- two 3x3 convs (``1 -> F -> F``, F = 256), ReLU: ``H_0``;
2. **inference net** ``f2`` -- ``H_d = ReLU(W * H_{d-1} + b)`` for d = 1..D, one shared (W, b);
3. **reconstruction net** ``f3`` -- two 3x3 convs (``F -> F``, ReLU, ``F -> 1``), applied to
   *every* ``H_d``; with the **skip connection** each gives a prediction ``y_d = f3(H_d) + x``.

The output is a learned weighted average (**ensemble**) ``y = sum_d w_d y_d``. Training uses
**recursive supervision** (:func:`drcn_loss`): every ``y_d`` is also compared with the target, which
keeps the gradients of a 16-fold recursion alive.

Input convention ``"bicubic-y"``; receptive field 41 x 41 (2 + D + 2 = 20 layers of 3x3).
Parameters: 1,774,080 convolution weights (the paper's "1,774K"), plus 1,025 biases and 16
ensemble weights. Initialisation (paper): the recursive weights are zero except the
self-connections (an identity map at the start), biases zero; the other layers He.

Variants (constructor options, so that public DRCN-like weights load into this class; e.g. jiny2001's
TensorFlow DRCN, :func:`tinysr.models.load_official`):

* ``skip=False`` -- no skip connection: ``y_d = f3(H_d)`` predicts the image itself;
* ``concat_input=True`` -- the input ``x`` is concatenated (as one more channel, after the features)
  to the input of the reconstruction net's last conv, so that conv sees ``F + 1`` channels;
* ``output_relu=True`` -- a ReLU after the reconstruction net's last conv;
* ``normalise_ensemble=True`` -- the ensemble is ``sum_d w_d y_d / sum_d w_d``;
* ``value_range`` -- the network works on ``value_range * x`` (255: pixels in 0..255) and its output is
  divided by it.
"""
import numpy as np

from .. import functional as F
from .. import nn
from .common import SRModel, chain_receptive_field, init_conv_
from .registry import TrainingRecipe, register


@register(
    "drcn", (2, 3, 4), "bicubic-y",
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
    paper_params="1,774K weights")
class DRCN(SRModel):
    """DRCN with ``recursions`` (D) applications of one shared conv, ``channels`` (F) wide.

    ``self.inference`` is ONE Conv2d used D times, so its gradient is the sum over uses.
    :meth:`forward` returns the ensemble output; :meth:`forward_all` returns
    ``(predictions [y_1..y_D], y)`` for the loss with recursive supervision.
    Shapes: ``(N, 1, H, W) -> (N, 1, H, W)``.
    """

    input_convention = "bicubic-y"

    def __init__(self, scale=3, recursions=16, channels=256, in_channels=1, skip=True, concat_input=False,
                 output_relu=False, normalise_ensemble=False, value_range=1.0):
        super().__init__()
        self.scale, self.recursions, self.in_channels = scale, recursions, in_channels
        self.skip, self.concat_input, self.output_relu = bool(skip), bool(concat_input), bool(output_relu)
        self.normalise_ensemble, self.value_range = bool(normalise_ensemble), float(value_range)
        c = channels
        self.embedding = nn.Sequential(init_conv_(nn.Conv2d(in_channels, c, 3, padding=1), "he"), nn.ReLU(),
                                       init_conv_(nn.Conv2d(c, c, 3, padding=1), "he"), nn.ReLU())
        self.inference = nn.Conv2d(c, c, 3, padding=1)
        eye = np.zeros((c, c, 3, 3))
        eye[np.arange(c), np.arange(c), 1, 1] = 1.0   # identity "self-connections" (paper, sec. 3.3)
        nn.init.constant_(self.inference.weight, 0.0)
        self.inference.weight.data = eye.astype(self.inference.weight.dtype)
        nn.init.zeros_(self.inference.bias)
        last_in = c + in_channels if self.concat_input else c
        self.reconstruction = nn.Sequential(init_conv_(nn.Conv2d(c, c, 3, padding=1), "he"), nn.ReLU(),
                                            init_conv_(nn.Conv2d(last_in, in_channels, 3, padding=1), "he"))
        self.ensemble_weights = nn.Parameter(np.full((recursions,), 1.0 / recursions, dtype=np.float32))

    @property
    def receptive_field(self):
        return chain_receptive_field([3] * (2 + self.recursions + 2))

    def reconstruct(self, h, x):
        """The reconstruction net ``f3`` on one ``H_d`` (plus the skip / input concatenation options)."""
        if self.concat_input:
            r = F.relu(self.reconstruction[0](h))
            r = self.reconstruction[2](F.concat([r, x], axis=1))
        else:
            r = self.reconstruction(h)
        if self.output_relu:
            r = F.relu(r)
        return r + x if self.skip else r

    def forward_all(self, x):
        """All intermediate predictions and the ensemble: ``([y_1, ..., y_D], y)``."""
        if self.value_range != 1.0:
            x = x * self.value_range
        h = self.embedding(x)
        preds = []
        out = None
        w = self.ensemble_weights
        if self.normalise_ensemble:
            w = w / w.sum()
        for d in range(self.recursions):
            h = self.inference(h, activation="relu")
            y_d = self.reconstruct(h, x)
            if self.value_range != 1.0:
                y_d = y_d * (1.0 / self.value_range)
            preds.append(y_d)
            term = y_d * w[d]
            out = term if out is None else out + term
        return preds, out

    def forward(self, x):
        """``x``: bicubic-upsampled Y ``(N, 1, H, W)`` -> ensemble prediction, same shape."""
        return self.forward_all(x)[1]


def drcn_loss(model, x, target, alpha, beta=1e-4):
    """DRCN's training objective with recursive supervision (Kim et al., CVPR 2016, eq. 10-12).

    ``L = alpha * l1 + (1 - alpha) * l2 + beta * ||theta||^2`` where
    ``l1 = 1/(2DN) sum_d sum_i ||y^(i) - y_d^(i)||^2`` (every intermediate prediction),
    ``l2 = 1/(2N) sum_i ||y^(i) - y^(i)_ensemble||^2`` and the last term is weight decay on the
    convolution weights. The paper starts with ``alpha = 1`` (only the intermediate predictions
    matter, which trains the shared weights early) and decays it towards 0; ``beta = 1e-4``.
    ``N`` is the number of training images in the batch; ``||.||^2`` sums over pixels.

    Returns the loss as a scalar Tensor; ``x`` and ``target`` are ``(N, 1, H, W)``.
    """
    preds, out = model.forward_all(x)
    n = x.shape[0]
    d = len(preds)
    l1 = None
    for p in preds:
        t = F.mse_loss(p, target, reduction="sum")
        l1 = t if l1 is None else l1 + t
    l1 = l1 * (1.0 / (2 * d * n))
    l2 = F.mse_loss(out, target, reduction="sum") * (1.0 / (2 * n))
    loss = l1 * float(alpha) + l2 * (1.0 - float(alpha))
    if beta:
        decay = None
        for p in model.parameters():
            if p.ndim >= 2:
                t = (p * p).sum()
                decay = t if decay is None else decay + t
        loss = loss + decay * float(beta)
    return loss
