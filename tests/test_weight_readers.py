"""The weight-file readers are memory-safe: every size, stride, offset, count and length in a file is
checked against the bytes present before an array is built, and a bad file raises tinysr's
``WeightsFileError`` (one sentence: the file, what was expected, what was found).

Crafted files test each rule; ``weights_fuzz.py`` mutates small valid files of every format
thousands of times in child processes under a memory limit (``-m fuzz`` runs a longer campaign).
"""
import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import weights_fuzz
from tinysr.models.official import read_weights
from tinysr.readers import WeightsFileError, read_mat, read_mxnet_params, read_npz, read_torch_file

REPO = Path(__file__).resolve().parents[1]
F32 = np.arange(4, dtype=np.float32) + 1          # the storage most crafted tensors view: [1, 2, 3, 4]


def _assert_one_sentence(err, path):
    text = str(err)
    assert str(path) in text and "expected" in text and "found" in text, text
    assert text.endswith(".") and "\n" not in text, text


def _torch_file(tmp_path, legacy, tensors, storages, counts=None):
    torch = pytest.importorskip("torch")   # noqa: F841 -- names torch's globals in the crafted pickle
    payload = weights_fuzz.torch_pickle(tensors)
    path = tmp_path / ("legacy.pth" if legacy else "zip.pth")
    if legacy:
        weights_fuzz.write_torch_legacy(path, payload, storages, counts)
    else:
        weights_fuzz.write_torch_zip(path, payload, storages)
    return path


@pytest.mark.parametrize("legacy", [False, True])
def test_crafted_torch_file_reads_back(tmp_path, legacy):
    """The crafting helper itself makes files that load: a transposed view of a 2x2 storage."""
    path = _torch_file(tmp_path, legacy, {"w": ("0", 4, 0, (2, 2), (1, 2))}, {"0": F32.tobytes()})
    np.testing.assert_array_equal(read_torch_file(path)["w"], F32.reshape(2, 2).T)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("view, why", [
    (((5,), (1,), 0), "reaches element 4"),            # one element past the storage
    (((2, 2), (3, 1), 0), "reaches element 4"),        # the stride walks out
    (((4,), (1,), 1), "reaches element 4"),            # the offset pushes the view out
    (((2,), (-1,), 1), "integer >= 0"),                # a negative stride reads before the buffer
    (((4,), (1,), -1), "integer >= 0"),                # a negative offset
    (((3,), (1,), 2**62), "reaches element"),          # a huge offset
    (((1000, 1000), (0, 0), 0), "views a storage of only"),   # a broadcast larger than its storage
])
def test_tensor_views_outside_their_storage_are_refused(tmp_path, legacy, view, why):
    size, stride, offset = view
    path = _torch_file(tmp_path, legacy, {"w": ("0", 4, offset, size, stride)}, {"0": F32.tobytes()})
    with pytest.raises(WeightsFileError, match=why) as e:
        read_torch_file(path)
    _assert_one_sentence(e.value, path)


@pytest.mark.parametrize("legacy", [False, True])
def test_storage_bytes_must_match_the_declared_count(tmp_path, legacy):
    short = _torch_file(tmp_path, legacy, {"w": ("0", 4, 0, (4,), (1,))}, {"0": F32[:2].tobytes()},
                        counts={"0": 4})
    with pytest.raises(WeightsFileError) as e:
        read_torch_file(short)
    _assert_one_sentence(e.value, short)


def test_legacy_count_must_equal_the_pickles_numel(tmp_path):
    path = _torch_file(tmp_path, True, {"w": ("0", 4, 0, (4,), (1,))}, {"0": F32.tobytes()}, counts={"0": 2**40})
    with pytest.raises(WeightsFileError, match="4 elements in storage '0'"):
        read_torch_file(path)


def test_legacy_storage_views_are_sliced(tmp_path):
    """Pre-1.6 files may name a view ``(view_key, offset, numel)`` of a root storage in the persistent id."""
    torch = pytest.importorskip("torch")
    import pickle
    root = np.arange(6, dtype=np.float32)

    class _View:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (_Pid(), 0, (3,), (1,), False, OrderedDict())

    class _Pid:
        pass

    class _P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "r", "cpu", 6, ("v", 2, 3)) if isinstance(obj, _Pid) else None

    import io
    buf = io.BytesIO()
    _P(buf, protocol=2).dump({"w": _View()})
    path = tmp_path / "view.pth"
    weights_fuzz.write_torch_legacy(path, buf.getvalue(), {"r": root.tobytes()})
    np.testing.assert_array_equal(read_torch_file(path)["w"], root[2:5])


