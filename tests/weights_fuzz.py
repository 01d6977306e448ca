"""Seeded mutation fuzzing of tinysr's weight-file readers (used by ``test_weight_readers.py``).

Run as a script, it is the *child*: it reads seed files, mutates them ``--cases`` times with a seeded
generator, calls :func:`tinysr.models.official.read_weights` on each mutant under an address-space
limit, and prints a JSON summary. Each case must either load (float32 arrays) or raise tinysr's
:class:`WeightsFileError` with a message; any other exception, a ``MemoryError`` (an allocation the
file could not justify), a crash (signal) or a hang is a failure. The index of the case being read is
written to ``--progress`` first, so a crash can be traced to its seed and case.

Imported, it provides the writers that build the small valid seed files (torch-style pickles with
chosen sizes/strides/offsets, a tiny MXNet NDArray-list writer, and the seeds for every format).
"""
import argparse
import io
import json
import os
import pickle
import pickletools
import re
import struct
import sys
import time
import zipfile
from collections import OrderedDict

import numpy as np

FORMATS = ("torch-zip", "torch-legacy", "mxnet", "mat", "npz")
SUFFIX = {"torch-zip": ".pth", "torch-legacy": ".pth", "mxnet": ".params", "mat": ".mat", "npz": ".npz"}
TORCH_MAGIC = 0x1950A86A20F9469CFC6C


# ---------------------------------------------------------------------------------------------------
# writers of valid (and deliberately crafted) files
# ---------------------------------------------------------------------------------------------------

