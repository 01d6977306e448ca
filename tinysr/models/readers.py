"""Memory-safe readers for the binary weight formats that public super-resolution weights come in.

Each reader turns one file into plain NumPy arrays and never runs code or trusts a number from the file:

* :func:`read_torch_file` -- ``torch.save`` pickles, both the zip format (PyTorch >= 1.6) and the legacy
  stream (magic number, protocol, sys info, object pickle, storage keys, raw storages), **without
  torch**, through :class:`RestrictedUnpickler`;
* :func:`read_mxnet_params` -- MXNet NDArray lists (``.params``);
* :func:`read_mat` -- MATLAB v5 files, via SciPy, numeric/struct/cell arrays only;
* :func:`read_npz` -- NumPy ``.npz`` archives, without pickle.

Two dangers, two rules:

1. **Code.** Unpickling calls whatever callables the file names (``os.system`` is one opcode away).
   :class:`RestrictedUnpickler` resolves only a fixed allow-list of names to inert tinysr functions;
   anything else raises :class:`UnsafePickleError` before anything is called.
2. **Memory.** A size, stride, offset, count or length read from a file is a claim, not a fact. Every
   one is checked against the bytes actually present *before* an array is built: a tensor view must
   lie inside its storage (``offset + sum((size_i - 1) * stride_i) < numel``, sizes and strides >= 0),
   a storage must hold exactly ``numel * itemsize`` bytes, a header's element count must fit in the
   rest of the file, a compressed member may not inflate beyond what DEFLATE can produce. Each pickle
   is first walked opcode by opcode (:mod:`pickletools`, which executes nothing) so that no counted
   string or memo index can make the C unpickler allocate more than the file holds.

A file that breaks a rule raises :class:`WeightsFileError` (a ``ValueError``) with one sentence naming
the file, what was expected there and what was found.
"""
import io
import math
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["WeightsFileError", "UnsafePickleError", "RestrictedUnpickler", "read_torch_file",
           "read_mxnet_params", "read_mat", "read_npz", "TORCH_LEGACY_MAGIC"]

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001
_MAX_NDIM = 64                  # more dimensions than any weight tensor has; bounds per-tensor work
_DEFLATE_MAX_RATIO = 1032       # zlib's documented worst-case expansion of one compressed byte


class WeightsFileError(ValueError):
    """A weights file that does not hold what its format promises (truncated, corrupted or crafted).

    Build it with :meth:`bad` so that the message is one sentence: the file, what was expected,
    what was found.
    """

    @classmethod
    def bad(cls, path, expected, found):
        """``WeightsFileError`` saying ``<path> is not a usable weights file: expected <expected>, found <found>.``"""
        return cls(f"{path} is not a usable weights file: expected {expected}, found {found}.")


