"""Checkpoints: ``.npz`` arrays (parameters, buffers, optimiser state) plus JSON metadata, written
atomically (to a temporary file in the same folder, then renamed into place), so a run killed at any
moment leaves either the previous checkpoint or the new one -- never a half-written file.

Layout of ``step_000500.npz``::

    model/<name>          every parameter and buffer (model.state_dict())
    optim/<i>/<key>       the optimiser's per-parameter state arrays
    __meta__              a JSON string: model name, config, scale, step, seed, tinysr version,
                          optimiser hyper-parameters, schedule, sampler RNG state, history

Everything is read back with ``allow_pickle=False``: a checkpoint can never run code.
"""
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, write):
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the permissions an ordinary open() would
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))


def load(path):
    """Read a checkpoint: returns ``(model_state, optimizer_state_or_None, meta)``."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        # half-precision weights (shipped files) come back as the float32 every layer computes in
        model_state = {k[6:]: z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]
                       for k in z.files if k.startswith("model/")}
        opt_meta = meta.pop("optimizer", None)
        opt_state = None
        if opt_meta is not None:
            state = {}
            for k in z.files:
                if k.startswith("optim/"):
                    _, i, key = k.split("/", 2)
                    state.setdefault(int(i), {})[key] = z[k]
            for i, s in opt_meta["scalars"].items():
                state.setdefault(int(i), {}).update(s)
            opt_state = {"param_groups": opt_meta["param_groups"], "state": state}
    return model_state, opt_state, meta


def latest(out_dir, pattern="step_*.npz"):
    """The newest complete checkpoint in ``out_dir`` (by step number), or None."""
    files = sorted(Path(out_dir).glob(pattern)) if Path(out_dir).is_dir() else []
    return files[-1] if files else None


def save_step(out_dir, step, model, optimizer=None, meta=None, keep=2):
    """Save ``out_dir/step_NNNNNNN.npz`` (atomically, see :func:`save`) and delete all but the ``keep``
    newest step checkpoints: the latest, and by default one more in case the latest is from a bad
    moment.  Returns the new file's path.  Used by :class:`tinysr.train.Trainer` and ``train_srgan``."""
    path = Path(out_dir) / f"step_{int(step):07d}.npz"
    save(path, model, optimizer, meta)
    for old in sorted(Path(out_dir).glob("step_*.npz"))[:-keep]:
        old.unlink()
    return path
