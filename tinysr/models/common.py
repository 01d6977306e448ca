"""Pieces that several SR papers share, and the bookkeeping every model file uses.

* :class:`SRModel` -- the base class of every network in :mod:`tinysr.models`: it records the
  ``scale``, the ``input_convention`` (what the caller must feed) and the ``receptive_field``.
* :func:`count_weights` -- the number that the papers print as "parameters": most count only the
  convolution/linear *weights* (VDSR's 665K, DRRN's 297K, FSRCNN's 12,464), some add the biases
  (SRCNN's 8,129); :meth:`tinysr.nn.Module.num_parameters` counts everything.
* :class:`MeanShift`, :class:`ResBlock`, :func:`upsampler` -- EDSR/MDSR/SRResNet building blocks.
* :func:`chain_receptive_field` -- the receptive field of a stack of stride-1 convolutions.

Input conventions
-----------------
``"bicubic-y"``
    The network sees the LR image already upsampled to the HR size with MATLAB bicubic, Y channel
    in ``[0, 1]`` (SRCNN, VDSR, DRCN, RED30, DRRN): "pre-upsampling" networks.
``"lr-y"``
    The LR Y channel itself in ``[0, 1]``; the network upsamples (FSRCNN, SRDenseNet).
``"lr-rgb"``
    The LR RGB image in ``[0, 1]``; the network upsamples (SRResNet, EDSR, MDSR).
"""
import numpy as np

from .. import nn

INPUT_CONVENTIONS = ("bicubic-y", "lr-y", "lr-rgb")


class SRModel(nn.Module):
    """Base class of the model zoo: a Module that knows its scale and what input it expects.

    Subclasses set ``scale``, ``input_convention`` (one of :data:`INPUT_CONVENTIONS`) and define
    ``receptive_field`` (in input pixels, one side of the square).  ``in_channels`` is 1 for Y
    networks and 3 for RGB ones.
    """

    scale = None
    input_convention = None
    in_channels = 1

    @property
    def receptive_field(self):
        raise NotImplementedError

    #: stride of the paper's fixed grid of training sub-images, for a network whose paper recipe
    #: samples one (SRCNN's generate_train.m: 14); None samples random crops.
    paper_grid_stride = None

    @property
    def registry_name(self):
        """The registry name that rebuilds this network (set by :func:`tinysr.models.build`), else None."""
        return getattr(self, "build_name", None)

    def build_arguments(self):
        """Keyword arguments that rebuild this network with :func:`tinysr.models.build`, else None.

        A network made by :func:`~tinysr.models.build` remembers them; one that can read them off its own
        layers (SRCNN, FSRCNN) answers for itself however it was made.
        """
        kw = getattr(self, "build_kwargs", None)
        return dict(kw) if kw is not None else None

    def inference_model(self):
        """The network to run on whole images: this one (see SRCNN for the one that differs)."""
        return self


def count_weights(model):
    """Scalar count of the *weights* of conv/linear layers (arrays with >= 2 dims), shared ones once.

    This is what most SR papers report as "parameters": biases, PReLU slopes, BatchNorm scales and
    DRCN's 16 ensemble weights are left out.
    """
    return sum(p.size for p in model.parameters() if p.ndim >= 2)


def count_biases(model):
    """Scalar count of the 1-D parameters (biases, PReLU slopes, BN affine terms, ensemble weights)."""
    return sum(p.size for p in model.parameters() if p.ndim < 2)


def chain_receptive_field(kernel_sizes):
    """Receptive field (pixels) of stride-1 convolutions applied one after another: ``1 + sum(k - 1)``."""
    return 1 + sum(int(k) - 1 for k in kernel_sizes)


def to_float64(model):
    """Cast every parameter and buffer of ``model`` to float64 in place (for gradient checks); returns it."""
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    for m in model.modules():
        for name, b in list(m._buffers.items()):
            m.register_buffer(name, b.astype(np.float64))
    return model


def init_conv_(conv, method, std=None):
    """Initialise one conv/linear layer as a paper says and zero its bias.

    ``method`` is ``"gaussian"`` (fixed ``std``; SRCNN 0.001), ``"he"`` (He et al. 2015, ReLU gain,
    fan-in; VDSR, DRRN, DRCN), ``"he-prelu"`` (gain for PReLU with slope 0.25; FSRCNN) or
    ``"default"`` (leave PyTorch's uniform init).
    """
    if method == "gaussian":
        nn.init.normal_(conv.weight, std=std)
    elif method == "he":
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    elif method == "he-prelu":
        nn.init.kaiming_normal_(conv.weight, a=0.25, nonlinearity="prelu")
    elif method != "default":
        raise ValueError(f"unknown init method {method!r}")
    if conv.bias is not None and method != "default":
        nn.init.zeros_(conv.bias)
    return conv