class UnsafePickleError(WeightsFileError, pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list (it could run code); nothing ran."""


def _found(e):
    """A short description of an exception raised while parsing, for the 'found ...' half of a message."""
    text = str(e).strip().rstrip(".")
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _int(v):
    """``v`` if it is a plain integer (not a bool), else None."""
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


# ---------------------------------------------------------------------------------------------------
# PyTorch pickles without torch
# ---------------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
                   "BFloat16Storage": None}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only remembers the element dtype."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """One flat storage of the file: ``numel`` elements of ``dtype``; ``array`` is set once its bytes
    are read (and checked to be exactly ``numel * itemsize`` long)."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None

    def flat(self):
        """The storage's elements as a 1-D array (raises if the file never supplied its bytes)."""
        if self.array is None:
            raise ValueError(f"storage {self.key!r} is referenced but its bytes are not in the file")
        return self.array


class _StorageView:
    """A legacy-format view ``root[offset:offset + numel]`` of another storage (checked on creation)."""

    def __init__(self, root, offset, numel):
        self.root, self.offset, self.numel, self.dtype = root, offset, numel, root.dtype

    def flat(self):
        return self.root.flat()[self.offset:self.offset + self.numel]


class _LazyTensor:
    """What ``_rebuild_tensor`` returns: the storage and the view, turned into an array after loading."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        pass  # old Parameter pickles BUILD extra state (hooks) onto the tensor; nothing to keep

    def to_numpy(self):
        """Copy the view out of the storage after checking that every element it names lies inside it."""
        a = self.storage.flat()
        n = a.shape[0]
        count = math.prod(self.size)
        if count == 0:
            return np.empty(self.size, dtype=a.dtype)
        last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride))
        if last >= n:
            raise ValueError(f"a tensor of size {self.size}, stride {self.stride} and offset {self.offset} "
                             f"reaches element {last} of a storage of {n}")
        if count > n:
            raise ValueError(f"a tensor of {count} elements views a storage of only {n}")
        item = a.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(a[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    """The allow-listed stand-in for ``torch._utils._rebuild_tensor(_v2)``: validates the arguments'
    types and signs and returns a :class:`_LazyTensor` (bounds are checked once the storage is read)."""
    if not isinstance(storage, (_Storage, _StorageView)):
        raise ValueError(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride) \
            or len(size) > _MAX_NDIM:
        raise ValueError(f"a tensor has size {size!r} and stride {stride!r}")
    size_i, stride_i, off = tuple(_int(s) for s in size), tuple(_int(s) for s in stride), _int(offset)
    if off is None or off < 0 or any(s is None or s < 0 for s in size_i + stride_i):
        raise ValueError(f"a tensor has size {size!r}, stride {stride!r} and offset {offset!r} "
                         "(each must be an integer >= 0)")
    return _LazyTensor(storage, off, size_i, stride_i)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, *unused):
    return data


class _ModuleStub:
    """Inert stand-in for a pickled ``nn.Module`` class: it only keeps the object's ``__dict__``.

    Instantiating it runs no code of the file; the state (``_parameters``, ``_modules``) becomes a
    plain dict that :func:`state_dict_of` walks.
    """

    def __init__(self, *args, **kwargs):
        self.__dict__["_stub_args"] = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})


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

    Persistent ids ``('storage', type, key, location, numel[, view])`` become storages registered in
    ``storages`` (``{key: _Storage}``); the caller fills in their bytes.
    """

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    }

    def __init__(self, file, storages=None, module_stubs=False, extra_classes=(), path="the file"):
        # files written by Python 2 hold byte strings; decode them as text, as torch.load does
        super().__init__(file, encoding="utf-8", errors="replace")
        self.storages = {} if storages is None else storages
        self.module_stubs = module_stubs
        self.extra_classes = set(extra_classes)
        self.path = path

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
            f"{self.path}: refusing to load global {module}.{name} from a weights file: only tensor-rebuilding "
            "globals are allowed (a pickle can run arbitrary code). If this file is trusted and pickles a whole "
            "model, convert it to .npz with PyTorch first.")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata]); legacy whole-module
        # pickles also record ('module', class, source file, source code) for each module class.
        if self.module_stubs and isinstance(pid, tuple) and pid and pid[0] == "module" and pid[1] is _ModuleStub:
            return _ModuleStub
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise UnsafePickleError(f"{self.path}: unexpected persistent id {str(pid)[:80]}; only storages are allowed")
        stype, key, numel = pid[1], str(pid[2]), _int(pid[4])
        if not isinstance(stype, _StorageType) or stype.dtype is None:
            raise ValueError(f"unsupported storage type {stype!r}")
        if numel is None or numel < 0:
            raise ValueError(f"storage {key!r} claims {pid[4]!r} elements")
        dtype = np.dtype(stype.dtype)
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(key, dtype, numel)
        elif st.dtype != dtype or st.numel != numel:
            raise ValueError(f"storage {key!r} is declared twice with different types or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return st
        # legacy views: (view_key, offset, view_numel) into the root storage, in elements
        if not isinstance(view, tuple) or len(view) != 3:
            raise ValueError(f"storage {key!r} has view metadata {view!r}")
        off, cnt = _int(view[1]), _int(view[2])
        if off is None or cnt is None or off < 0 or cnt < 0 or off + cnt > numel:
            raise ValueError(f"a view [{view[1]!r}:+{view[2]!r}] of storage {key!r} with {numel} elements")
        return _StorageView(st, off, cnt)


class _KeysUnpickler(pickle.Unpickler):
    """Reads the legacy format's header and list of storage keys: no globals at all are allowed."""

    def __init__(self, file, path="the file"):
        super().__init__(file, encoding="utf-8", errors="replace")
        self.path = path

    def find_class(self, module, name):
        raise UnsafePickleError(f"{self.path}: refusing to load global {module}.{name} from a torch file header")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.path}: unexpected persistent id in a torch file header")