def _read_in_child(reader, path, limit_mb=1024):
    """Call ``tinysr.readers.<reader>(path)`` in a child process whose address space is capped,
    so that a reader that trusted a huge size fails (MemoryError) instead of exhausting the machine."""
    code = ("import sys\nfrom tinysr import readers\n"
            "try:\n    getattr(readers, sys.argv[1])(sys.argv[2]); print('LOADED')\n"
            "except Exception as e:\n    print(type(e).__name__ + ': ' + str(e))\n")

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb * 2**20, limit_mb * 2**20))

    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-c", code, reader, str(path)], capture_output=True, text=True,
                       timeout=120, preexec_fn=cap, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def _mxnet_bytes(ndim=2, dims=(2, 2), count=1, dtype=0, data=F32.tobytes(), names=(b"w",)):
    b = struct.pack("<QQQ", 0x112, 0, count) + struct.pack("<IiI", 0xF993FAC9, 0, ndim)
    b += struct.pack(f"<{len(dims)}q", *dims) + struct.pack("<iii", 1, 0, dtype) + data
    b += struct.pack("<Q", len(names)) + b"".join(struct.pack("<Q", len(n)) + n for n in names)
    return b


def test_mxnet_reader_reads_the_tiny_writers_file(tmp_path):
    p = tmp_path / "ok.params"
    weights_fuzz.write_mxnet(p, OrderedDict([("arg:w", F32.reshape(2, 2)), ("aux:m", np.ones(3))]))
    got = read_mxnet_params(p)
    np.testing.assert_array_equal(got["arg:w"], F32.reshape(2, 2))
    assert got["aux:m"].dtype == np.float64
    p.write_bytes(_mxnet_bytes())
    np.testing.assert_array_equal(read_mxnet_params(p)["w"], F32.reshape(2, 2))


@pytest.mark.parametrize("fields, why", [
    (dict(ndim=2**32 - 16, dims=()), "at most 64 dimensions"),
    (dict(count=10**12), "room for 1000000000000 arrays"),
    (dict(dims=(10**6, 10**6)), "no larger than the file"),
    (dict(dims=(4, 8)), "128 bytes of data"),
    (dict(dims=(-2, -2)), "non-negative"),
    (dict(dtype=99), "MXNet dtype code"),
    (dict(names=(b"w", b"x")), "0 or 1 names"),
    (dict(names=(b"\xff\xfe",)), "UTF-8"),
])
def test_mxnet_headers_are_checked_against_the_file(tmp_path, fields, why):
    p = tmp_path / "bad.params"
    p.write_bytes(_mxnet_bytes(**fields))
    out = _read_in_child("read_mxnet_params", p)
    assert out.startswith("WeightsFileError: ") and why in out and str(p) in out, out


def test_npz_object_arrays_are_refused_without_suggesting_pickle(tmp_path):
    p = tmp_path / "objects.npz"
    np.savez(p, ok=np.ones(3, np.float32), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsFileError, match="object array") as e:
        read_npz(p)
    _assert_one_sentence(e.value, p)
    assert "allow_pickle" not in str(e.value)


