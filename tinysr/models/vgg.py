"""VGG-19 features for SRGAN's perceptual ("VGG") loss -- Simonyan & Zisserman, ICLR 2015; used as a
loss by Johnson et al. (ECCV 2016) and Ledig et al. (SRGAN, CVPR 2017).

SRGAN compares a super-resolved image with the HR image not pixel by pixel but in the feature space of
an ImageNet-trained VGG-19: ``l_VGG/i.j = mean((phi_ij(HR) - phi_ij(SR))^2)``, where ``phi_ij`` is "the
feature map obtained by the j-th convolution (after activation) before the i-th max-pooling layer".
So **VGG22** is ``relu2_2`` (low-level features: edges) and **VGG54** is ``relu5_4`` (high-level
features: the paper's best-looking results). The paper also rescales the feature maps by 1/12.75, so
that the VGG loss is of a size comparable with the pixel MSE (:class:`PerceptualLoss`).

:class:`VGG19Features` is torchvision's ``vgg19().features`` rebuilt from tinysr layers, with the same
child indices, so a torchvision state dict loads by name::

    index  0  2 | 4  |  5  7 | 9  | 10 12 14 16 | 18 | 19 21 23 25 | 27 | 28 30 32 34 | 36
    layer  conv1_x | pool | conv2_x | pool | conv3_x  | pool | conv4_x     | pool | conv5_x     | pool

(each conv at index ``i`` is followed by its ReLU at ``i + 1``). The network is cut right after the
layer the loss needs (``relu5_4`` = index 35: 16 convolutions, 4 pools), and its input is an RGB image
in [0, 1], normalised with ImageNet's mean and std inside ``forward`` -- the normalisation torchvision's
weights were trained with.

The weights cannot be downloaded here: :func:`load_vgg19` reads a user-supplied copy of torchvision's
``vgg19-dcbb9e9d.pth`` (a ``torch.save``'d state dict, keys ``features.N.weight/bias``; the
``classifier.*`` keys are ignored) **without importing torch**, through the restricted unpickler of
:mod:`tinysr.models.official`. The parameters are frozen (``requires_grad=False``): the loss trains
the generator through VGG, never VGG itself.
"""
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..autograd import Tensor, no_grad

__all__ = ["VGG19Features", "PerceptualLoss", "load_vgg19", "load_vgg19_normalised", "vgg19_layer_index", "VGG19_CONV_INDICES",
           "VGG19_POOL_INDICES", "IMAGENET_MEAN", "IMAGENET_STD", "VGG19_URL", "VGG19_FILE"]

#: torchvision's VGG-19 (configuration "E"): output channels of each conv, "M" for a 2x2 max-pool.
_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
VGG19_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG19_POOL_INDICES = (4, 9, 18, 27, 36)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
#: the paper's rescaling of the VGG feature maps (Ledig et al., Sec. 2.2.1)
SRGAN_FEATURE_SCALE = 1 / 12.75

_ALIASES = {"vgg22": "relu2_2", "vgg54": "relu5_4"}


def _layout():
    """``[(index, kind, name)]`` of torchvision's ``vgg19().features``: kind is conv/relu/pool."""
    out, i, block, j = [], 0, 1, 1
    for v in _CFG:
        if v == "M":
            out.append((i, "pool", f"pool{block}"))
            i, block, j = i + 1, block + 1, 1
        else:
            out += [(i, "conv", f"conv{block}_{j}"), (i + 1, "relu", f"relu{block}_{j}")]
            i, j = i + 2, j + 1
    return out


_LAYOUT = _layout()
_BY_NAME = {name: idx for idx, _, name in _LAYOUT}