_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def _scan_pickle(data, start, path, what):
    """Walk the pickle that starts at ``data[start]`` opcode by opcode, executing nothing; return the
    offset just past its STOP.

    :mod:`pickletools` reads every counted string or bytes argument from the data itself, so a length
    larger than what is left fails here instead of in a huge allocation; memo indices larger than the
    number of opcodes so far (which a real pickler never writes) are refused because the C unpickler
    grows its memo to the index it is given.
    """
    bio = io.BytesIO(data)
    bio.seek(start)
    n_ops = 0
    try:
        for op, arg, _ in pickletools.genops(bio):
            n_ops += 1
            if op.name in _MEMO_OPS and not (isinstance(arg, int) and 0 <= arg <= n_ops):
                raise ValueError(f"memo index {arg!r} after {n_ops} opcodes")
            if op.name == "STOP":
                return bio.tell()
    except Exception as e:   # noqa: BLE001 -- any parse failure of untrusted bytes is a bad file
        raise WeightsFileError.bad(path, f"a well-formed pickle ({what})", _found(e)) from None
    raise WeightsFileError.bad(path, f"a complete pickle ({what})", "the data ending before its STOP opcode")


def _unpickle(unpickler_cls, data, start, path, what, **kw):
    """Scan and then load the pickle at ``data[start:]``; return ``(object, end offset)``."""
    end = _scan_pickle(data, start, path, what)
    try:
        return unpickler_cls(io.BytesIO(data[start:end]), path=path, **kw).load(), end
    except WeightsFileError:
        raise
    except Exception as e:   # noqa: BLE001
        raise WeightsFileError.bad(path, f"a readable pickle ({what})", _found(e)) from None


def _materialise(obj, memo=None, active=None):
    """Replace every :class:`_LazyTensor` in ``obj`` by its array. Shared sub-objects are converted once
    (a pickle can reference one list from many places); a cycle is refused."""
    memo = {} if memo is None else memo
    active = set() if active is None else active
    if isinstance(obj, _LazyTensor):
        if id(obj) not in memo:
            memo[id(obj)] = obj.to_numpy()
        return memo[id(obj)]
    if not isinstance(obj, (dict, list, tuple, _ModuleStub)):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    if id(obj) in active:
        raise ValueError("the pickled object contains itself")
    active.add(id(obj))
    if isinstance(obj, dict):
        items = [(k, _materialise(v, memo, active)) for k, v in obj.items()]
        out = OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_materialise(v, memo, active) for v in obj)
    else:
        obj.__dict__.update({k: _materialise(v, memo, active) for k, v in list(obj.__dict__.items())})
        out = obj
    active.discard(id(obj))
    memo[id(obj)] = out
    return out


def state_dict_of(module, prefix="", _seen=None):
    """The ``state_dict`` of a stubbed whole-module pickle: walk ``_parameters`` / ``_buffers`` / ``_modules``."""
    _seen = set() if _seen is None else _seen
    if id(module) in _seen:
        raise ValueError("a pickled module contains itself")
    _seen.add(id(module))
    out = OrderedDict()
    for key in ("_parameters", "_buffers"):
        group = module.__dict__.get(key) or {}
        for name, v in (group.items() if isinstance(group, dict) else ()):
            if isinstance(v, np.ndarray):
                out[f"{prefix}{name}"] = v
    children = module.__dict__.get("_modules") or {}
    for name, child in (children.items() if isinstance(children, dict) else ()):
        if isinstance(child, _ModuleStub):
            out.update(state_dict_of(child, f"{prefix}{name}.", _seen))
    return out


