"""The restricted unpickler: tensors come back without torch; anything else is refused before it runs."""
import os
import pickle
import zipfile

import numpy as np
import pytest

from tinysr.models.official import UnsafePickleError, WeightsFileError, read_torch_file, read_weights


class _Evil:
    """Pickles to ``os.system(<touch marker>)``: running it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy_file(path, payload):
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)


def _zip_file(path, payload):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)


@pytest.mark.parametrize("writer", [_legacy_file, _zip_file])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    writer(evil, pickle.dumps({"weight": _Evil(marker)}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system|nt\.system"):
        read_torch_file(evil)
    with pytest.raises(UnsafePickleError):
        read_weights(evil)          # also with module stubs enabled
    assert not marker.exists()


def test_stubs_do_not_admit_arbitrary_globals(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    _legacy_file(evil, pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(UnsafePickleError, match="only tensor-rebuilding globals"):
        read_torch_file(evil, module_stubs=True, extra_classes={("vdsr", "Net")})
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    payload = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R."
    _zip_file(evil, payload)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        read_torch_file(evil)


@pytest.mark.parametrize("legacy", [False, True])
def test_state_dict_roundtrip_against_torch(tmp_path, legacy):
    torch = pytest.importorskip("torch")   # test reference only: tinysr itself never imports torch
    rng = np.random.default_rng(0)
    state = {"conv.weight": torch.from_numpy(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
             "conv.bias": torch.from_numpy(rng.standard_normal(4).astype(np.float32)),
             "prelu": torch.tensor([0.25]),
             "steps": torch.tensor(7, dtype=torch.int64),
             "t": torch.from_numpy(rng.standard_normal((5, 6)).astype(np.float64)).t()}   # a strided view
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    got = read_torch_file(path)
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == v.numpy().dtype and np.array_equal(got[k], v.numpy()), k


def test_npz_is_read_without_pickle(tmp_path):
    p = tmp_path / "objects.npz"
    np.savez(p, ok=np.ones(3, np.float32), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsFileError, match=r"objects\.npz .*object array") as e:
        read_weights(p)
    assert "allow_pickle" not in str(e.value)     # never advise turning pickle on


@pytest.mark.shared
@pytest.mark.parametrize("rel", ["srgan/leftthomas_srgan-5/netG_epoch_4_100.pth",
                                 "vgg19/gatys-normalised_conv3_1/vgg_normalised_conv3_1.pth"])
def test_legacy_reference_files_equal_torch_load(weights_dir, rel):
    """Two real pre-1.6 (non-zip) ``torch.save`` files: every tensor equals ``torch.load``'s, bit for bit."""
    torch = pytest.importorskip("torch")
    path = weights_dir / rel
    assert path.read_bytes()[:2] != b"PK"          # really the legacy stream, not a zip
    want = torch.load(path, weights_only=True, map_location="cpu")
    got = read_torch_file(path)
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].dtype == v.numpy().dtype and got[k].shape == tuple(v.shape), k
        assert np.array_equal(got[k], v.numpy()), k


def test_readers_module_is_the_one_official_reexports():
    from tinysr import readers
    from tinysr.models import official
    for name in ("read_torch_file", "read_mxnet_params", "RestrictedUnpickler", "UnsafePickleError",
                 "WeightsFileError"):
        assert getattr(official, name) is getattr(readers, name)
    assert issubclass(readers.WeightsFileError, ValueError)
    assert issubclass(readers.UnsafePickleError, readers.WeightsFileError)
