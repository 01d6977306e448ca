"""MXNet NDArray lists (``.params``): the DRRN, EDSR-8 and SRResNet-8 ports of the Super-Resolution Zoo."""
import math
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .base import _MAX_NDIM, WeightsFileError


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
        if any(d < 0 for d in shape) or math.prod(d for d in shape if d) > len(b):
            raise WeightsFileError.bad(path, f"non-negative dimensions no larger than the file for array {i}",
                                       f"{shape}")
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


