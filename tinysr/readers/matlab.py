"""MATLAB v5 ``.mat`` files (the SRCNN and FSRCNN authors' weights, VDSR's MatConvNet network), parsed by
tinysr so that every size is checked before anything is allocated."""
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .base import _DEFLATE_MAX_RATIO, _MAX_NDIM, WeightsFileError, _found


_MAT_HEADER = 128
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8",
              16: "u1", 17: "u2", 18: "u4"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_CELL, _MX_STRUCT, _MX_CHAR = 1, 2, 4
_MX_NUMERIC = {6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
_MX_NAMES = {3: "object", 5: "sparse", 16: "function handle", 17: "opaque (classdef) object"}
_MAT_MAX_DEPTH = 16


class _MatReader:
    """A MATLAB v5 parser for the subset weights files use: numeric, logical, char, struct and cell
    arrays, optionally zlib-compressed at the top level. Each data element's byte count is checked
    against the bytes left, each array's element count against its data, before anything is built.
    The result has SciPy's ``loadmat`` layout (2-D at least, structs as record arrays of objects,
    cells as object arrays), so code written against SciPy reads it unchanged."""

    def __init__(self, path, order):
        self.path, self.order = path, order

    def bad(self, expected, found):
        return WeightsFileError.bad(self.path, expected, found)

    def tag(self, buf, pos, end):
        """``(mi type, byte count, data start, next element)`` of the element at ``pos``; small format
        elements (byte count <= 4) pack the count into the tag's upper half."""
        if pos + 8 > end:
            raise self.bad(f"a data element at byte {pos}", "the end of its container")
        word, nbytes = struct.unpack_from(self.order + "II", buf, pos)
        if word >> 16:                       # small data element: 4 bytes of data inside the tag
            mtype, nbytes = word & 0xFFFF, word >> 16
            if nbytes > 4:
                raise self.bad(f"at most 4 bytes in the small element at byte {pos}", f"{nbytes}")
            return mtype, nbytes, pos + 4, pos + 8
        mtype = word
        if nbytes > end - pos - 8:
            raise self.bad(f"{nbytes} bytes for the element at byte {pos}", f"{end - pos - 8} left")
        nxt = pos + 8 + (nbytes if mtype in (_MI_MATRIX, _MI_COMPRESSED) else (nbytes + 7) // 8 * 8)
        return mtype, nbytes, pos + 8, min(nxt, end)

    def numbers(self, buf, pos, end, what):
        """A numeric data element as a 1-D array (in the element's own dtype); returns ``(array, next)``."""
        mtype, nbytes, start, nxt = self.tag(buf, pos, end)
        if mtype not in _MI_DTYPES:
            raise self.bad(f"numeric data for {what}", f"element type {mtype}")
        dt = np.dtype(_MI_DTYPES[mtype]).newbyteorder(self.order)
        if nbytes % dt.itemsize:
            raise self.bad(f"a whole number of {dt.itemsize}-byte values for {what}", f"{nbytes} bytes")
        return np.frombuffer(buf, dtype=dt, count=nbytes // dt.itemsize, offset=start), nxt

    def matrix(self, buf, pos, end, depth):
        """Parse the miMATRIX element at ``pos``; returns ``(name, value, next)``."""
        mtype, nbytes, start, nxt = self.tag(buf, pos, end)
        if mtype != _MI_MATRIX:
            raise self.bad(f"a matrix element at byte {pos}", f"element type {mtype}")
        if depth > _MAT_MAX_DEPTH:
            raise self.bad(f"at most {_MAT_MAX_DEPTH} nested cells or structs", "more")
        stop = start + nbytes
        if nbytes == 0:
            return "", np.empty((1, 0)), nxt        # what SciPy returns for an empty element
        flags, p = self.numbers(buf, start, stop, "the array flags")
        if flags.size < 2:
            raise self.bad("two array-flag words", f"{flags.size}")
        # logical arrays keep their stored uint8 values, as SciPy returns them
        cls, complex_ = int(flags[0]) & 0xFF, bool(int(flags[0]) & 0x800)
        if cls in _MX_NAMES:
            raise self.bad("numeric, char, struct or cell arrays", f"a MATLAB {_MX_NAMES[cls]}")
        dims, p = self.numbers(buf, p, stop, "the dimensions")
        if not 2 <= dims.size <= _MAX_NDIM or (dims < 0).any():
            raise self.bad("2 to 64 non-negative dimensions", f"{dims.tolist()[:8]}")
        shape = tuple(int(d) for d in dims)
        count = math.prod(shape)
        raw_name, p = self.numbers(buf, p, stop, "the array name")
        name = raw_name.astype(np.uint8).tobytes().decode("latin1")
        if cls in _MX_NUMERIC or cls == _MX_CHAR:
            real, p = self.numbers(buf, p, stop, f"the data of {name or 'an array'}")
            if real.size != count:
                raise self.bad(f"{count} values for an array of shape {shape}", f"{real.size}")
            value = real
            if complex_:
                imag, p = self.numbers(buf, p, stop, "the imaginary part")
                if imag.size != count:
                    raise self.bad(f"{count} imaginary values", f"{imag.size}")
                value = real.astype(np.complex128) + 1j * imag
            value = value.reshape(shape, order="F").copy()
            if cls == _MX_CHAR:
                chars = np.vectorize(chr, otypes=["U1"])(value.astype(np.uint32) % 0x110000) if count else value
                value = np.array(["".join(r) for r in chars.reshape(shape[0], -1)]) if count else np.array([""])
            return name, value, nxt
        if cls == _MX_CELL:
            if count * 8 > stop - p:
                raise self.bad(f"room for {count} cells", f"{stop - p} bytes")
            flat = np.empty(count, dtype=object)
            for i in range(count):
                _, flat[i], p = self.matrix(buf, p, stop, depth + 1)
            return name, flat.reshape(shape, order="F"), nxt
        if cls == _MX_STRUCT:
            length, p = self.numbers(buf, p, stop, "the field-name length")
            if length.size != 1 or not 0 < int(length[0]) <= 4096:
                raise self.bad("one field-name length between 1 and 4096", f"{length.tolist()[:4]}")
            width = int(length[0])
            raw, p = self.numbers(buf, p, stop, "the field names")
            if raw.size % width:
                raise self.bad(f"field names of {width} bytes each", f"{raw.size} bytes")
            raw = raw.astype(np.uint8).tobytes()
            fields = [raw[i:i + width].split(b"\0", 1)[0].decode("latin1") for i in range(0, len(raw), width)]
            if len(set(fields)) != len(fields) or not all(fields):
                raise self.bad("distinct, non-empty field names", f"{fields[:8]}")
            if count * len(fields) * 8 > stop - p:
                raise self.bad(f"room for {count} x {len(fields)} struct fields", f"{stop - p} bytes")
            flat = np.empty(count, dtype=[(f, object) for f in fields])
            for i in range(count):
                for f in fields:
                    _, flat[i][f], p = self.matrix(buf, p, stop, depth + 1)
            return name, flat.reshape(shape, order="F"), nxt
        raise self.bad("a known MATLAB array class", f"class {cls}")

    def read(self, data):
        out = {}
        pos = _MAT_HEADER
        while pos < len(data):
            mtype, nbytes, start, nxt = self.tag(data, pos, len(data))
            if mtype == _MI_COMPRESSED:
                z = zlib.decompressobj()
                try:
                    inner = z.decompress(data[start:start + nbytes], nbytes * _DEFLATE_MAX_RATIO + 64)
                except zlib.error as e:
                    raise self.bad(f"a zlib stream at byte {pos}", _found(e)) from None
                name, value, _ = self.matrix(inner, 0, len(inner), 0)
            else:
                name, value, _ = self.matrix(data, pos, len(data), 0)
            if name:
                out[name] = value
            pos = nxt
        return out


def read_mat(path):
    """Read a MATLAB v5 ``.mat`` file (as ``save -v7`` or ``-v6`` write it) into ``{name: value}``.

    Values come back as :func:`scipy.io.loadmat` would return them (at least 2-D, Fortran order; a
    struct is a record array of objects, a cell an object array). Numeric, logical, char, struct and
    cell arrays are read; MATLAB objects, function handles, sparse and v7.3 (HDF5) files raise
    :class:`WeightsFileError`. tinysr parses the file itself rather than through SciPy because the
    checks must come before any allocation: SciPy's reader trusts the sizes in the file.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise WeightsFileError.bad(path, "a MATLAB v5/v7 .mat file", "a v7.3 (HDF5) file; re-save it with "
                                   "save(..., '-v7')")
    if len(data) < _MAT_HEADER or data[126:128] not in (b"IM", b"MI"):
        raise WeightsFileError.bad(path, "a MATLAB v5 .mat file (128-byte header ending in 'IM')",
                                   f"{min(len(data), _MAT_HEADER)} bytes without that header")
    reader = _MatReader(path, "<" if data[126:128] == b"IM" else ">")
    try:
        return reader.read(data)
    except (WeightsFileError, MemoryError):
        raise
    except Exception as e:   # noqa: BLE001
        raise WeightsFileError.bad(path, "a readable MATLAB .mat file", _found(e)) from None
