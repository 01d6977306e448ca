"""SRCNN -- Dong, Loy, He, Tang. "Learning a Deep Convolutional Network for Image Super-Resolution",
ECCV 2014; "Image Super-Resolution Using Deep Convolutional Networks", IEEE TPAMI 38(2), 2016.

The first CNN for SR, read as a sparse-coding pipeline:

1. **patch extraction and representation** -- ``f1 x f1`` conv, ``1 -> n1`` filters, ReLU;
2. **non-linear mapping** -- ``f2 x f2`` conv, ``n1 -> n2``, ReLU;
3. **reconstruction** -- ``f3 x f3`` conv, ``n2 -> 1``, linear.

Settings ``f1-f2-f3`` = 9-1-5 (ECCV'14, n1=64, n2=32: 8,129 parameters with biases), 9-3-5 and
9-5-5 (TPAMI'16, 57,281 parameters). Input convention ``"bicubic-y"``: the LR Y channel upsampled
to the HR size with bicubic interpolation, in ``[0, 1]``; the output is the HR Y itself (no
residual). Upsampling: outside the network (bicubic, before it).

Borders: the paper trains with *valid* convolutions, so the output is ``f1 + f2 + f3 - 3`` pixels
(12 for 9-1-5) smaller than the input and the loss compares it with the centre of the label.  The
authors' test code instead keeps the size by padding every layer with **replicate** borders; use
``padding="same", padding_mode="replicate"`` for their released weights.

Receptive field: ``f1 + f2 + f3 - 2`` = 13 (9-1-5), 15 (9-3-5), 17 (9-5-5) HR pixels.
Initialisation (paper): weights Gaussian N(0, 0.001^2), biases 0.

``offset`` (tinysr's fast recipe, not the paper): the network computes ``f(x - c) + c`` with
``c = 0.5``, i.e. it sees and predicts *centred* intensities.  With inputs that are all positive, the
first layer's gradient has the same sign at every tap of a filter, so Adam's first, sign-like steps
shift whole 9x9 filters at once; those pushed negative never fire again (measured: 39 of 64 filters
dead after 1,500 steps, 29.2 dB on Set5; centred: none dead, 31.5 dB).  The constant costs nothing:
:meth:`SRCNN.fold_offset_` moves it into the first and last biases exactly, giving the paper's network.
"""
from .. import functional as F
from .. import nn
from .common import SRModel, chain_receptive_field, init_conv_
from .registry import TrainingRecipe, register

VARIANTS = {"9-1-5": (9, 1, 5), "9-3-5": (9, 3, 5), "9-5-5": (9, 5, 5)}


@register(
    "srcnn", (2, 3, 4), "bicubic-y",
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
    defaults={"variant": "9-1-5"}, paper_params="8,129 (9-1-5) / 57,281 (9-5-5) incl. biases")
class SRCNN(SRModel):
    """SRCNN: patch extraction -> non-linear mapping -> reconstruction (three convolutions).

    Parameters
    ----------
    scale : int
        Recorded only: one network is trained per scale, but the architecture does not change.
    variant : ``"9-1-5"`` (default), ``"9-3-5"`` or ``"9-5-5"`` -- the filter sizes f1-f2-f3.
    n1, n2 : feature maps of the first two layers (64, 32 in the papers).
    padding : ``"valid"`` (the paper's training: output ``f1+f2+f3-3`` px smaller per side pair)
        or ``"same"`` (output as large as the input).
    padding_mode : ``"zeros"`` or ``"replicate"`` (authors' test code) for ``padding="same"``.
    channels : 1 (Y, the paper's main setting) or 3 (the TPAMI colour experiments).

    Shapes: ``(N, C, H, W) -> (N, C, H - 12, W - 12)`` (9-1-5, valid) or ``(N, C, H, W)`` (same).
    """

    input_convention = "bicubic-y"
    registry_name = "srcnn"
    paper_grid_stride = 14

    def __init__(self, scale=3, variant="9-1-5", n1=64, n2=32, padding="valid", padding_mode="zeros",
                 channels=1, offset=0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"SRCNN variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.scale, self.variant, self.padding = scale, variant, padding
        self.offset = float(offset)
        self.in_channels = channels
        f1, f2, f3 = self.kernel_sizes = VARIANTS[variant]

        def conv(cin, cout, k):
            pad = k // 2 if padding == "same" else 0
            return init_conv_(nn.Conv2d(cin, cout, k, padding=pad, padding_mode=padding_mode), "gaussian",
                              std=1e-3)

        self.patch_extraction = conv(channels, n1, f1)
        self.non_linear_mapping = conv(n1, n2, f2)
        self.reconstruction = conv(n2, channels, f3)

    @property
    def receptive_field(self):
        return chain_receptive_field(self.kernel_sizes)

    @property
    def border(self):
        """Pixels lost on each side with valid convolutions (6 for 9-1-5), 0 with ``padding="same"``."""
        return 0 if self.padding == "same" else (self.receptive_field - 1) // 2

    def build_arguments(self):
        """The keyword arguments that rebuild this network, read off its layers."""
        return {"variant": self.variant, "n1": int(self.patch_extraction.weight.shape[0]),
                "n2": int(self.non_linear_mapping.weight.shape[0]), "padding": self.padding,
                "padding_mode": self.patch_extraction.padding_mode,
                "channels": int(self.in_channels), "offset": float(getattr(self, "offset", 0.0))}

    def inference_model(self):
        """The network to run on whole images: a valid-convolution SRCNN's 'same'/replicate twin.

        SRCNN is trained with *valid* convolutions (its output is 12 px smaller than its input for
        9-1-5); to super-resolve a whole image the authors' test code pads every layer with
        **replicate** borders so that the output has the input's size.  This returns such a copy (weights
        copied, no arrays shared), in eval mode, on the same device; a 'same' SRCNN is returned as it is.
        """
        if self.padding != "valid":
            return self
        kw = self.build_arguments()
        kw.update(padding="same", padding_mode="replicate")
        twin = SRCNN(scale=self.scale, **kw)
        twin.load_state_dict(self.state_dict())
        if self.device != "cpu":
            twin.to(self.device)
        return twin.eval()

    def forward(self, x):
        """``x``: bicubic-upsampled Y ``(N, 1, H, W)`` in [0, 1] -> HR estimate (see the class doc for size)."""
        if self.offset:
            x = x - self.offset
        h = F.relu(self.patch_extraction(x))
        h = F.relu(self.non_linear_mapping(h))
        y = self.reconstruction(h)
        return y + self.offset if self.offset else y

    def fold_offset_(self):
        """Move ``offset`` into the biases, in place, leaving an ordinary SRCNN that computes the same.

        ``W * (x - c) + b = W * x + (b - c * sum(W))`` for every output pixel whose window holds no
        zero padding -- all of them with valid convolutions or replicate borders (replicating ``x - c``
        is replicating ``x``, minus ``c``); the ``+ c`` at the output joins the last bias.  Returns self.
        """
        if not self.offset:
            return self
        if self.padding == "same" and self.patch_extraction.padding_mode == "zeros":
            raise ValueError("the offset folds exactly only with valid convolutions or replicate padding; zero "
                             "padding would change the border pixels")
        w1, b1 = self.patch_extraction.weight, self.patch_extraction.bias
        b1.data = (b1.data - self.offset * w1.data.sum(axis=(1, 2, 3))).astype(b1.data.dtype)
        b3 = self.reconstruction.bias
        b3.data = (b3.data + self.offset).astype(b3.data.dtype)
        self.offset = 0.0
        return self