def vgg19_layer_index(layer):
    """torchvision ``features`` index of ``layer``: ``"relu5_4"`` (= ``"vgg54"``) -> 35, ``"relu2_2"``
    (= ``"vgg22"``) -> 8, ``"conv5_4"`` (before its activation, as ESRGAN uses) -> 34, ``"pool4"`` -> 27."""
    key = _ALIASES.get(str(layer).lower(), str(layer).lower())
    if key not in _BY_NAME:
        raise ValueError(f"unknown VGG-19 layer {layer!r}: use 'vgg22', 'vgg54' or a name such as 'relu2_2', "
                         "'conv5_4', 'pool4' (blocks 1-5; blocks 1-2 have 2 convolutions, blocks 3-5 have 4)")
    return _BY_NAME[key]


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features`` up to and including ``layer``, input normalised inside.

    ``(N, 3, H, W)`` RGB in [0, 1] -> the feature map of ``layer`` (``relu5_4``: ``(N, 512, H/16, W/16)``).
    Weights start random (PyTorch's default init); load ImageNet weights with :func:`load_vgg19`.
    ``normalize=False`` skips the ImageNet mean/std step (for an input that is already normalised).
    ``padding_mode="reflect"`` and ``input_conv=True`` (a 1x1 conv before ``conv1_1``) make the
    Gatys-normalised VGG of style-transfer code (:func:`load_vgg19_normalised`).
    """

    input_convention = "rgb01"

    def __init__(self, layer="relu5_4", normalize=True, frozen=True, padding_mode="zeros", input_conv=False):
        super().__init__()
        self.layer = _ALIASES.get(str(layer).lower(), str(layer).lower())
        last = vgg19_layer_index(self.layer)
        self.normalize = normalize
        # A 1x1 conv 3 -> 3 in front (Gatys et al.'s normalised VGG: RGB in [0, 1] -> mean-free BGR in 0..255).
        self.input_conv = nn.Conv2d(3, 3, 1) if input_conv else None
        widths = iter(v for v in _CFG if v != "M")
        layers, cin = [], 3
        for idx, kind, _ in _LAYOUT[:last + 1]:
            if kind == "conv":
                out = next(widths)
                layers.append(nn.Conv2d(cin, out, 3, padding=1, padding_mode=padding_mode))
                cin = out
            elif kind == "relu":
                layers.append(nn.ReLU())
            else:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)     # children "0", "1", ...: torchvision's indices
        self.out_channels = cin
        if frozen:
            self.freeze()
        self.eval()

    def freeze(self):
        """No gradients for VGG's own weights (the loss trains the generator, not VGG); returns self."""
        for p in self.parameters():
            p.requires_grad = False
        return self

    def forward(self, x):
        if self.normalize:
            xp = backend.get_array_module(x.data if isinstance(x, Tensor) else x)
            dtype = x.dtype
            mean = xp.asarray(IMAGENET_MEAN, dtype=dtype).reshape(1, 3, 1, 1)
            inv_std = xp.asarray([1.0 / s for s in IMAGENET_STD], dtype=dtype).reshape(1, 3, 1, 1)
            x = (x - mean) * inv_std
        if self.input_conv is not None:
            x = self.input_conv(x)
        return self.features(x)

    def extra_repr(self):
        return f"up to {self.layer}"


class PerceptualLoss(nn.Module):
    """SRGAN's content loss ``l_VGG/i.j``: the MSE between VGG features of SR and HR (both RGB in [0, 1]).

    The feature maps are multiplied by ``feature_scale`` (the paper's 1/12.75) before the MSE, so the
    loss is ``mse(phi(sr), phi(hr)) / 12.75**2``. The HR features are computed without a graph; the
    gradient flows through VGG into ``sr`` only (VGG's weights are frozen).
    """

    def __init__(self, vgg, feature_scale=SRGAN_FEATURE_SCALE):
        super().__init__()
        self.vgg = vgg
        self.feature_scale = float(feature_scale)

    def forward(self, sr, hr):
        hr = hr if isinstance(hr, Tensor) else Tensor(hr)
        with no_grad():
            target = self.vgg(hr) * self.feature_scale
        return F.mse_loss(self.vgg(sr) * self.feature_scale, target.detach())

    def extra_repr(self):
        return f"feature_scale={self.feature_scale:.6g}"


# ---------------------------------------------------------------------------------------------------
# loading torchvision's weights
# ---------------------------------------------------------------------------------------------------

def _where_to_get():
    return (f"get torchvision's ImageNet VGG-19 ({VGG19_FILE}, from {VGG19_URL} or "
            "torchvision.models.vgg19(weights='IMAGENET1K_V1') on a machine with internet access) and pass its path")


def _read_state(path):
    from ..readers import UnsafePickleError, read_npz, read_torch_file
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG-19 weights file not found: {path}; {_where_to_get()}.")
    if path.suffix.lower() == ".npz":
        return dict(read_npz(path))
    try:
        obj = read_torch_file(path)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path} is not a plain state dict ({e}); {_where_to_get()}.") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError, TypeError,
            AttributeError, IndexError, OSError) as e:
        raise ValueError(f"{path} is not a readable PyTorch weights file ({type(e).__name__}: {e}); "
                         f"{_where_to_get()}.") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict; {_where_to_get()}.")
    return obj


