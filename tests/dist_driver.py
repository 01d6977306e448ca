"""Small training runs for ``test_distributed.py``, run by ``mpiexec -n N python tests/dist_driver.py JOB OUT``
(and, for the one-process references, imported by the tests themselves).

Jobs:

* ``weights OUT``: a few steps of SRCNN, EDSR-baseline and a BatchNorm SRResNet; rank 0 writes the
  weights to ``OUT/<name>.npz``.  Also checks :func:`tinysr.distributed.ring_allreduce` against
  ``Allreduce`` and writes ``OUT/ring.json``.
* ``nccl OUT [no-nccl]``: SRCNN on ``device="cuda"`` with fake CuPy and an NCCL stand-in (or, with
  ``no-nccl``, a CuPy without NCCL: the buffer goes through the host and MPI).
* ``mismatch OUT``: the last rank starts from another seed's weights.
* ``run OUT STEPS [die_at [hang|raise]]``: SRCNN with checkpoints every 2 steps in ``OUT``; with ``die_at``,
  the last rank hangs (sleeps) or raises an error after that many steps.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinysr import distributed, optim, recipes, sampling  # noqa: E402
from tinysr.data import datasets  # noqa: E402
from tinysr.models.registry import build  # noqa: E402
from tinysr.nn import init  # noqa: E402
from tinysr.trainer import Trainer  # noqa: E402

#: name -> (build kwargs, scale, patch size, global batch, steps)
CASES = {
    "srcnn": ({"offset": 0.5, "padding": "valid"}, 3, 33, 4, 3),
    "edsr_baseline": ({}, 2, 12, 4, 3),
    "srresnet": ({"blocks": 2, "channels": 16}, 2, 12, 4, 3),
}


def images():
    """Three 96x96 crops of the builtin training photos (no download, no ../shared)."""
    return [im[100:196, 100:196] for im in datasets.load("builtin", split="train")[:3]]


def make_trainer(name, comm=None, out_dir=None, seed=0, checkpoint_every=1000, device="cpu"):
    kw, scale, patch, batch, _ = CASES[name]
    init.seed(seed)
    net = build(name, scale=scale, **kw)
    if device != "cpu":
        net.to(device)
    recipe = recipes.FAST_RECIPES[name]
    sample, _ = sampling.training_sampler(net, images(), scale, recipe=recipe, recipe_name="fast", patch_size=patch,
                                          batch_size=batch, log=lambda *a: None)
    opt = optim.Adam(net.parameters(), lr=1e-3)
    loss = recipes.loss_fn(recipe, net, scale)
    return Trainer(net, sample, opt, loss=loss, out_dir=out_dir, seed=seed, progress=False, log=lambda *a: None,
                   checkpoint_every=checkpoint_every, communicator=comm, device=device)


def state(trainer):
    return trainer.model.state_dict()


def job_weights(out):
    comm = distributed.from_environment()
    for name, case in CASES.items():
        tr = make_trainer(name, comm)
        tr.run(case[-1])
        if comm.is_root:
            np.savez(Path(out) / f"{name}.npz", **state(tr))
    # the ring against the library's all-reduce, on a length that does not divide by the rank count
    x = np.random.default_rng(comm.rank).standard_normal(1001).astype(np.float64)
    ring, ref = x.copy(), np.empty_like(x)
    distributed.ring_allreduce(comm.comm, ring)
    comm.comm.Allreduce(x, ref)
    if comm.is_root:
        (Path(out) / "ring.json").write_text(json.dumps({"max_error": float(np.abs(ring - ref).max()),
                                                        "size": comm.size}))


def job_run(out, steps, die_at=None, how="hang"):
    comm = distributed.from_environment()

    def on_step(trainer):
        if die_at is not None and trainer.step == die_at and comm.rank == comm.size - 1:
            if how == "hang":
                time.sleep(3600)        # this rank hangs: the others must not
            raise OSError("No space left on device (an error on one rank only)")

    tr = make_trainer("srcnn", comm, out_dir=out, checkpoint_every=2)
    tr.resume()
    tr.run(steps, on_step=on_step)


def job_nccl(out, with_nccl=True):
    """SRCNN on ``device="cuda"`` with NumPy's stand-in for CuPy (``fake_cupy``) and a stand-in for NCCL that
    sums through MPI: the GPU path's plumbing (NCCL id from rank 0, one rank per GPU, device buffers, the
    completion poll) on a machine without a GPU."""
    import ctypes
    import types
    from mpi4py import MPI
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fake_cupy
    from tinysr.functional import dispatch
    calls = []

    class NcclCommunicator:
        def __init__(self, n, uid, rank):
            ids = MPI.COMM_WORLD.allgather(uid)
            assert n == MPI.COMM_WORLD.Get_size() and rank == MPI.COMM_WORLD.Get_rank() and len(set(ids)) == 1, ids

        def allReduce(self, send, recv, count, dtype, op, stream):
            assert op == nccl.NCCL_SUM and send == recv
            ctype = {nccl.NCCL_FLOAT32: ctypes.c_float, nccl.NCCL_FLOAT64: ctypes.c_double}[dtype]
            arr = np.ctypeslib.as_array((ctype * count).from_address(recv))
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, arr)
            calls.append(count)

        def abort(self):
            pass

    nccl = types.SimpleNamespace(NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0, NcclCommunicator=NcclCommunicator,
                                 get_unique_id=lambda: tuple(os.urandom(16)))
    if with_nccl:
        fake_cupy.cuda.nccl = nccl
    fake_cupy.cuda.runtime.getDeviceCount = lambda: 2      # one GPU per rank
    fake_cupy._Device.use = lambda self: calls.append(f"device {self.id}")
    fake_cupy._Stream.record = lambda self: types.SimpleNamespace(done=True)
    sys.modules.update({"cupy": fake_cupy, "cupy.cuda": fake_cupy.cuda})
    if with_nccl:
        sys.modules["cupy.cuda.nccl"] = nccl      # without it, `from cupy.cuda import nccl` fails as in a CuPy without NCCL
    dispatch._loaded["cuda"] = False             # no Numba CUDA kernels: NumPy code on device arrays
    distributed._device_pointer = lambda buf: buf.ctypes.data
    comm = distributed.from_environment("cuda")
    tr = make_trainer("srcnn", comm, device="cuda")
    tr.run(CASES["srcnn"][-1])
    on_device = all(type(p.data) is fake_cupy.ndarray for p in tr.model.parameters())
    if comm.is_root:
        np.savez(Path(out) / "srcnn_nccl.npz", **state(tr))
        (Path(out) / "nccl.json").write_text(json.dumps({"calls": calls, "on_device": on_device}))


def job_mismatch(out):
    """The last rank is given another seed: the start-up check must refuse to train."""
    comm = distributed.from_environment()
    tr = make_trainer("srcnn", comm, seed=1 if comm.rank == comm.size - 1 else 0)
    tr.run(2)


if __name__ == "__main__":
    job, out = sys.argv[1], sys.argv[2]
    if job == "weights":
        job_weights(out)
    elif job == "mismatch":
        job_mismatch(out)
    elif job == "nccl":
        job_nccl(out, with_nccl=sys.argv[3:4] != ["no-nccl"])
    elif job == "run":
        job_run(out, int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None, *sys.argv[5:6])
    else:
        raise SystemExit(f"unknown job {job}")
