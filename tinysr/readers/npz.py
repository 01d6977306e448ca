"""NumPy ``.npz`` archives read without pickle, each ``.npy`` header checked against its member."""
import io
import math
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .base import _MAX_NDIM, WeightsFileError, _check_member, _found


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
                    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM \
                            or math.prod(d for d in shape if d) > len(data):
                        raise WeightsFileError.bad(path, f"a shape no larger than the file in {info.filename}",
                                                   f"{shape}")
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


