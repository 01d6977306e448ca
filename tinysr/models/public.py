"""The public trained networks that tinysr can import, by name: where each file lies, what it is, who made it.

The files are not part of tinysr (third-party weights, several MB each). In this workplace they are in
``../shared/reference-weights`` beside the checkout (see its README for each file's provenance, layout and
checksums); elsewhere pass ``shared=`` or the file itself to :func:`tinysr.models.load_official`::

    from tinysr.models import public
    edsr = public.load("edsr-8-x2")                      # None when the file is not here
    print(public.PUBLIC["edsr-8-x2"].describe())

Each entry records the figure an *independent* script measured for it on Set5 (the reference-weights
README); ``tests/test_official_deep.py`` checks that tinysr's import reproduces it.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["PublicWeights", "PUBLIC", "shared_root", "path", "load"]


@dataclass(frozen=True)
class PublicWeights:
    """One public weights file: the importer, the file (relative to ``reference-weights``), the scale it was
    trained for (None: a feature extractor), what the network is, its size, source and licence, and the
    Set5 PSNR an independent script measured (None: none)."""

    importer: str
    file: str
    scale: Optional[int]
    label: str
    network: str
    size: str
    source: str
    licence: str
    measured_set5: Optional[float] = None

    def describe(self):
        """One line for a lesson or a table: network, source, size, licence."""
        return f"{self.network}; {self.source}; {self.size}; licence: {self.licence}"


_ZOO = "WolframRhodium/Super-Resolution-Zoo @ 041842f"

PUBLIC = {
    "edsr-8-x2": PublicWeights(
        "edsr", "edsr/krasserm_edsr-8-x2/EDSR-8-x2-0000.params", 2, "EDSR-8 x2 (public, krasserm)",
        "EDSR, 8 residual blocks of 64, no BN, x2 (0.78M parameters)", "3.1 MB",
        f"krasserm/wdsr (Keras, trained on DIV2K), MXNet conversion in {_ZOO}",
        "Apache-2.0 (krasserm); the zoo has no licence file", 37.82),
    "srresnet-8-x4": PublicWeights(
        "srresnet", "srresnet/pytorch-demo_srresnet-8-x4/SRResNet_4x-0000.params", 4,
        "SRResNet-8 x4 (public, PyTorch demo)",
        "SRResNet, 8 residual blocks of 64 with BN and PReLU, x4 (0.96M parameters)", "3.8 MB",
        f"PyTorch's demo srresnet-e10b2039.pth, MXNet conversion in {_ZOO}", "BSD (PyTorch demo)", 31.89),
    "srgan-5-x4": PublicWeights(
        "srgan", "srgan/leftthomas_srgan-5/netG_epoch_4_100.pth", 4, "SRGAN-5 generator x4 (public, leftthomas)",
        "SRGAN generator, 5 residual blocks of 64, x4, trained with MSE + adversarial + VGG-16 loss on VOC2012 "
        "(0.73M parameters)", "3.0 MB", "leftthomas/SRGAN @ b0323c6 (PyTorch)", "MIT", 30.66),
    "drcn-f96-d9-x2": PublicWeights(
        "drcn", "drcn/jiny2001_F96_D9_x2/drcn_F96_D9_x2.npz", 2, "DRCN-like F96/D9 x2 (public, jiny2001)",
        "DRCN variant: 96 filters, 9 recursions, the input concatenated into the reconstruction, x2 "
        "(0.25M parameters)", "3.0 MB (checkpoint), 1.0 MB (.npz)",
        "jiny2001/deeply-recursive-cnn-tf @ 1dff9ed (TensorFlow 1)", "Apache-2.0", 37.38),
    "vdsr-authors": PublicWeights(
        "vdsr", "vdsr/official_matconvnet/VDSR_Official.mat", None, "VDSR (authors' weights)",
        "VDSR, 20 layers of 64, one network for x2/x3/x4", "2.5 MB",
        "Kim et al.'s release via huangzehao/caffe-vdsr @ 5a83923 (MatConvNet)", "as released by the authors"),
    "drrn-b1u25": PublicWeights(
        "drrn", "drrn/jt827859032_pytorch_via_mxnet_zoo/DRRN-B1U25-0000.params", None, "DRRN B1U25 (public, jt827859032)",
        "DRRN B1U25, 128 filters, one network for x2/x3/x4 (0.30M parameters)", "1.2 MB",
        f"jt827859032/DRRN-pytorch, MXNet conversion in {_ZOO}", "not stated in the reference-weights README"),
    "vgg19-normalised": PublicWeights(
        "vgg19_normalised", "vgg19/gatys-normalised_conv3_1/vgg_normalised_conv3_1.pth", None,
        "VGG-19 conv1_1 .. conv3_1, Gatys-normalised",
        "VGG-19 up to conv3_1 with each filter rescaled to mean activation 1 (relu2_2 = a channel-reweighted VGG22)",
        "2.2 MB", "jkbehne/GOTStyleTranfer @ 9268fb8 (PyTorch legacy pickle)", "no licence file"),
}


def shared_root(shared=None):
    """The ``shared`` folder: the argument, else the parent of ``$TINYSR_DATA``, else ``../shared`` beside the
    current directory or its parent (a checkout, or its ``lessons/``); None when none holds reference weights."""
    if shared is not None:
        return Path(shared)
    candidates = [Path(os.environ["TINYSR_DATA"]).resolve().parent] if "TINYSR_DATA" in os.environ else []
    candidates += [Path.cwd().parent / "shared", Path.cwd().parent.parent / "shared"]
    return next((p for p in candidates if (p / "reference-weights").is_dir()), None)


def path(key, shared=None):
    """The file of entry ``key`` (a :class:`pathlib.Path`), or None when it is not here."""
    if key not in PUBLIC:
        raise ValueError(f"unknown public weights {key!r}; choose one of: {', '.join(PUBLIC)}")
    root = shared_root(shared)
    p = None if root is None else root / "reference-weights" / PUBLIC[key].file
    return p if p is not None and p.is_file() else None


def load(key, scale=None, shared=None, **kwargs):
    """The network of entry ``key`` built by :func:`tinysr.models.load_official` (eval mode), or None when
    its file is not here. ``scale`` defaults to the entry's own (VDSR's authors' network serves 2, 3, 4)."""
    from .official import load_official
    p = path(key, shared)
    if p is None:
        return None
    e = PUBLIC[key]
    return load_official(e.importer, p, scale=scale if scale is not None else e.scale, **kwargs)