class MeanShift(nn.Module):
    """Add (``sign=+1``) or subtract (``sign=-1``) a fixed per-channel RGB mean; no parameters.

    EDSR/MDSR subtract the DIV2K mean colour before the network and add it back after (Lim et al.,
    2017), so that the body works on zero-centred data.  Values are in ``[0, 1]`` units here (the
    official code uses ``0..255``); the mean is a buffer, not learned.
    """

    def __init__(self, mean=(0.4488, 0.4371, 0.4040), sign=-1):
        super().__init__()
        self.sign = sign
        self.register_buffer("mean", np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1))

    def forward(self, x):
        m = self.mean.astype(x.dtype)
        return x + m if self.sign > 0 else x - m

    def extra_repr(self):
        return f"sign={self.sign:+d}"


class ResBlock(nn.Module):
    """EDSR's residual block ``x + res_scale * conv(relu(conv(x)))`` (no BatchNorm).

    Lim et al. (2017) removed SRResNet's BN layers (they normalise away the range flexibility of
    the features) and scale the residual by 0.1 in the wide model to keep training stable.
    ``kernel_size`` is 3, or 5 for MDSR's scale-specific pre-processing blocks.
    """

    def __init__(self, channels, kernel_size=3, res_scale=1.0):
        super().__init__()
        self.res_scale = float(res_scale)
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)

    def forward(self, x):
        r = self.conv2(self.conv1(x, activation="relu"))   # conv and ReLU as one op
        if self.res_scale != 1.0:
            r = r * self.res_scale
        return x + r


def upsampler(scale, channels, activation=None):
    """Sub-pixel upsampling (Shi et al., ESPCN 2016) as EDSR/SRResNet use it, a Sequential.

    x2, x4, x8: log2(scale) stages of ``conv3x3(C -> 4C) -> PixelShuffle(2)``; x3: one stage of
    ``conv3x3(C -> 9C) -> PixelShuffle(3)``.  ``activation`` (a Module factory, e.g. a PReLU for
    SRResNet) is appended after each shuffle.
    """
    layers = []
    if scale in (2, 4, 8):
        for _ in range(int(round(np.log2(scale)))):
            layers += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
            if activation is not None:
                layers.append(activation())
    elif scale == 3:
        layers += [nn.Conv2d(channels, 9 * channels, 3, padding=1), nn.PixelShuffle(3)]
        if activation is not None:
            layers.append(activation())
    else:
        raise ValueError(f"pixel-shuffle upsampler supports scales 2, 3, 4, 8; got {scale}")
    return nn.Sequential(*layers)


def count_flops(model, hr_size=48):
    """Multiply-accumulates and FLOPs per *output* (HR) pixel of one forward pass of ``model``.

    Runs ``model`` once, without gradients, on a random input whose output is about ``hr_size``
    pixels square (the HR size itself for ``"bicubic-y"`` networks, ``hr_size // scale`` for the
    networks that upsample), counting in every convolution, transposed convolution and linear layer:

    * ``Conv2d``: ``out.size * in_channels * kh * kw`` multiply-accumulates (each output value is one
      dot product over its window);
    * ``ConvTranspose2d``: ``in.size * out_channels * kh * kw`` (each *input* value is spread over a
      window -- the same count as the convolution it is the backward of);
    * ``Linear``: ``out.size * in_features``.

    A weight used several times (DRCN's 16 recursions, DRRN's 25 units) is counted at every use: this is
    the work, not the parameter count.  Element-wise ops, biases and activations are left out, as the
    papers do (FSRCNN's complexity formula counts only the convolutions).  Returns
    ``{"macs": per pixel, "flops": 2 * macs, "output": (H, W)}``.

    For FSRCNN x3 the convolution MACs per LR pixel equal its 12,464 weights, so per HR pixel they are
    12,464 / 9 ~ 1,385 -- against SRCNN 9-1-5's 8,032 (built with ``padding="same"``; the default *valid*
    SRCNN computes a border it then drops, 9,728 per kept pixel of a 48x48 probe): why FSRCNN is "fast".
    """
    from ..autograd import Tensor, no_grad
    scale = int(getattr(model, "scale", 1) or 1)
    size = hr_size if getattr(model, "input_convention", "bicubic-y") == "bicubic-y" else max(hr_size // scale, 1)
    channels = int(getattr(model, "in_channels", 1) or 1)
    total = [0]
    patched = []

    def wrap(m, count):
        original = m.forward

        def counted(x, *a, **k):
            y = original(x, *a, **k)
            total[0] += count(m, x, y)
            return y
        m.forward = counted            # an instance attribute shadows the class's forward ...
        patched.append(m)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            wrap(m, lambda m, x, y: y.data.size * m.in_channels * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.ConvTranspose2d):
            wrap(m, lambda m, x, y: x.data.size * m.out_channels * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            wrap(m, lambda m, x, y: y.data.size * m.in_features)
    was_training = model.training
    model.eval()
    try:
        x = np.random.default_rng(0).random((1, channels, size, size)).astype(np.float32)
        with no_grad():
            out = model(Tensor(x))
    finally:
        for m in patched:
            del m.forward              # ... and deleting it brings the class's back
        model.train(was_training)
    out = out[0] if isinstance(out, (tuple, list)) else out
    h, w = out.shape[-2:]
    macs = total[0] / (h * w)
    return {"macs": macs, "flops": 2 * macs, "output": (h, w)}