def _npz_with_header(tmp_path, shape, descr="<f4", data=F32.tobytes()):
    body = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header = body + b" " * ((-(10 + len(body) + 1)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data
    p = tmp_path / "crafted.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("w.npy", npy)
    return p


@pytest.mark.parametrize("shape, why", [("(10**12,)".replace("10**12", str(10**12)), "no larger than the file"),
                                        ("(8,)", "32 bytes of data"), ("(2,)", "8 bytes of data")])
def test_npz_header_shape_is_checked_against_the_member(tmp_path, shape, why):
    p = _npz_with_header(tmp_path, shape)
    out = _read_in_child("read_npz", p)
    assert out.startswith("WeightsFileError: ") and why in out and str(p) in out, out


def test_npz_fortran_order_and_values_survive(tmp_path):
    a = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    p = tmp_path / "f.npz"
    np.savez(p, a=a, b=np.int64(3))
    got = read_npz(p)
    np.testing.assert_array_equal(got["a"], a)
    assert got["b"] == 3


def test_mat_reader_equals_scipy_on_every_array_kind(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(0)
    cell = np.empty((1, 3), dtype=object)
    cell[0, 0], cell[0, 1], cell[0, 2] = rng.standard_normal((2, 3)), np.arange(4, dtype=np.int16), "abc"
    values = {"d": rng.standard_normal((3, 4)), "s": rng.standard_normal((2, 5)).astype(np.float32),
              "i": np.arange(6, dtype=np.uint8).reshape(2, 3), "l": np.array([[True, False]]),
              "c": rng.standard_normal(3) + 1j, "cell": cell, "e": np.zeros((0, 3)),
              "st": {"weight": cell, "bias": np.ones((1, 2))}, "txt": "hello"}
    for compress in (False, True):
        p = tmp_path / f"all{int(compress)}.mat"
        scipy_io.savemat(p, values, do_compression=compress)
        want = {k: v for k, v in scipy_io.loadmat(p).items() if not k.startswith("__")}
        got = read_mat(p)
        assert set(got) == set(want)
        for k in want:
            _assert_same_mat_value(got[k], want[k], k)


def _assert_same_mat_value(a, b, where):
    if isinstance(b, np.ndarray) and b.dtype.names:
        assert a.dtype.names == b.dtype.names and a.shape == b.shape, where
        for i in np.ndindex(b.shape):
            for f in b.dtype.names:
                _assert_same_mat_value(a[i][f], b[i][f], f"{where}.{f}")
    elif isinstance(b, np.ndarray) and b.dtype == object:
        assert a.dtype == object and a.shape == b.shape, where
        for i in np.ndindex(b.shape):
            _assert_same_mat_value(a[i], b[i], f"{where}{list(i)}")
    else:
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b), (where, a, b)


@pytest.mark.shared
def test_mat_reader_equals_scipy_on_the_reference_files(weights_dir):
    scipy_io = pytest.importorskip("scipy.io")
    files = sorted(weights_dir.glob("*/*/*.mat"))
    assert files
    for p in files:
        want = {k: v for k, v in scipy_io.loadmat(p).items() if not k.startswith("__")}
        got = read_mat(p)
        assert set(got) == set(want), p
        for k in want:
            _assert_same_mat_value(got[k], want[k], f"{p.name}:{k}")


def test_mat_objects_and_oversized_elements_are_refused(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    from scipy.io.matlab import MatlabObject
    obj = np.zeros((1, 1), dtype=[("weight", object)])
    obj[0, 0]["weight"] = np.ones((2, 2))
    p = tmp_path / "object.mat"
    scipy_io.savemat(p, {"weights_conv1": MatlabObject(obj, "MyNet")})
    with pytest.raises(WeightsFileError, match="MATLAB object") as e:
        read_weights(p, kind="srcnn")
    _assert_one_sentence(e.value, p)

    q = tmp_path / "big.mat"
    scipy_io.savemat(q, {"w": np.ones((3, 3))})
    raw = bytearray(q.read_bytes())
    raw[132:136] = (2**31).to_bytes(4, "little")      # the first element claims 2 GiB
    q.write_bytes(bytes(raw))
    out = _read_in_child("read_mat", q)
    assert out.startswith("WeightsFileError: ") and "2147483648 bytes" in out, out


def test_mat_layout_mismatch_is_a_weights_file_error(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    p = tmp_path / "other.mat"
    scipy_io.savemat(p, {"something_else": np.ones((2, 2))})
    with pytest.raises(WeightsFileError, match="SRCNN authors' .mat layout"):
        read_weights(p, kind="srcnn")


# ---------------------------------------------------------------------------------------------------
# fuzzing
# ---------------------------------------------------------------------------------------------------

def _fuzz(tmp_path, cases, seed, timeout):
    pytest.importorskip("torch")      # builds the seed files
    pytest.importorskip("scipy.io")
    seeds = weights_fuzz.build_seeds(tmp_path / "seeds")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = {}
    for fmt in weights_fuzz.FORMATS:
        work = tmp_path / fmt
        work.mkdir()
        cmd = [sys.executable, str(Path(weights_fuzz.__file__)), "--format", fmt, "--seeds", *seeds[fmt],
               "--cases", str(cases), "--seed", str(seed), "--progress", str(work / "progress"),
               "--workdir", str(work)]
        procs[fmt] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env), work)
    problems = []
    for fmt, (proc, work) in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            problems.append(f"{fmt}: hung at {(work / 'progress').read_text().strip()}")
            continue
        if proc.returncode != 0:
            where = (work / "progress").read_text().strip() if (work / "progress").exists() else "start"
            problems.append(f"{fmt}: child died (rc {proc.returncode}) at {where}: {err[-500:]}")
            continue
        summary = json.loads(out.strip().splitlines()[-1])
        problems += [f"{fmt}: {f}" for f in summary["failures"]]
        if summary["loaded"] == 0 or summary["refused"] == 0:
            problems.append(f"{fmt}: mutations never loaded or never refused ({summary})")
    assert not problems, "\n".join(problems)


def test_fuzz_every_reader_loads_or_refuses(tmp_path):
    """2,000 seeded mutants per format (torch zip, torch legacy, MXNet, MATLAB, npz), each read in a
    child process capped at 64 MB above its start (the files are a few KB): every one loads or raises
    WeightsFileError."""
    _fuzz(tmp_path, cases=2000, seed=0, timeout=240)


@pytest.mark.fuzz
def test_fuzz_long_campaign(tmp_path):
    """The same with 40,000 mutants per format and another seed (``pytest -m fuzz``)."""
    _fuzz(tmp_path, cases=40000, seed=int(os.environ.get("TINYSR_FUZZ_SEED", "1")), timeout=3600)
