"""``torch.save`` files without torch: the zip format (PyTorch >= 1.6) and the legacy stream, read through
:class:`RestrictedUnpickler`, which resolves only the globals that rebuild tensors; every tensor view is
checked against its storage and every storage against the bytes the file holds."""
import io
import math
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .base import _MAX_NDIM, UnsafePickleError, WeightsFileError, _found, _int, _read_member

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001


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


class ModuleStub:
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
    :class:`ModuleStub`; they are never imported. Any other global raises
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
                return ModuleStub
            if (module, name) == ("torch.nn.backends.thnn", "_get_thnn_function_backend"):
                return _stub_function
        raise UnsafePickleError(
            f"{self.path}: refusing to load global {module}.{name} from a weights file: only tensor-rebuilding "
            "globals are allowed (a pickle can run arbitrary code). If this file is trusted and pickles a whole "
            "model, convert it to .npz with PyTorch first.")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata]); legacy whole-module
        # pickles also record ('module', class, source file, source code) for each module class.
        if self.module_stubs and isinstance(pid, tuple) and pid and pid[0] == "module" and pid[1] is ModuleStub:
            return ModuleStub
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
    if not isinstance(obj, (dict, list, tuple, ModuleStub)):
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
        if isinstance(child, ModuleStub):
            out.update(state_dict_of(child, f"{prefix}{name}.", _seen))
    return out


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