def _check_member(path, zf, info, nbytes=None):
    """Check a zip member's claimed sizes before reading it: stored members cannot be larger than the
    archive; compressed ones cannot inflate beyond DEFLATE's limit; ``nbytes`` if the size is known."""
    if nbytes is not None and info.file_size != nbytes:
        raise WeightsFileError.bad(path, f"{nbytes} bytes in {info.filename}", f"{info.file_size}")
    limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED \
        else info.compress_size * _DEFLATE_MAX_RATIO + 64
    if info.file_size > limit or info.compress_size > zf.fp_size:
        raise WeightsFileError.bad(path, f"a member {info.filename} no larger than its compressed bytes allow",
                                   f"a claimed size of {info.file_size} bytes")


def _read_member(path, zf, name, nbytes=None):
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightsFileError.bad(path, f"a member {name}", "none") from None
    _check_member(path, zf, info, nbytes)
    raw = zf.read(info)
    if nbytes is not None and len(raw) != nbytes:
        raise WeightsFileError.bad(path, f"{nbytes} bytes in {name}", f"{len(raw)}")
    return raw


def _read_torch_zip(path, data, module_stubs, extra_classes):
    storages = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.fp_size = len(data)
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise WeightsFileError.bad(path, "a torch.save zip with a data.pkl member", "a zip file without one")
        root = pkl[: -len("data.pkl")]
        order = "<"
        if f"{root}byteorder" in names:
            bo = _read_member(path, zf, f"{root}byteorder")
            if bo not in (b"little", b"big"):
                raise WeightsFileError.bad(path, "byteorder 'little' or 'big'", repr(bo[:20]))
            order = "<" if bo == b"little" else ">"
        obj, _ = _unpickle(RestrictedUnpickler, _read_member(path, zf, pkl), 0, path, "data.pkl",
                           storages=storages, module_stubs=module_stubs, extra_classes=extra_classes)
        for key, st in storages.items():
            raw = _read_member(path, zf, f"{root}data/{key}", st.numel * st.dtype.itemsize)
            st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder(order), count=st.numel)
    return obj


def _read_torch_legacy(path, data, module_stubs, extra_classes):
    """The pre-1.6 stream: five pickles back to back, then for each storage key an int64 element count
    and the raw bytes."""
    magic, pos = _unpickle(_KeysUnpickler, data, 0, path, "magic number")
    if magic != TORCH_LEGACY_MAGIC:
        raise WeightsFileError.bad(path, "a torch.save file (a zip archive, or the legacy magic number)",
                                   "neither")
    proto, pos = _unpickle(_KeysUnpickler, data, pos, path, "protocol version")
    if proto != _TORCH_LEGACY_PROTOCOL:
        raise WeightsFileError.bad(path, f"legacy protocol {_TORCH_LEGACY_PROTOCOL}", repr(proto)[:40])
    sys_info, pos = _unpickle(_KeysUnpickler, data, pos, path, "sys info")
    order = "<"
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        order = ">"
    storages = {}
    obj, pos = _unpickle(RestrictedUnpickler, data, pos, path, "object", storages=storages,
                         module_stubs=module_stubs, extra_classes=extra_classes)
    keys, pos = _unpickle(_KeysUnpickler, data, pos, path, "storage keys")
    if not isinstance(keys, list) or len(set(map(str, keys))) != len(keys):
        raise WeightsFileError.bad(path, "a list of distinct storage keys", repr(keys)[:80])
    for key in map(str, keys):
        st = storages.get(key)
        if st is None:
            raise WeightsFileError.bad(path, "storage keys that the object pickle declared", f"unknown key {key!r}")
        if pos + 8 > len(data):
            raise WeightsFileError.bad(path, f"an element count for storage {key!r}", "the end of the file")
        (numel,) = struct.unpack_from("<q", data, pos)
        pos += 8
        nbytes = numel * st.dtype.itemsize
        if numel != st.numel:
            raise WeightsFileError.bad(path, f"{st.numel} elements in storage {key!r}", f"{numel}")
        if pos + nbytes > len(data):
            raise WeightsFileError.bad(path, f"{nbytes} bytes for storage {key!r}", f"{len(data) - pos} left")
        st.array = np.frombuffer(data, dtype=st.dtype.newbyteorder(order), count=numel, offset=pos)
        pos += nbytes
    return obj


