"""Checkpoints: ``.npz`` arrays (parameters, buffers, optimiser state) plus JSON metadata, written
atomically (to a temporary file in the same folder, then renamed into place), so a run killed at any
moment leaves either the previous checkpoint or the new one -- never a half-written file.

Layout of ``step_000500.npz``::

    model/<name>          every parameter and buffer (model.state_dict())
    optim/<i>/<key>       the optimiser's per-parameter state arrays
    __meta__              a JSON string: model name, config, scale, step, seed, tinysr version,
                          optimiser hyper-parameters, schedule, sampler RNG state, history

Everything is read back by :func:`tinysr.readers.read_npz`, which never unpickles and checks
every header against the bytes present: a checkpoint can never run code or make the reader allocate
more than the file holds. :func:`newest_valid` is what a resumed run uses: the newest checkpoint that
reads back completely, skipping (and naming) any newer one that is damaged.
"""
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .readers import WeightsFileError


class CheckpointError(WeightsFileError):
    """A checkpoint file that cannot be read back (truncated, overwritten, not a checkpoint): a
    :class:`~tinysr.readers.WeightsFileError`, hence a ``ValueError``."""


def _disk_full(path, needed):
    """The one sentence for a write that ran out of space: the file, the space needed, what to free."""
    path = Path(path)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    need = f"about {needed / 2**20:.1f} MB" if needed else "more space"
    have = f", {free / 2**20:.1f} MB free" if free is not None else ""
    return OSError(errno.ENOSPC, f"the disk holding {path.parent} is full: writing {path.name} needs {need}{have}; "
                                 "free that much there (older run folders under runs/ are the usual candidates) and "
                                 "run the same command again -- nothing written before was lost")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, write, size_hint=None):
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it into place.

    A full disk (``ENOSPC``/``EDQUOT``) removes the temporary file and raises an ``OSError`` that names
    ``path``, the space needed (``size_hint`` bytes, when the caller knows it) and what to free; the
    previous version of ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, size_hint) from None
        raise
    try:
        # mkstemp makes the file private (0600); give it the permissions an ordinary open() would
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, size_hint) from None
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def save(path, model, optimizer=None, meta=None, weights_dtype=None):
    """Write a checkpoint of ``model`` (and ``optimizer``) with JSON-serialisable ``meta``.

    ``weights_dtype="float16"`` stores the model's floating-point arrays at half precision (half the
    file; the shipped weights use it): :func:`load` returns them as float32 again.
    """
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if weights_dtype is not None:
        dt = np.dtype(weights_dtype)
        arrays = {k: v.astype(dt) if np.issubdtype(v.dtype, np.floating) else v for k, v in arrays.items()}
    opt_meta = None
    if optimizer is not None:
        sd = optimizer.state_dict()
        opt_meta = {"param_groups": sd["param_groups"], "scalars": {}}
        for i, s in sd["state"].items():
            for k, v in s.items():
                if isinstance(v, np.ndarray):
                    arrays[f"optim/{i}/{k}"] = v
                else:
                    opt_meta["scalars"].setdefault(str(i), {})[k] = v
    full_meta = dict(meta or {})
    full_meta["optimizer"] = opt_meta
    if weights_dtype is not None:
        full_meta["weights_dtype"] = np.dtype(weights_dtype).name
    arrays["__meta__"] = np.array(json.dumps(_jsonable(full_meta)))
    size = sum(a.nbytes for a in arrays.values()) + 512 * len(arrays)
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays), size_hint=size)


def load(path):
    """Read a checkpoint: returns ``(model_state, optimizer_state_or_None, meta)``.

    Every array is read (and CRC-checked by the zip layer), so a file that loads is complete; one that
    does not raises :class:`CheckpointError` naming the file and what is wrong with it.
    """
    from .readers import read_npz
    try:
        z = read_npz(path)
        if "__meta__" not in z:
            raise CheckpointError(f"{path} is an .npz file without tinysr metadata, not a tinysr checkpoint")
        meta = json.loads(str(z["__meta__"]))
        # half-precision weights (shipped files) come back as the float32 every layer computes in
        model_state = {k[6:]: v.astype(np.float32) if v.dtype == np.float16 else v
                       for k, v in z.items() if k.startswith("model/")}
        opt_meta = meta.pop("optimizer", None)
        opt_state = None
        if opt_meta is not None:
            state = {}
            for k, v in z.items():
                if k.startswith("optim/"):
                    _, i, key = k.split("/", 2)
                    state.setdefault(int(i), {})[key] = v
            for i, s in opt_meta["scalars"].items():
                state.setdefault(int(i), {}).update(s)
            opt_state = {"param_groups": opt_meta["param_groups"], "state": state}
    except WeightsFileError as e:
        raise CheckpointError(str(e).replace("is not a usable weights file", "is not a readable tinysr checkpoint")) from None
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path} is not a readable tinysr checkpoint ({type(e).__name__}: {e})") from None
    return model_state, opt_state, meta


def latest(out_dir, pattern="step_*.npz"):
    """The newest checkpoint file in ``out_dir`` (by step number), or None (see :func:`newest_valid`)."""
    files = sorted(Path(out_dir).glob(pattern)) if Path(out_dir).is_dir() else []
    return files[-1] if files else None


def newest_valid(out_dir, pattern="step_*.npz"):
    """The newest checkpoint in ``out_dir`` that reads back completely.

    Returns ``(path, (model_state, optimizer_state, meta), skipped)`` where ``skipped`` lists
    ``(path, reason)`` for every newer file that could not be read (a truncated write from a full
    disk, a file overwritten by something else); ``(None, None, skipped)`` when no file is usable.
    Skipped files are left where they are: nothing the user had is deleted.
    """
    files = sorted(Path(out_dir).glob(pattern)) if Path(out_dir).is_dir() else []
    skipped = []
    for path in reversed(files):
        try:
            return path, load(path), skipped
        except (CheckpointError, OSError) as e:
            skipped.append((path, str(e)))
    return None, None, skipped


#: the temporaries :func:`atomic_write_bytes` makes for a run's files (``.step_0000500.npz.ab12cd.tmp``)
STALE_PATTERNS = (".step_*.npz.*.tmp", ".history.json.*.tmp", ".curves.png.*.tmp")


def remove_stale_temporaries(out_dir):
    """Delete the temporaries a killed run left in ``out_dir`` (a SIGKILL mid-write cannot clean up);
    returns their paths. Only names :func:`atomic_write_bytes` makes for a run's own files match."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    removed = []
    for pattern in STALE_PATTERNS:
        for tmp in sorted(out_dir.glob(pattern)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed


def save_step(out_dir, step, model, optimizer=None, meta=None, keep=2):
    """Save ``out_dir/step_NNNNNNN.npz`` (atomically, see :func:`save`) and delete all but the ``keep``
    newest step checkpoints: the latest, and by default one more in case the latest is from a bad
    moment.  Returns the new file's path.  Used by :class:`tinysr.trainer.Trainer` and ``train_srgan``."""
    path = Path(out_dir) / f"step_{int(step):07d}.npz"
    save(path, model, optimizer, meta)
    for old in sorted(Path(out_dir).glob("step_*.npz"))[:-keep]:
        old.unlink()
    return path
