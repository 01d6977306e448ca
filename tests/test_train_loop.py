"""The training loop on its own (tinysr.trainer.Trainer): a killed run resumes to exactly the parameters of
an uninterrupted one, checkpoints are atomic and complete, a NaN loss stops the run and keeps the last good
checkpoint, and the history/curves are written."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinysr import checkpoint, nn, optim
from tinysr.demo import TinyESPCN
from tinysr.trainer import Trainer, TrainingDiverged

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from tinysr import nn, optim
    from tinysr.demo import TinyESPCN
    from tinysr.trainer import Trainer

    out, kill_at = sys.argv[1], int(sys.argv[2])
    photo = np.random.default_rng(5).uniform(0, 1, (64, 64)).astype(np.float32)

    def sample(rng):
        t, l = rng.integers(0, 48, 2)
        hr = np.stack([photo[t:t + 16, l:l + 16]] * 4)[:, None] * rng.uniform(0.5, 1, (4, 1, 1, 1)).astype(np.float32)
        return hr.reshape(4, 1, 8, 2, 8, 2).mean(axis=(3, 5)), hr

    nn.init.seed(0)
    model = TinyESPCN()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.StepLR(opt, 7, 0.5)
    tr = Trainer(model, sample, opt, schedule=sched, out_dir=out, checkpoint_every=5, seed=3, progress=False,
                 log=lambda *a: None)
    tr.resume()

    def maybe_die(t):
        if t.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up at all, like a power cut

    tr.run(20, on_step=maybe_die)
    np.savez(os.path.join(out, "final.npz"), **model.state_dict())
""")


def _run(tmp_path, out, kill_at):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(out), str(kill_at)], capture_output=True, text=True)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_parameters(tmp_path):
    full = _run(tmp_path, tmp_path / "full", kill_at=-1)
    assert full.returncode == 0, full.stderr
    killed = _run(tmp_path, tmp_path / "resumed", kill_at=12)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "resumed" / "final.npz").exists()
    assert checkpoint.latest(tmp_path / "resumed").name == "step_0000010.npz"
    assert not list((tmp_path / "resumed").glob("*.tmp"))  # nothing half-written left behind
    again = _run(tmp_path, tmp_path / "resumed", kill_at=-1)
    assert again.returncode == 0, again.stderr
    a = np.load(tmp_path / "full" / "final.npz")
    b = np.load(tmp_path / "resumed" / "final.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    hist = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert hist["step"] == list(range(1, 21))
    assert (tmp_path / "resumed" / "curves.png").stat().st_size > 1000


def _toy(lr=1e-3, seed=0):
    nn.init.seed(seed)
    model = TinyESPCN()

    def sample(rng):
        hr = rng.uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
        return hr.reshape(2, 1, 4, 2, 4, 2).mean(axis=(3, 5)), hr

    return model, sample, optim.SGD(model.parameters(), lr=lr)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, sample, opt = _toy()
    calls = {"n": 0}

    def poisoned(rng):
        calls["n"] += 1
        x, y = sample(rng)
        if calls["n"] == 8:
            x = x * np.nan
        return x, y

    tr = Trainer(model, poisoned, opt, out_dir=tmp_path, checkpoint_every=5, progress=False)
    with pytest.raises(TrainingDiverged, match="step 8.*last good checkpoint"):
        tr.run(20)
    assert checkpoint.latest(tmp_path).name == "step_0000005.npz"
    state, _, meta = checkpoint.load(checkpoint.latest(tmp_path))
    assert all(np.isfinite(v).all() for v in state.values())
    assert meta["step"] == 5 and meta["seed"] == 0 and "tinysr_version" in meta


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the error says it all; no overflow warnings before it
def test_exploding_loss_is_caught(tmp_path):
    model, sample, opt = _toy(lr=50.0)  # far too large: the loss blows up within a few steps
    tr = Trainer(model, sample, opt, out_dir=tmp_path, checkpoint_every=1, progress=False, explode_factor=100)
    with pytest.raises(TrainingDiverged):
        tr.run(200)
    for path in tmp_path.glob("step_*.npz"):          # whatever was written before the stop is sound
        state, _, _ = checkpoint.load(path)
        assert all(np.isfinite(v).all() for v in state.values())


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_guard_works_from_the_second_step_and_never_checkpoints_a_diverged_state(tmp_path):
    """``lr=1e6``: the first update already wrecks the network. The step-2 loss is refused (one earlier loss
    is reference enough), and the checkpoint due after step 1 is not written, because the updated
    parameters are tested on that step's batch before any checkpoint."""
    model, sample, opt = _toy(lr=1e6)
    tr = Trainer(model, sample, opt, out_dir=tmp_path, checkpoint_every=1, progress=False)
    with pytest.raises(TrainingDiverged, match=r"after step 1 .*no checkpoint is written.*--clip"):
        tr.run(50)
    assert not list(tmp_path.glob("step_*.npz"))
    model, sample, opt = _toy(lr=1e6)
    tr = Trainer(model, sample, opt, out_dir=tmp_path, checkpoint_every=10, progress=False)
    with pytest.raises(TrainingDiverged, match=r"at step 2 \(the median of the steps before was"):
        tr.run(50)
    assert tr.step == 1 and not list(tmp_path.glob("step_*.npz"))


def test_the_updated_state_check_leaves_batchnorm_statistics_alone(tmp_path):
    """The test before each checkpoint runs the network in training mode on the step's batch; BatchNorm's
    running statistics must come out unchanged (a resumed run must see exactly what the run saved)."""
    from tinysr.models.srresnet import SRResNet
    nn.init.seed(0)
    model = SRResNet(scale=2, blocks=1, channels=8)

    def sample(rng):
        hr = rng.uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
        return hr.reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5)), hr

    tr = Trainer(model, sample, optim.Adam(model.parameters(), lr=1e-4), out_dir=tmp_path, checkpoint_every=100,
                 progress=False)
    tr.run(2)
    before = {k: v.copy() for k, v in model.named_buffers()}
    tr._check_updated_state()
    assert before and all(np.array_equal(before[k], v) for k, v in model.named_buffers())