def write_mxnet(path, arrays, dtype_codes=None):
    """A minimal MXNet NDArray-list writer (dense, CPU): the layout ``read_mxnet_params`` reads."""
    codes = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, np.dtype(np.int64): 6}
    out = bytearray(struct.pack("<QQQ", 0x112, 0, len(arrays)))
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        out += struct.pack("<IiI", 0xF993FAC9, 0, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
        out += struct.pack("<iii", 1, 0, (dtype_codes or {}).get(name, codes[a.dtype]))
        out += a.astype(a.dtype.newbyteorder("<")).tobytes()
    out += struct.pack("<Q", len(arrays))
    for name in arrays:
        out += struct.pack("<Q", len(name.encode())) + name.encode()
    with open(path, "wb") as f:
        f.write(bytes(out))


def torch_pickle(tensors):
    """A ``torch.save``-style object pickle of ``{name: (key, numel, offset, size, stride)}`` (float32
    storages) that names exactly the globals and persistent ids torch writes; needs torch only for
    the two global names, which are written by reference and never called here."""
    import torch

    class _Storage:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class _Tensor:
        def __init__(self, key, numel, offset, size, stride):
            self.args = (_Storage(key, numel), offset, tuple(size), tuple(stride), False, OrderedDict())

        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, self.args

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
            return None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(OrderedDict((k, _Tensor(*v)) for k, v in tensors.items()))
    return buf.getvalue()


def write_torch_zip(path, payload, storages):
    """A zip-format torch file: ``archive/data.pkl`` = ``payload``, ``archive/data/<key>`` = bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)


def write_torch_legacy(path, payload, storages, counts=None):
    """A legacy torch stream: magic, protocol, sys info, ``payload``, the keys, then each storage as an
    int64 element count (``counts[key]`` if given, else the true count) and its bytes."""
    with open(path, "wb") as f:
        pickle.dump(TORCH_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        f.write(payload)
        pickle.dump(list(storages), f, protocol=2)
        for key, raw in storages.items():
            n = (counts or {}).get(key, len(raw) // 4)
            f.write(struct.pack("<q", n) + raw)


def build_seeds(folder):
    """Write one or two small valid files per format into ``folder``; returns ``{format: [paths]}``."""
    import scipy.io
    import torch
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)   # noqa: E731
    state = OrderedDict([("conv.weight", torch.from_numpy(f32(2, 1, 3, 3))),
                         ("conv.bias", torch.from_numpy(f32(2))),
                         ("t", torch.from_numpy(f32(3, 4)).t()),          # a strided view
                         ("steps", torch.tensor(3, dtype=torch.int64))])
    seeds = {f: [] for f in FORMATS}
    for fmt, legacy in (("torch-zip", False), ("torch-legacy", True)):
        p = os.path.join(folder, f"{fmt}.pth")
        torch.save(state, p, _use_new_zipfile_serialization=not legacy)
        seeds[fmt].append(p)
    p = os.path.join(folder, "mxnet.params")
    write_mxnet(p, OrderedDict([("arg:conv0_weight", f32(2, 1, 3, 3)), ("arg:conv0_bias", f32(2)),
                                ("aux:mean", rng.standard_normal((1, 3)))]))
    seeds["mxnet"].append(p)
    srcnn = {"weights_conv1": f32(9, 4), "biases_conv1": f32(4, 1), "weights_conv2": f32(4, 2),
             "biases_conv2": f32(2, 1), "weights_conv3": f32(2, 9), "biases_conv3": f32(1, 1)}
    for compress in (False, True):
        p = os.path.join(folder, f"srcnn{'-z' if compress else ''}.mat")
        scipy.io.savemat(p, srcnn, do_compression=compress)
        seeds["mat"].append(p)
    p = os.path.join(folder, "w.npz")
    np.savez(p, **{"conv.weight": f32(2, 1, 3, 3), "conv.bias": f32(2), "f": np.asfortranarray(f32(3, 2))})
    seeds["npz"].append(p)
    return seeds


# ---------------------------------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------------------------------

EXTREMES = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 16, 2**32 - 1,
            10**12, 2**62, 2**63 - 1, -1, -2, -(2**31), -(2**63)]
_INT_OPS = {"BININT": 4, "BININT1": 1, "BININT2": 2, "LONG1": None, "BINPUT": 1, "LONG_BINPUT": 4,
            "BINGET": 1, "LONG_BINGET": 4, "SHORT_BINUNICODE": 1, "BINUNICODE": 4, "SHORT_BINBYTES": 1,
            "BINBYTES": 4, "BINUNICODE8": 8, "BINBYTES8": 8, "FRAME": 8}


def _put(b, pos, width, value):
    v = value % (1 << (8 * width))
    b[pos:pos + width] = v.to_bytes(width, "little")


def mutate_bytes(rng, data, aligned_window=None):
    """Generic byte mutations: truncate, flip, overwrite with an extreme integer, insert, delete, duplicate."""
    b = bytearray(data)
    kind = rng.integers(7)
    if kind == 0 or len(b) < 16:
        return bytes(b[:rng.integers(len(b) + 1)])
    if kind == 1:
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
    elif kind in (2, 3):
        width = int(rng.choice([1, 2, 4, 8]))
        if kind == 3 and aligned_window:
            pos = int(rng.integers(0, min(aligned_window, len(b) - width) // 4 + 1)) * 4
        else:
            pos = int(rng.integers(0, len(b) - width + 1))
        _put(b, pos, width, int(rng.choice(EXTREMES)))
    elif kind == 4:
        pos = rng.integers(len(b))
        b[pos:pos] = rng.integers(0, 256, rng.integers(1, 16), dtype=np.uint8).tobytes()
    elif kind == 5:
        pos = rng.integers(len(b))
        del b[pos:pos + rng.integers(1, 32)]
    else:
        a = rng.integers(len(b))
        chunk = b[a:a + rng.integers(1, 64)]
        pos = rng.integers(len(b))
        b[pos:pos] = chunk
    return bytes(b)


def mutate_pickle_ints(rng, payload):
    """Replace the argument of one integer-carrying opcode (sizes, strides, offsets, numel, string
    lengths, memo indices) by an extreme value of the same width: the structured mutation."""
    try:
        ops = [(op.name, pos) for op, _, pos in pickletools.genops(payload) if op.name in _INT_OPS]
    except Exception:   # noqa: BLE001 -- an already-broken pickle: fall back to byte mutations
        ops = []
    if not ops:
        return mutate_bytes(rng, payload)
    name, pos = ops[rng.integers(len(ops))]
    b = bytearray(payload)
    width = _INT_OPS[name]
    v = int(rng.choice(EXTREMES))
    if width is None:        # LONG1: a length byte then that many bytes, two's complement
        n = b[pos + 1]
        _put(b, pos + 2, n, v) if n else None
    else:
        _put(b, pos + 1, width, v)
    return bytes(b)


def _rezip(data, rng, members_filter):
    """Mutate one member of a zip (chosen by ``members_filter``) and write a new valid zip around it,
    so the mutation reaches the parser instead of failing the CRC check."""
    zin = zipfile.ZipFile(io.BytesIO(data))
    names = [n for n in zin.namelist() if members_filter(n)]
    target = names[rng.integers(len(names))]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info.filename == target:
                if target.endswith(".pkl"):
                    raw = mutate_pickle_ints(rng, raw) if rng.random() < 0.6 else mutate_bytes(rng, raw)
                elif target.endswith(".npy"):
                    raw = mutate_npy(rng, raw)
                else:
                    raw = mutate_bytes(rng, raw)
            zout.writestr(info.filename, raw)
    return out.getvalue()


_SHAPES = ["(1000000000000,)", "(-1, 3)", "(4611686018427387904, 4611686018427387904)", "()", "(0,)",
           "(2, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)",
           "(3,)", "(100,)", "(2, 9)", "(True,)", "('a',)"]
_DESCRS = ["'|O'", "'<f8'", "'>i4'", "'|V100'", "'<U5'", "[('a', '|O')]", "'<f4'", "'xx'", "'<M8[s]'"]


def mutate_npy(rng, raw):
    """Rewrite the ``.npy`` header's shape or dtype (half the time), else mutate bytes."""
    if rng.random() < 0.5 and raw[:6] == b"\x93NUMPY":
        text = raw[10:10 + int.from_bytes(raw[8:10], "little")].decode("latin1")
        if rng.random() < 0.5:
            text = re.sub(r"'shape': \([^)]*\)", "'shape': " + _SHAPES[rng.integers(len(_SHAPES))], text)
        else:
            text = re.sub(r"'descr': '[^']*'", "'descr': " + _DESCRS[rng.integers(len(_DESCRS))], text)
        body = text.rstrip().encode("latin1")
        header = body + b" " * ((-(10 + len(body) + 1)) % 64) + b"\n"
        return raw[:8] + len(header).to_bytes(2, "little") + header + raw[10 + int.from_bytes(raw[8:10], "little"):]
    return mutate_bytes(rng, raw)


def _legacy_object_span(data):
    """Start and end of the object pickle in a legacy torch stream (the 4th pickle)."""
    bio = io.BytesIO(data)
    spans = []
    for _ in range(4):
        start = bio.tell()
        for op, _, _ in pickletools.genops(bio):
            if op.name == "STOP":
                break
        spans.append((start, bio.tell()))
    return spans[3]


def mutate(fmt, rng, data):
    """One mutant of a seed ``data`` of format ``fmt`` (structured where the container still parses)."""
    try:
        return _mutate(fmt, rng, data)
    except Exception:   # noqa: BLE001 -- an earlier mutation broke the container: mutate raw bytes
        return mutate_bytes(rng, data)


def _mutate(fmt, rng, data):
    r = rng.random()
    if fmt in ("torch-zip", "npz") and r < 0.85:
        return _rezip(data, rng, (lambda n: n.endswith("data.pkl") or "/data/" in n) if fmt == "torch-zip"
                      else (lambda n: n.endswith(".npy")))
    if fmt == "torch-legacy" and r < 0.6:
        a, z = _legacy_object_span(data)
        obj = mutate_pickle_ints(rng, data[a:z])
        return data[:a] + obj + data[z:]
    if fmt == "torch-legacy" and r < 0.8:      # storage element counts and the bytes after the pickles
        b = bytearray(data)
        tail = _legacy_object_span(data)[1]
        pos = int(rng.integers(tail, len(b) - 8))
        _put(b, pos, 8, int(rng.choice(EXTREMES)))
        return bytes(b)
    return mutate_bytes(rng, data, aligned_window=256 if fmt in ("mxnet", "mat") else None)


# ---------------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------------

def _limit_memory(headroom_mb):
    import resource
    with open("/proc/self/status") as f:
        vm = int(next(line for line in f if line.startswith("VmSize:")).split()[1]) * 1024
    limit = vm + headroom_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run(fmt, seeds, cases, seed, progress, workdir, headroom_mb):
    """Fuzz ``fmt``: returns ``{"cases", "loaded", "refused", "failures": [...], "max_case_s"}``."""
    from tinysr.models.official import read_weights
    from tinysr.readers import WeightsFileError
    import scipy.io  # noqa: F401 -- imported before the memory limit, as read_mat needs it
    datas = [open(p, "rb").read() for p in seeds]
    rng = np.random.default_rng(seed)
    _limit_memory(headroom_mb)
    path = os.path.join(workdir, f"mutant-{fmt}{SUFFIX[fmt]}")
    loaded = refused = 0
    failures, worst = [], 0.0
    with open(progress, "w") as prog:
        for i in range(cases):
            k = int(rng.integers(len(datas)))
            data = mutate(fmt, rng, datas[k])
            if rng.random() < 0.25:        # stack a second mutation
                data = mutate(fmt, rng, data)
            with open(path, "wb") as f:
                f.write(data)
            prog.seek(0)
            prog.write(f"{fmt} seed={seed} case={i:08d}\n")
            prog.flush()
            t0 = time.perf_counter()
            try:
                out = read_weights(path, kind="srcnn" if fmt == "mat" else None)
                assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in out.values())
                loaded += 1
            except WeightsFileError as e:
                if not str(e) or path not in str(e):
                    failures.append(f"case {i}: WeightsFileError without the file name: {e!r}"[:300])
                refused += 1
            except BaseException as e:   # noqa: BLE001 -- every other outcome is a failure
                failures.append(f"case {i}: {type(e).__name__}: {e}"[:300])
                if len(failures) > 20:
                    break
            worst = max(worst, time.perf_counter() - t0)
    return {"format": fmt, "cases": cases, "loaded": loaded, "refused": refused, "failures": failures,
            "max_case_s": round(worst, 4)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", choices=FORMATS, required=True)
    ap.add_argument("--seeds", nargs="+", required=True)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--headroom-mb", type=int, default=64)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.format, a.seeds, a.cases, a.seed, a.progress, a.workdir, a.headroom_mb)))


if __name__ == "__main__":
    sys.exit(main())
