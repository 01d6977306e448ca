"""Import public pretrained weights into tinysr models, and the protocols that reproduce their PSNR.

Formats read (see ``shared/reference-weights/README.md`` for each file's provenance and layout):

* ``.npz`` -- the README's conversions (and tinysr's own files), read with ``allow_pickle=False``;
* ``.mat`` -- the SRCNN and FSRCNN authors' MATLAB files and VDSR's MatConvNet file, via SciPy;
* ``.pth`` -- PyTorch pickles (legacy and zip formats), read **without torch** by
  :class:`RestrictedUnpickler`, which admits only the globals that rebuild tensors;
* ``.params`` -- MXNet NDArray lists (the DRRN port).

``load_official(name, path, scale=...)`` builds the right model (replicate borders for the
SRCNN/FSRCNN author weights, shared PReLU, DRRN's after-ReLU skip, bias-free VDSR for the PyTorch
port) and loads the weights. :func:`evaluate_official` then scores it under the protocol that the
weights' source used (:data:`PROTOCOLS`), so that the numbers can be compared with what it reports.

Why pickles are dangerous: unpickling calls whatever callables the file names (``os.system`` is
one opcode away). :class:`RestrictedUnpickler` resolves only a fixed allow-list of names to
inert, tinysr-written replacements; everything else raises :class:`UnsafePickleError` before
anything is called.
"""
import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .registry import build

__all__ = ["load_official", "read_weights", "read_torch_file", "read_mxnet_params", "RestrictedUnpickler",
           "UnsafePickleError", "evaluate_official", "prepare_pair", "PROTOCOLS"]


# ---------------------------------------------------------------------------------------------------
# PyTorch pickles without torch
# ---------------------------------------------------------------------------------------------------

class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list (it could run code); nothing ran."""


_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
                   "BFloat16Storage": None}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only remembers the element dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A flat array of one storage of the file, filled in once its bytes have been read."""

    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.array = dtype, numel, None