def test_resume_with_another_seed_is_refused(tmp_path):
    model, sample, opt = _toy()
    Trainer(model, sample, opt, out_dir=tmp_path, checkpoint_every=2, progress=False, seed=1).run(2)
    model, sample, opt = _toy()
    with pytest.raises(ValueError, match="seed 1 but this run uses seed 2"):
        Trainer(model, sample, opt, out_dir=tmp_path, progress=False, seed=2).resume()


def test_checkpoints_never_unpickle(tmp_path):
    """A checkpoint is read without pickle: an object array is refused, not executed, and pickle is never advised."""
    bad = tmp_path / "step_0000001.npz"
    np.savez(bad, __meta__=np.array([{"x": 1}], dtype=object))
    with pytest.raises(checkpoint.CheckpointError, match="object array") as e:
        checkpoint.load(bad)
    assert "allow_pickle" not in str(e.value)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    """mkstemp's temporary files are 0600; a checkpoint or shipped weight must be readable like any file."""
    import os
    import stat
    from tinysr import checkpoint
    p = tmp_path / "x.bin"
    checkpoint.atomic_write_bytes(p, lambda f: f.write(b"abc"))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_save_step_keeps_the_two_newest(tmp_path):
    from tinysr import models
    net = models.build("fsrcnn", scale=2, d=4, s=2, m=1)
    for step in (1, 2, 10, 3):                  # file names sort by step number, not by time of writing
        path = checkpoint.save_step(tmp_path, step, net, meta={"step": step})
        assert path.name == f"step_{step:07d}.npz" and path.is_file()
    assert sorted(p.name for p in tmp_path.glob("step_*.npz")) == ["step_0000003.npz", "step_0000010.npz"]
    assert checkpoint.latest(tmp_path).name == "step_0000010.npz"
    assert checkpoint.load(checkpoint.latest(tmp_path))[2]["step"] == 10


def test_trainer_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    model, sample, opt = _toy()
    Trainer(model, sample, opt, out_dir=tmp_path, checkpoint_every=2, progress=False).run(4)
    (tmp_path / "step_0000004.npz").write_bytes(b"PK\x03\x04 cut short")
    lines = []
    model, sample, opt = _toy()
    tr = Trainer(model, sample, opt, out_dir=tmp_path, progress=False, log=lines.append)
    assert tr.resume().name == "step_0000002.npz" and tr.step == 2
    assert len(lines) == 1 and "skipping" in lines[0] and "step_0000004.npz" in lines[0]


def test_each_evaluation_records_training_seconds_and_threads(tmp_path):
    """history['eval'] entries carry the training seconds so far and the thread count, so a curve of
    quality against CPU-hours can be drawn from history.json alone."""
    photo = np.random.default_rng(1).uniform(0, 1, (32, 32)).astype(np.float32)

    def sample(rng):
        hr = np.stack([photo[:16, :16]] * 2)[:, None]
        return hr.reshape(2, 1, 8, 2, 8, 2).mean(axis=(3, 5)), hr

    nn.init.seed(0)
    model = TinyESPCN()
    tr = Trainer(model, sample, optim.Adam(model.parameters(), lr=1e-3), evaluate=lambda m: {"psnr": 1.0},
                 eval_every=2, out_dir=tmp_path, checkpoint_every=100, progress=False, log=lambda *a: None)
    tr.run(6)
    evals = json.loads((tmp_path / "history.json").read_text())["eval"]
    assert [e["step"] for e in evals] == [2, 4, 6]
    seconds = [e["seconds"] for e in evals]
    assert all(s >= 0 for s in seconds) and seconds == sorted(seconds)
    assert all(isinstance(e["threads"], int) and e["threads"] >= 1 for e in evals)


def test_resume_checks_the_runs_settings_and_records_what_may_change(tmp_path):
    """``same_run`` entries must match the checkpoint's (one it lacks cannot be this run's); ``may_change``
    entries that differ are logged and recorded under ``history["changes"]``."""
    model, sample, opt = _toy()
    Trainer(model, sample, opt, out_dir=tmp_path, checkpoint_every=2, progress=False,
            meta={"patch": 8, "lr": 0.1}).run(2)
    model, sample, opt = _toy()
    with pytest.raises(ValueError, match=r"belongs to another run \(patch 8 there, 9 now\)"):
        Trainer(model, sample, opt, out_dir=tmp_path, progress=False, meta={"patch": 9, "lr": 0.1},
                same_run=("patch",)).resume()
    with pytest.raises(ValueError, match="does not record scale"):
        Trainer(model, sample, opt, out_dir=tmp_path, progress=False, meta={"patch": 8}, same_run=("scale",)).resume()
    lines = []
    tr = Trainer(model, sample, opt, out_dir=tmp_path, progress=False, meta={"patch": 8, "lr": 0.05},
                 same_run=("patch",), may_change=("lr",), log=lines.append)
    assert tr.begin(4).name == "step_0000002.npz" and tr.step == 2
    assert tr.history["changes"] == [{"step": 2, "lr": {"from": 0.1, "to": 0.05}}]
    assert any("written with lr 0.1; the run goes on with lr 0.05" in m for m in lines)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        Trainer(model, sample, opt, out_dir=tmp_path, progress=False).begin(4, resume=False)
    with pytest.raises(TypeError, match="step= holds its own model"):
        Trainer(model, sample, opt, step=tr.step_fn)
