"""What every weight reader shares: the one error class for a bad weights file, and the checks of a zip
member's claimed sizes (torch's zip format and NumPy's ``.npz`` are both zip archives)."""
import pickle
import zipfile

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