def read_torch_file(path, module_stubs=False, extra_classes=()):
    """Read a ``torch.save`` file without importing torch; returns the unpickled object with every
    tensor turned into a NumPy array (a state dict becomes ``{name: ndarray}``).

    Handles the zip format (PyTorch >= 1.6: ``archive/data.pkl`` + ``archive/data/<key>``) and the
    legacy format (magic number, protocol, sys info, the object pickle with persistent ids naming
    storages, the list of storage keys, then each storage as a little-endian int64 element count
    followed by its raw bytes). Every tensor view and storage length is checked against the bytes
    present (see the module docstring); a bad file raises :class:`WeightsFileError`, a forbidden
    global :class:`UnsafePickleError`.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        if data[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(data)):
            obj = _read_torch_zip(path, data, module_stubs, extra_classes)
        else:
            obj = _read_torch_legacy(path, data, module_stubs, extra_classes)
        return _materialise(obj)
    except (WeightsFileError, MemoryError):
        raise
    except Exception as e:   # noqa: BLE001 -- zipfile/zlib/struct errors of a damaged file
        raise WeightsFileError.bad(path, "a well-formed torch.save file", _found(e)) from None


# ---------------------------------------------------------------------------------------------------
# MXNet .params
# ---------------------------------------------------------------------------------------------------

_MX_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}
_MX_LIST_MAGIC, _MX_ARRAY_MAGIC = 0x112, 0xF993FAC9


def read_mxnet_params(path):
    """Read an MXNet NDArray list (``.params``) into ``{name: ndarray}`` (dense arrays only).

    Layout: uint64 magic 0x112, uint64 reserved, uint64 count, then per array uint32 magic
    0xF993FAC9, int32 storage type, uint32 ndim, int64 dims, int32 device type and id, int32 dtype,
    raw data; then uint64 count and the names as (uint64 length, bytes). Every count, dimension and
    length is checked against the bytes left before it is used.
    """
    path = Path(path)
    b = path.read_bytes()
    pos = 0

    def take(fmt, what):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(b):
            raise WeightsFileError.bad(path, f"{what} at byte {pos}", f"the file ending at byte {len(b)}")
        vals = struct.unpack_from("<" + fmt, b, pos)
        pos += size
        return vals

    magic, _, count = take("QQQ", "the MXNet list header")
    if magic != _MX_LIST_MAGIC:
        raise WeightsFileError.bad(path, f"the MXNet NDArray-list magic {_MX_LIST_MAGIC:#x}", f"{magic:#x}")
    if count * 16 > len(b) - pos:       # each array header alone is at least 16 bytes
        raise WeightsFileError.bad(path, f"room for {count} arrays", f"{len(b) - pos} bytes")
    arrays = []
    for i in range(count):
        (amagic,) = take("I", f"the header of array {i}")
        if amagic != _MX_ARRAY_MAGIC:
            raise WeightsFileError.bad(path, f"the NDArray magic {_MX_ARRAY_MAGIC:#x} for array {i}", f"{amagic:#x}")
        (stype,) = take("i", f"the storage type of array {i}")
        if stype != 0:
            raise WeightsFileError.bad(path, f"a dense array (storage type 0) for array {i}", f"type {stype}")
        (ndim,) = take("I", f"the ndim of array {i}")
        if ndim > _MAX_NDIM:
            raise WeightsFileError.bad(path, f"at most {_MAX_NDIM} dimensions for array {i}", f"{ndim}")
        shape = take("q" * ndim, f"the {ndim} dimensions of array {i}")
        if any(d < 0 for d in shape):
            raise WeightsFileError.bad(path, f"non-negative dimensions for array {i}", f"{shape}")
        take("ii", f"the device of array {i}")
        (flag,) = take("i", f"the dtype of array {i}")
        if flag not in _MX_DTYPES:
            raise WeightsFileError.bad(path, f"an MXNet dtype code in {sorted(_MX_DTYPES)} for array {i}", f"{flag}")
        dt = np.dtype(_MX_DTYPES[flag]).newbyteorder("<")
        n = math.prod(shape)
        if n * dt.itemsize > len(b) - pos:
            raise WeightsFileError.bad(path, f"{n * dt.itemsize} bytes of data for array {i} of shape {shape}",
                                       f"{len(b) - pos} bytes left")
        arrays.append(np.frombuffer(b, dtype=dt, count=n, offset=pos).reshape(shape).copy())
        pos += n * dt.itemsize
    (nnames,) = take("Q", "the count of names")
    if nnames not in (0, count):
        raise WeightsFileError.bad(path, f"0 or {count} names", f"{nnames}")
    names = []
    for i in range(nnames):
        (ln,) = take("Q", f"the length of name {i}")
        if ln > len(b) - pos:
            raise WeightsFileError.bad(path, f"a name of {ln} bytes", f"{len(b) - pos} bytes left")
        try:
            names.append(b[pos:pos + ln].decode())
        except UnicodeDecodeError:
            raise WeightsFileError.bad(path, f"name {i} in UTF-8", "undecodable bytes") from None
        pos += ln
    if len(set(names)) != len(names):
        raise WeightsFileError.bad(path, "distinct array names", "a repeated name")
    return OrderedDict(zip(names, arrays)) if names else OrderedDict((str(i), a) for i, a in enumerate(arrays))


# ---------------------------------------------------------------------------------------------------
# NumPy .npz
# ---------------------------------------------------------------------------------------------------

def read_npz(path):
    """Read an ``.npz`` archive into ``{name: ndarray}`` without pickle.

    Each member's ``.npy`` header is parsed first; object dtypes (which only pickle can hold) are
    refused, and the shape times the itemsize must equal the bytes the member holds before the data
    is read, so a header cannot make the reader allocate more than the file contains.
    """
    path = Path(path)
    data = path.read_bytes()
    out = OrderedDict()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.fp_size = len(data)
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                _check_member(path, zf, info)
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if reader is None:
                        raise WeightsFileError.bad(path, f"an .npy version 1.0 or 2.0 header in {info.filename}",
                                                   f"version {version}")
                    shape, fortran, dtype = reader(f)
                    if dtype.hasobject:
                        raise WeightsFileError.bad(path, f"numeric arrays only in {info.filename}",
                                                   f"an object array (dtype {dtype}), which only pickle can hold "
                                                   "and tinysr never unpickles")
                    nbytes = math.prod(shape) * dtype.itemsize
                    left = info.file_size - f.tell()
                    if nbytes != left:
                        raise WeightsFileError.bad(path, f"{nbytes} bytes of data for {info.filename} of shape "
                                                   f"{shape}", f"{left}")
                    raw = f.read(nbytes)
                    if len(raw) != nbytes:
                        raise WeightsFileError.bad(path, f"{nbytes} bytes in {info.filename}", f"{len(raw)}")
                arr = np.frombuffer(raw, dtype=dtype, count=math.prod(shape))
                out[name] = arr.reshape(shape, order="F" if fortran else "C").copy()
    except (WeightsFileError, MemoryError):
        raise
    except Exception as e:   # noqa: BLE001
        raise WeightsFileError.bad(path, "a NumPy .npz archive", _found(e)) from None
    return out


# ---------------------------------------------------------------------------------------------------
# MATLAB .mat
# ---------------------------------------------------------------------------------------------------

_MAT_HEADER = 128
_MI_COMPRESSED, _MI_MATRIX = 15, 14


def _check_mat_elements(path, data):
    """Walk a v5 MAT file's top-level data elements (uint32 type, uint32 byte count, data padded to 8)
    and check each byte count against the file; a compressed element may not claim to inflate past
    DEFLATE's limit. SciPy then reads only elements that fit."""
    if len(data) < _MAT_HEADER or data[126:128] not in (b"IM", b"MI"):
        raise WeightsFileError.bad(path, "a MATLAB v5 .mat file (128-byte header ending in 'IM')",
                                   f"{min(len(data), _MAT_HEADER)} bytes without that header")
    order = "<" if data[126:128] == b"IM" else ">"
    pos = _MAT_HEADER
    while pos < len(data):
        if pos + 8 > len(data):
            raise WeightsFileError.bad(path, f"a data element header at byte {pos}", "the end of the file")
        mtype, nbytes = struct.unpack_from(order + "II", data, pos)
        if mtype not in (_MI_COMPRESSED, _MI_MATRIX):
            raise WeightsFileError.bad(path, f"a matrix or compressed element at byte {pos}", f"type {mtype}")
        if nbytes > len(data) - pos - 8:
            raise WeightsFileError.bad(path, f"{nbytes} bytes for the element at byte {pos}",
                                       f"{len(data) - pos - 8} left")
        pos += 8 + (nbytes if mtype == _MI_COMPRESSED else (nbytes + 7) // 8 * 8)


def _check_mat_value(path, name, v, depth=0):
    """Numeric, logical, char, struct and cell arrays only; MATLAB objects, function handles and
    opaque classes are refused."""
    import scipy.io.matlab as sm
    if depth > 32:
        raise WeightsFileError.bad(path, f"at most 32 nested levels in {name!r}", "more")
    if isinstance(v, (sm.MatlabOpaque, sm.MatlabFunction, sm.MatlabObject)):
        raise WeightsFileError.bad(path, f"numeric, struct or cell arrays in {name!r}",
                                   f"a MATLAB {type(v).__name__}")
    if not isinstance(v, np.ndarray):
        return
    if v.dtype.names:
        for f in v.dtype.names:
            for item in v[f].ravel():
                _check_mat_value(path, f"{name}.{f}", item, depth + 1)
    elif v.dtype.hasobject:
        for item in v.ravel():
            _check_mat_value(path, name, item, depth + 1)
    elif v.dtype.kind not in "biufcUS":
        raise WeightsFileError.bad(path, f"a numeric array in {name!r}", f"dtype {v.dtype}")


def read_mat(path):
    """Read a MATLAB v5 ``.mat`` file into ``{name: value}`` via :func:`scipy.io.loadmat`.

    The top-level element sizes are checked against the file first; values may be numeric, struct
    or cell arrays (MatConvNet stores a network as a struct of cells); MATLAB objects and function
    handles raise :class:`WeightsFileError`. v7.3 (HDF5) files are refused: save with ``-v7``.
    """
    import scipy.io
    path = Path(path)
    data = path.read_bytes()
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise WeightsFileError.bad(path, "a MATLAB v5/v7 .mat file", "a v7.3 (HDF5) file; re-save it with "
                                   "save(..., '-v7')")
    _check_mat_elements(path, data)
    try:
        m = scipy.io.loadmat(io.BytesIO(data))
    except (MemoryError, WeightsFileError):
        raise
    except Exception as e:   # noqa: BLE001
        raise WeightsFileError.bad(path, "a readable MATLAB .mat file", _found(e)) from None
    out = {k: v for k, v in m.items() if not k.startswith("__")}
    for k, v in out.items():
        _check_mat_value(path, k, v)
    return out
