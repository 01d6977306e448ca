"""Memory-safe readers for the binary weight formats that public super-resolution weights come in.

Each reader turns one file into plain NumPy arrays and never runs code or trusts a number from the file:

* :func:`read_torch_file` -- ``torch.save`` pickles, both the zip format (PyTorch >= 1.6) and the legacy
  stream (magic number, protocol, sys info, object pickle, storage keys, raw storages), **without
  torch**, through :class:`RestrictedUnpickler`;
* :func:`read_mxnet_params` -- MXNet NDArray lists (``.params``);
* :func:`read_mat` -- MATLAB v5 files (numeric, char, struct and cell arrays only);
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
from .base import UnsafePickleError, WeightsFileError
from .matlab import read_mat
from .mxnet import read_mxnet_params
from .npz import read_npz
from .torch_pickle import TORCH_LEGACY_MAGIC, ModuleStub, RestrictedUnpickler, read_torch_file, state_dict_of

__all__ = ["WeightsFileError", "UnsafePickleError", "RestrictedUnpickler", "read_torch_file",
           "read_mxnet_params", "read_mat", "read_npz", "state_dict_of", "ModuleStub", "TORCH_LEGACY_MAGIC"]