class _LazyTensor:
    """What ``_rebuild_tensor`` returns: the storage and the view, turned into an array after loading."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def __setstate__(self, state):
        pass  # old Parameter pickles BUILD extra state (hooks) onto the tensor; nothing to keep

    def to_numpy(self):
        a = self.storage.array
        if a is None:
            raise pickle.UnpicklingError("a tensor refers to a storage whose bytes were not found in the file")
        item = a.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(a[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _LazyTensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, *unused):
    return data


class _ModuleStub:
    """Inert stand-in for a pickled ``nn.Module`` class: it only keeps the object's ``__dict__``.

    Instantiating it runs no code of the file; the state (``_parameters``, ``_modules``) becomes a
    plain dict that :func:`_state_dict_of` walks.
    """

    def __init__(self, *args, **kwargs):
        self.__dict__["_stub_args"] = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)


def _stub_function(*args, **kwargs):
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals needed to rebuild tensors and state dicts.

    Allowed: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor(_v2)``,
    ``torch._utils._rebuild_parameter``, ``torch.nn.parameter.Parameter`` and the ``torch.*Storage``
    types, each mapped to a tinysr replacement that only builds arrays. With ``module_stubs=True``
    (for files that pickled a whole module, e.g. twtygqyy's VDSR), classes in ``torch.nn.modules.*``
    and the classes named in ``extra_classes`` (``{("vdsr", "Net"), ...}``) become the inert
    :class:`_ModuleStub`; they are never imported. Any other global raises
    :class:`UnsafePickleError` naming it -- before anything is executed.
    """

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    }

    def __init__(self, file, storages=None, module_stubs=False, extra_classes=()):
        # files written by Python 2 hold byte strings; decode them as text, as torch.load does
        super().__init__(file, encoding="utf-8", errors="replace")
        self.storages = {} if storages is None else storages
        self.module_stubs = module_stubs
        self.extra_classes = set(extra_classes)

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if self.module_stubs:
            if module.startswith("torch.nn.modules.") or (module, name) in self.extra_classes:
                return _ModuleStub
            if (module, name) == ("torch.nn.backends.thnn", "_get_thnn_function_backend"):
                return _stub_function
        raise UnsafePickleError(
            f"refusing to load global {module}.{name} from a weights file: only tensor-rebuilding globals "
            "are allowed (a pickle can run arbitrary code). If this file is trusted and pickles a whole "
            "model, convert it to .npz with PyTorch first.")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata]); legacy whole-module
        # pickles also record ('module', class, source file, source code) for each module class.
        if self.module_stubs and isinstance(pid, tuple) and pid and pid[0] == "module" and pid[1] is _ModuleStub:
            return _ModuleStub
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(stype, _StorageType) or stype.dtype is None:
            raise pickle.UnpicklingError(f"unsupported storage type {stype!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(np.dtype(stype.dtype), numel)
        return self.storages[key]


class _KeysUnpickler(pickle.Unpickler):
    """Reads the legacy format's header and list of storage keys: no globals at all are allowed."""

    def __init__(self, file):
        super().__init__(file, encoding="utf-8", errors="replace")

    def find_class(self, module, name):
        raise UnsafePickleError(f"refusing to load global {module}.{name} from the storage-key list")


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) \
            else {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    if isinstance(obj, _ModuleStub):
        obj.__dict__.update({k: _materialise(v) for k, v in obj.__dict__.items()})
        return obj
    return obj


def _state_dict_of(module, prefix=""):
    """The ``state_dict`` of a stubbed whole-module pickle: walk ``_parameters`` / ``_buffers`` / ``_modules``."""
    out = OrderedDict()
    for key in ("_parameters", "_buffers"):
        for name, v in (module.__dict__.get(key) or {}).items():
            if v is not None:
                out[prefix + name] = v
    for name, child in (module.__dict__.get("_modules") or {}).items():
        if child is not None:
            out.update(_state_dict_of(child, f"{prefix}{name}."))
    return out


def read_torch_file(path, module_stubs=False, extra_classes=()):
    """Read a ``torch.save`` file without importing torch; returns the unpickled object with every
    tensor turned into a NumPy array (a state dict becomes ``{name: ndarray}``).

    Handles the zip format (PyTorch >= 1.6: ``archive/data.pkl`` + ``archive/data/<key>``) and the
    legacy format (magic number, protocol, sys info, the object pickle, the storage keys, then
    each storage as an int64 element count followed by its raw little-endian bytes).
    """
    path = Path(path)
    storages = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                raise pickle.UnpicklingError(f"{path}: a zip file without data.pkl is not a torch.save file")
            root = pkl[: -len("data.pkl")]
            obj = RestrictedUnpickler(io.BytesIO(zf.read(pkl)), storages, module_stubs, extra_classes).load()
            for key, st in storages.items():
                raw = zf.read(f"{root}data/{key}")
                st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"), count=st.numel)
        return _materialise(obj)
    with open(path, "rb") as f:
        data = f.read()
    bio = io.BytesIO(data)
    try:
        magic = _KeysUnpickler(bio).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise pickle.UnpicklingError(f"{path}: not a PyTorch file ({e})") from e
    if magic != 0x1950A86A20F9469CFC6C:
        raise pickle.UnpicklingError(f"{path}: not a legacy PyTorch file (bad magic number)")
    _KeysUnpickler(bio).load()   # protocol version
    _KeysUnpickler(bio).load()   # sys info (byte order, type sizes)
    obj = RestrictedUnpickler(bio, storages, module_stubs, extra_classes).load()
    keys = _KeysUnpickler(bio).load()
    for key in keys:
        (numel,) = struct.unpack("<q", bio.read(8))
        st = storages[str(key)]
        nbytes = numel * st.dtype.itemsize
        st.array = np.frombuffer(bio.read(nbytes), dtype=st.dtype.newbyteorder("<"), count=numel)
    return _materialise(obj)


# ---------------------------------------------------------------------------------------------------
# MXNet .params
# ---------------------------------------------------------------------------------------------------

_MX_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


def read_mxnet_params(path):
    """Read an MXNet NDArray list (``.params``) into ``{name: ndarray}`` (dense arrays only).

    Layout: uint64 magic 0x112, uint64 reserved, uint64 count, then per array uint32 magic
    0xF993FAC9, int32 storage type, uint32 ndim, int64 dims, int32 device type and id, int32 dtype,
    raw data; then uint64 count and the names as (uint64 length, bytes).
    """
    with open(path, "rb") as f:
        b = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    magic, _, count = take("QQQ")
    if magic != 0x112:
        raise ValueError(f"{path}: not an MXNet NDArray file (magic {magic:#x})")
    arrays = []
    for _ in range(count):
        (amagic,) = take("I")
        if amagic != 0xF993FAC9:
            raise ValueError(f"{path}: unsupported NDArray version (magic {amagic:#x})")
        (stype,) = take("i")
        if stype != 0:
            raise ValueError(f"{path}: only dense arrays are supported (storage type {stype})")
        (ndim,) = take("I")
        shape = take("q" * ndim)
        take("ii")
        (flag,) = take("i")
        dt = np.dtype(_MX_DTYPES[flag]).newbyteorder("<")
        n = int(np.prod(shape)) if ndim else 1
        arrays.append(np.frombuffer(b, dtype=dt, count=n, offset=pos).reshape(shape).copy())
        pos += n * dt.itemsize
    (nnames,) = take("Q")
    names = []
    for _ in range(nnames):
        (ln,) = take("Q")
        names.append(b[pos:pos + ln].decode())
        pos += ln
    return OrderedDict(zip(names, arrays)) if names else OrderedDict((str(i), a) for i, a in enumerate(arrays))


# ---------------------------------------------------------------------------------------------------
# MATLAB layouts -> OIHW
# ---------------------------------------------------------------------------------------------------

def _taps(column, k):
    """One MATLAB filter stored as a column of k*k taps (column-major) -> (k, k) with rows = image y."""
    return np.asarray(column, dtype=np.float64).reshape(k, k, order="F")


def _mat_conv(w, k):
    """``[in, k*k, out]`` (SRCNN/FSRCNN authors' layout) -> OIHW ``(out, in, k, k)``."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2:
        w = w[:, :, None] if k * k == w.shape[1] else w[:, None, :]
    cin, taps, cout = w.shape
    return np.stack([np.stack([_taps(w[i, :, o], k) for i in range(cin)]) for o in range(cout)])


def _srcnn_from_mat(m):
    k1 = int(round(math.sqrt(m["weights_conv1"].shape[0])))
    w2 = np.asarray(m["weights_conv2"])
    k2 = 1 if w2.ndim == 2 else int(round(math.sqrt(w2.shape[1])))
    k3 = int(round(math.sqrt(m["weights_conv3"].shape[1])))
    w1 = m["weights_conv1"]   # [81, 64]: column i is filter i
    return {"conv1.weight": np.stack([_taps(w1[:, o], k1) for o in range(w1.shape[1])])[:, None],
            "conv1.bias": m["biases_conv1"].ravel(),
            "conv2.weight": _mat_conv(w2 if w2.ndim == 3 else w2[:, None, :], k2),
            "conv2.bias": m["biases_conv2"].ravel(),
            "conv3.weight": np.stack([_taps(m["weights_conv3"][i], k3) for i in range(m["weights_conv3"].shape[0])])[None],
            "conv3.bias": m["biases_conv3"].ravel()}


def _fsrcnn_from_mat(m):
    ws, bs, ps = (m[k].ravel() for k in ("weights_conv", "biases_conv", "prelu_conv"))
    n = len(ws)
    names = ["feature", "shrink"] + [f"map{i}" for i in range(1, n - 3)] + ["expand"]
    out = {}
    for i, name in enumerate(names):
        w = np.asarray(ws[i])
        k = int(round(math.sqrt(w.shape[1])))
        out[f"{name}.weight"] = _mat_conv(w, k)
        out[f"{name}.bias"] = np.asarray(bs[i]).ravel()
        out[f"{name}.prelu"] = np.asarray(ps[i]).ravel()
    wd = np.asarray(ws[-1])          # [1, 81, d]: filter of input channel c is reshape(w(1,:,c), 9, 9)
    out["deconv.weight"] = np.stack([_taps(wd[0, :, c], 9) for c in range(wd.shape[2])])[:, None]
    out["deconv.bias"] = np.asarray(bs[-1]).ravel()
    return out


def _vdsr_from_mat(m):
    model = m["model"][0, 0]
    ws, bs = model["weight"].ravel(), model["bias"].ravel()
    out = {}
    for i, (w, b) in enumerate(zip(ws, bs), start=1):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 3:
            w = w[..., None]       # MATLAB drops the trailing singleton of [3, 3, 64, 1]
        out[f"conv{i}.weight"] = np.transpose(w, (3, 2, 0, 1))   # [h, w, in, out] -> OIHW
        out[f"conv{i}.bias"] = np.asarray(b).ravel()
    return out


# ---------------------------------------------------------------------------------------------------
# reading any file into a raw {name: array} dict (in the source's own names)
# ---------------------------------------------------------------------------------------------------

def read_weights(path, kind=None):
    """Read a weights file into ``{name: float32 ndarray}`` in the *source's* names.

    ``.npz``: ``np.load(allow_pickle=False)``; ``.mat``: ``kind`` (``"srcnn"``, ``"fsrcnn"``,
    ``"vdsr"``) picks the layout; ``.pth``: :func:`read_torch_file` (a ``{"model": module}`` pickle is
    read with module stubs and turned into its state dict); ``.params``: MXNet.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    elif suffix == ".mat":
        import scipy.io
        m = scipy.io.loadmat(str(path))
        if kind is None:
            kind = "vdsr" if "model" in m else "fsrcnn" if "weights_conv" in m else "srcnn"
        raw = {"srcnn": _srcnn_from_mat, "fsrcnn": _fsrcnn_from_mat, "vdsr": _vdsr_from_mat}[kind](m)
    elif suffix in (".pth", ".pt"):
        obj = read_torch_file(path, module_stubs=True, extra_classes={("vdsr", "Net"), ("vdsr", "Conv_ReLU_Block")})
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], _ModuleStub):
            obj = _state_dict_of(obj["model"])
        elif isinstance(obj, dict) and "state_dict" in obj:
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
        raw = dict(obj)
    elif suffix == ".params":
        raw = {k.split(":", 1)[-1]: v for k, v in read_mxnet_params(path).items()}
        if set(raw) == {f"learned_{i}" for i in range(4)}:   # the zoo's DRRN export
            raw = dict(zip(["input.weight", "conv1.weight", "conv2.weight", "output.weight"],
                           (raw[f"learned_{i}"] for i in range(4))))
    else:
        raise ValueError(f"{path}: unknown weights format {suffix!r} (use .npz, .mat, .pth or .params)")
    return {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------------
# source names -> tinysr models
# ---------------------------------------------------------------------------------------------------

def _srcnn_model(raw, scale, **kw):
    k2 = raw["conv2.weight"].shape[-1]
    model = build("srcnn", scale=scale, variant=f"9-{k2}-5", n1=raw["conv1.weight"].shape[0],
                  n2=raw["conv2.weight"].shape[0], **{"padding": "same", "padding_mode": "replicate", **kw})
    state = {"patch_extraction.weight": raw["conv1.weight"], "patch_extraction.bias": raw["conv1.bias"],
             "non_linear_mapping.weight": raw["conv2.weight"], "non_linear_mapping.bias": raw["conv2.bias"],
             "reconstruction.weight": raw["conv3.weight"], "reconstruction.bias": raw["conv3.bias"]}
    return model, state


def _fsrcnn_model(raw, scale, **kw):
    if "first_part.0.weight" in raw:           # yjn870 PyTorch port: per-channel PReLU, zero padding
        m = (len([k for k in raw if k.startswith("mid_part.") and k.endswith(".bias")]) - 2)
        d, s = raw["first_part.0.weight"].shape[0], raw["mid_part.0.weight"].shape[0]
        # yjn870's ConvTranspose2d(padding=4, output_padding=scale-1), not tinysr's centred default
        model = build("fsrcnn", scale=scale, d=d, s=s, m=m, **{"prelu": "channel", "padding_mode": "zeros",
                                                                "deconv_padding": 4, **kw})
        state = {"feature_extraction.0.weight": raw["first_part.0.weight"],
                 "feature_extraction.0.bias": raw["first_part.0.bias"],
                 "feature_extraction.1.weight": raw["first_part.1.weight"],
                 "shrinking.0.weight": raw["mid_part.0.weight"], "shrinking.0.bias": raw["mid_part.0.bias"],
                 "shrinking.1.weight": raw["mid_part.1.weight"]}
        for i in range(m):
            j = 2 + 2 * i
            state[f"mapping.{i}.0.weight"] = raw[f"mid_part.{j}.weight"]
            state[f"mapping.{i}.0.bias"] = raw[f"mid_part.{j}.bias"]
            state[f"mapping.{i}.1.weight"] = raw[f"mid_part.{j + 1}.weight"]
        j = 2 + 2 * m
        state.update({"expanding.0.weight": raw[f"mid_part.{j}.weight"], "expanding.0.bias": raw[f"mid_part.{j}.bias"],
                      "expanding.1.weight": raw[f"mid_part.{j + 1}.weight"],
                      "deconvolution.weight": raw["last_part.weight"], "deconvolution.bias": raw["last_part.bias"]})
        return model, state
    m = len([k for k in raw if k.startswith("map") and k.endswith(".weight")])
    d, s = raw["feature.weight"].shape[0], raw["shrink.weight"].shape[0]
    model = build("fsrcnn", scale=scale, d=d, s=s, m=m, **{"prelu": "shared", "padding_mode": "replicate", **kw})
    parts = [("feature", "feature_extraction"), ("shrink", "shrinking")] + \
            [(f"map{i + 1}", f"mapping.{i}") for i in range(m)] + [("expand", "expanding")]
    state = {}
    for src, dst in parts:
        state[f"{dst}.0.weight"] = raw[f"{src}.weight"]
        state[f"{dst}.0.bias"] = raw[f"{src}.bias"]
        state[f"{dst}.1.weight"] = raw[f"{src}.prelu"].reshape(-1)
    state["deconvolution.weight"] = raw["deconv.weight"]
    state["deconvolution.bias"] = raw["deconv.bias"]
    return model, state


def _vdsr_model(raw, scale, **kw):
    if "input.weight" in raw:                   # twtygqyy PyTorch port: no biases
        n = len([k for k in raw if k.startswith("residual_layer.")])
        weights = [raw["input.weight"]] + [raw[f"residual_layer.{i}.conv.weight"] for i in range(n)] + \
                  [raw["output.weight"]]
        model = build("vdsr", scale=scale, depth=len(weights), bias=False, **kw)
        return model, {f"layers.{i}.weight": w for i, w in enumerate(weights)}
    n = len([k for k in raw if k.endswith(".weight")])
    model = build("vdsr", scale=scale, depth=n, **kw)
    state = {}
    for i in range(n):
        state[f"layers.{i}.weight"] = raw[f"conv{i + 1}.weight"]
        state[f"layers.{i}.bias"] = raw[f"conv{i + 1}.bias"]
    return model, state


def _drrn_model(raw, scale, **kw):
    kw = {"skip": "relu", "units": 25, **kw}
    model = build("drrn", scale=scale, blocks=1, channels=raw["conv1.weight"].shape[0], **kw)
    state = {"blocks.0.conv_in.weight": raw["input.weight"], "blocks.0.conv1.weight": raw["conv1.weight"],
             "blocks.0.conv2.weight": raw["conv2.weight"], "conv_out.weight": raw["output.weight"]}
    return model, state


_IMPORTERS = {"srcnn": _srcnn_model, "fsrcnn": _fsrcnn_model, "vdsr": _vdsr_model, "drrn": _drrn_model}


def load_official(name, path, scale=None, **kwargs):
    """Build ``name`` configured like the weights' source and load the weights from ``path``.

    Supported: ``srcnn`` (authors' .mat / README .npz; replicate 'same' borders), ``fsrcnn`` (authors'
    .mat/.npz: shared PReLU, replicate borders; yjn870 .pth/.npz: per-channel PReLU, zero borders),
    ``vdsr`` (MatConvNet .mat / .npz; twtygqyy .pth/.npz without biases), ``drrn`` (MXNet .params /
    .npz; B1U25 with the after-ReLU skip, ``units=9`` to run the same weights with 9 recursions).
    ``kwargs`` override the model's configuration. Returns the model in eval mode.
    """
    key = str(name).lower()
    if key not in _IMPORTERS:
        raise ValueError(f"no public weights importer for {name!r}; available: {', '.join(_IMPORTERS)}")
    raw = read_weights(path, kind=key if Path(path).suffix.lower() == ".mat" else None)
    if scale is None:
        scale = 3
    model, state = _IMPORTERS[key](raw, scale, **kwargs)
    model.load_state_dict(state)
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# the sources' evaluation protocols
# ---------------------------------------------------------------------------------------------------

#: What each protocol does (shared/reference-weights/README.md), by name.
PROTOCOLS = {
    "srcnn": "SRCNN demo_SR.m: Y = uint8 rgb2ycbcr, modcrop, /255; LR = imresize(Y, 1/s), input = imresize(LR, s) "
             "(unrounded doubles); output rounded to uint8; s px shaved; PSNR on Y",
    "fsrcnn": "FSRCNN demo_FSRCNN.m: as srcnn but the input is the LR Y; x3 compares SR[2:-4] with GT[3:-3] "
              "(the authors' shave_x3 one-pixel offset)",
    "vdsr": "huangzehao Demo_SR_Conv.m: LR = imresize(uint8 RGB, 1/s) (uint8); Y from double rgb2ycbcr, "
            "unrounded; input = imresize(Y_lr, s); output not rounded; s px shaved",
    "pytorch": "twtygqyy / jt827859032 eval.py: GT Y = double rgb2ycbcr, unrounded; input = imresize(imresize(Y, 1/s), s) "
               "in double; output clipped to [0, 1], not rounded; s px shaved; modcrop applied cumulatively "
               "for 2..s",
    "yjn870": "yjn870 FSRCNN test.py: HR = Pillow bicubic resize of the RGB image to the modcropped size, LR = Pillow "
              "bicubic downscale, Y = 16 + (64.738 R + 129.057 G + 25.064 B) / 256 in float32, output clamped to "
              "[0, 1], no shave, PSNR = 10 log10(1 / MSE)",
}


def prepare_pair(hr, scale, protocol):
    """``(network_input (H', W'), ground_truth_Y (H, W) in [0, 1])`` for one HR image.

    ``hr`` is the uint8 HR image ``(H, W, 3)`` or grayscale ``(H, W)``; see :data:`PROTOCOLS`.  The
    pipelines themselves live in :func:`tinysr.data.protocol.prepare`: ``"srcnn"`` and ``"fsrcnn"``
    are its ``"matlab"`` protocol for a ``bicubic-y`` and an ``lr-y`` network, the others its own
    protocols of the same name.
    """
    from ..data.protocol import prepare
    if protocol in ("srcnn", "fsrcnn"):
        inp, y = prepare(hr, scale, "bicubic-y" if protocol == "srcnn" else "lr-y")
        return inp, y.astype(np.float64) / 255.0
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return prepare(hr, scale, "lr-y" if protocol == "yjn870" else "bicubic-y", protocol=protocol)


def _run(model, inp):
    from .. import no_grad
    from ..autograd import Tensor
    with no_grad():
        out = model(Tensor(inp[None, None].astype(np.float32)))
    return np.asarray(out.data[0, 0], dtype=np.float64)


def score_pair(sr, gt, scale, protocol):
    """PSNR (dB) of one SR Y against the GT Y (both ``[0, 1]``) under ``protocol``.

    The author protocols round the SR to 8 bits and use :func:`tinysr.metrics.psnr`; the VDSR and
    PyTorch protocols compare unrounded values (``20 log10(255 / RMSE)`` on Y x 255), which the
    standard metric deliberately does not do.
    """
    from ..metrics import psnr
    s = int(scale)
    if protocol in ("srcnn", "fsrcnn"):
        sr8 = np.clip(np.floor(sr * 255.0 + 0.5), 0, 255).astype(np.uint8)
        gt8 = np.clip(np.floor(gt * 255.0 + 0.5), 0, 255).astype(np.uint8)
        if protocol == "fsrcnn" and s == 3:
            h, w = gt8.shape
            return psnr(sr8[2:h - 4, 2:w - 4], gt8[3:h - 3, 3:w - 3], s, border=0)
        return psnr(sr8, gt8, s)
    if protocol == "yjn870":
        sr = np.clip(sr.astype(np.float32), 0.0, 1.0)
        return float(10.0 * math.log10(1.0 / np.mean((gt.astype(np.float32) - sr) ** 2)))
    if protocol == "pytorch":
        sr = np.clip(sr, 0.0, 1.0)
    a, b = sr[s:-s, s:-s] * 255.0, gt[s:-s, s:-s] * 255.0
    return float(20.0 * math.log10(255.0 / math.sqrt(np.mean((a - b) ** 2))))


def evaluate_official(model, images, scale, protocol, crop=None):
    """Mean PSNR of ``model`` over ``images`` (uint8 HR arrays) under ``protocol``; returns
    ``(mean, [per-image PSNR])``. ``crop`` (pixels) limits each HR image to its top-left
    ``crop x crop`` corner first, for cheap checks of the expensive networks.
    """
    scores = []
    for hr in images:
        if crop is not None:
            hr = hr[:crop, :crop]
        inp, gt = prepare_pair(hr, scale, protocol)
        scores.append(score_pair(_run(model, inp), gt, scale, protocol))
    return float(np.mean(scores)), scores