def load_vgg19(path, layer="relu5_4", normalize=True):
    """A :class:`VGG19Features` up to ``layer`` with the weights of a torchvision VGG-19 file.

    A file in the layout of Gatys et al.'s normalised VGG (keys ``0.weight`` of shape ``(3, 3, 1, 1)``,
    ``2.weight`` ...) is passed on to :func:`load_vgg19_normalised`.

    ``path``: a ``.pth`` written by ``torch.save(vgg19.state_dict())`` -- torchvision's own
    ``vgg19-dcbb9e9d.pth`` -- (read without torch), or an ``.npz`` with the same keys, or an already
    loaded ``{name: array}`` dict. Keys ``features.N.weight`` / ``features.N.bias`` (a ``module.``
    prefix is dropped); ``classifier.*`` and the layers after ``layer`` are ignored. Errors say what is
    wrong with the file and where to get the right one.
    """
    state = dict(path) if isinstance(path, dict) else _read_state(path)
    label = "the given state dict" if isinstance(path, dict) else str(path)
    state = {re.sub(r"^module\.", "", str(k)): v for k, v in state.items()}
    if tuple(np.shape(state.get("0.weight", ()))) == (3, 3, 1, 1):
        return load_vgg19_normalised(state, layer=layer, label=label)
    if any(re.match(r"features\.\d+\.running_mean$", k) for k in state):
        raise ValueError(f"{label} is VGG-19 with batch normalisation (vgg19_bn), whose layer indices differ; "
                         f"SRGAN's loss uses the plain VGG-19: {_where_to_get()}.")
    model = VGG19Features(layer, normalize=normalize, frozen=True)
    wanted = {k: p for k, p in model.named_parameters()}
    missing = [k for k in wanted if k not in state]
    if missing:
        found = sorted(k for k in state if k.startswith("features."))[:4]
        raise ValueError(f"{label} is not a torchvision VGG-19 state dict: {len(missing)} of the {len(wanted)} "
                         f"weights up to {model.layer} are missing (first: {missing[0]}; the file's first "
                         f"features keys: {found or 'none'}); {_where_to_get()}.")
    bad = [f"{k} {tuple(np.shape(state[k]))} (expected {tuple(p.shape)})" for k, p in wanted.items()
           if tuple(np.shape(state[k])) != tuple(p.shape)]
    if bad:
        raise ValueError(f"{label} has the wrong shapes for VGG-19 ({'; '.join(bad[:3])}); {_where_to_get()}.")
    model.load_state_dict({k: np.asarray(state[k], dtype=np.float32) for k in wanted})
    return model


#: the Gatys-normalised VGG file's layer keys -> torchvision ``features`` indices (conv1_1 ... conv3_1)
_NORMALISED_KEYS = {"2": 0, "5": 2, "9": 5, "12": 7, "16": 10}


def load_vgg19_normalised(path, layer="relu2_2", label=None):
    """The Gatys-normalised VGG-19 (style-transfer code's ``vgg_normalised*.pth``) as a
    :class:`VGG19Features` up to ``layer`` (at most ``relu3_1``, the deepest layer such files hold).

    Gatys et al. (CVPR 2016) rescaled each ImageNet VGG-19 filter so that its mean activation over
    ImageNet is 1; a ReLU feature map of this network is the ImageNet VGG-19's one times a positive
    per-channel factor, so an MSE on ``relu2_2`` is a channel-reweighted **VGG22** loss (SRGAN's
    ``l_VGG/2.2``). The file's layout (a torch ``nn.Sequential`` from Lua): ``0`` a 1x1 conv that maps RGB
    in [0, 1] to mean-subtracted BGR in 0..255, then ``2, 5, 9, 12, 16`` = conv1_1, conv1_2, conv2_1,
    conv2_2, conv3_1 with **reflection** padding. ``path``: the ``.pth`` / ``.npz`` or a ``{name: array}``.
    """
    state = dict(path) if isinstance(path, dict) else _read_state(path)
    label = label or ("the given state dict" if isinstance(path, dict) else str(path))
    key = _ALIASES.get(str(layer).lower(), str(layer).lower())
    if vgg19_layer_index(key) > vgg19_layer_index("relu3_1"):
        raise ValueError(f"{label} holds VGG-19 only up to conv3_1, so layer {layer!r} cannot be computed; "
                         "use relu2_2 (vgg22) or another layer up to relu3_1.")
    model = VGG19Features(key, normalize=False, frozen=True, padding_mode="reflect", input_conv=True)
    mapping = {"input_conv.weight": "0.weight", "input_conv.bias": "0.bias"}
    mapping.update({f"features.{i}.{p}": f"{k}.{p}" for k, i in _NORMALISED_KEYS.items() for p in ("weight", "bias")})
    wanted = dict(model.named_parameters())
    new = {}
    for name, p in wanted.items():
        src = mapping[name]
        if src not in state:
            raise ValueError(f"{label} is not a Gatys-normalised VGG-19 file: expected key {src!r} for {name}, "
                             f"found keys {sorted(state)[:6]}.")
        if tuple(np.shape(state[src])) != tuple(p.shape):
            raise ValueError(f"{label}: {src} has shape {tuple(np.shape(state[src]))}, expected {tuple(p.shape)} "
                             "for a Gatys-normalised VGG-19.")
        new[name] = np.asarray(state[src], dtype=np.float32)
    model.load_state_dict(new)
    return model
