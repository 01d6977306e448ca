"""Data-parallel training: the same run on N processes, each on its own slice of every batch.

::

    mpiexec -n 2 python -m tinysr train srcnn --scale 3 --iterations 2000     # 2 ranks, one run

Data parallelism (Krizhevsky 2014, "One weird trick"; Goyal et al. 2017, "Accurate, large minibatch
SGD") splits each **global** batch of ``B`` patches over ``N`` workers (*ranks*).  Every rank holds a
full copy of the network, computes the loss and gradients on its ``B/N`` rows, and then all ranks add
their gradients together with an **all-reduce**: afterwards every rank holds the same gradient, the
one a single process would have computed on all ``B`` rows, and applies the same optimiser step.  The
copies never drift apart, so one rank's weights are the run's weights.

What this module adds to :class:`tinysr.trainer.Trainer` (which takes it as ``communicator=``):

* **the same patches**: every rank draws the whole global batch from the same seeded generator (the
  Trainer's, saved in each checkpoint) and keeps its own rows (:meth:`Communicator.local_batch`).
  ``N`` ranks with global batch ``B`` therefore train on exactly the patches one process with batch
  ``B`` trains on; drawing is cheap next to a forward and backward pass.
* **one all-reduce per step** (:meth:`Communicator.backward_and_reduce`): each rank's gradients,
  weighted by its share of the batch, are packed into one flat buffer with the loss and BatchNorm's
  running statistics, and summed: ``MPI_Allreduce`` for host arrays (mpi4py), NCCL
  (``cupy.cuda.nccl``) for GPU arrays.  One large message costs one latency instead of one per
  parameter tensor.
* **rank 0 reports**: it evaluates, prints the progress bar and writes checkpoints; the others wait
  for its evaluation at a barrier.  Every rank resumes from the newest checkpoint, and the run checks
  before its first step that all ranks hold the same step, weights and sampler state.
* **no hang**: every collective is started non-blocking and polled against a deadline; a rank that
  stops answering (dead, stuck, out of memory) makes the others stop with a sentence that says so and
  end the whole job (``MPI_Abort``).  The last checkpoint is kept, and the same command resumes it with
  the same or another number of ranks (the global batch, not the rank count, defines the run).

BatchNorm (SRResNet, DRRN) normalises with each rank's **own slice** (as PyTorch's
``DistributedDataParallel`` does without ``SyncBatchNorm``), so a BatchNorm network sees batch
statistics of ``B/N`` rows, not ``B``.  Its running statistics are averaged over the ranks after
every step, which keeps them identical everywhere: the running mean is then that of the global batch,
and the running variance the mean of the slices' variances.

A process that was not started by ``mpiexec`` (or by ``mpiexec -n 1``) never imports mpi4py and
trains exactly as before.
"""
import atexit
import os
import sys
import time
import zlib

import numpy as np

from . import backend

__all__ = ["launched_ranks", "launched_rank", "from_environment", "Communicator", "RankLost", "ring_allreduce"]

#: Environment variables in which MPI launchers announce the number of ranks: MPICH / Intel MPI /
#: Slurm (PMI), Open MPI, MVAPICH.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")

#: Seconds a rank waits for the others at one step's all-reduce (``TINYSR_DIST_TIMEOUT``).
DEFAULT_TIMEOUT = 300.0
#: Seconds the other ranks wait while rank 0 evaluates (``TINYSR_DIST_EVAL_TIMEOUT``).
DEFAULT_EVAL_TIMEOUT = 3600.0


#: Seconds a failing rank waits between printing its error and ending the job, so the launcher
#: forwards the message before MPI_Abort closes its pipes.
ABORT_GRACE_SECONDS = 0.5


class RankLost(RuntimeError):
    """Another rank stopped answering within the deadline; the job cannot continue."""


def _launcher_number(names, default, environ):
    """The first of the launcher's variables ``names`` that holds a whole number, else ``default``."""
    environ = os.environ if environ is None else environ
    for name in names:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return default


def launched_ranks(environ=None):
    """How many ranks the MPI launcher started (1 when this process was not started by one)."""
    return _launcher_number(SIZE_VARIABLES, 1, environ)


def launched_rank(environ=None):
    """This process's rank as the MPI launcher announced it (0 when not started by one); no MPI import."""
    return _launcher_number(RANK_VARIABLES, 0, environ)


def from_environment(device="cpu", *, timeout=None, eval_timeout=None):
    """A :class:`Communicator` over ``MPI.COMM_WORLD`` when launched by ``mpiexec -n N`` with N > 1, else None.

    mpi4py is imported only here, and only under a launcher, so ``import tinysr`` never loads MPI.
    With ``device="cuda"`` each rank takes the GPU of its local rank (rank ``i`` on a node uses GPU
    ``i``) and reduces with NCCL.
    """
    if launched_ranks() <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"this process was started by an MPI launcher with {launched_ranks()} ranks, but "
                           "mpi4py is not installed: pip install 'tinysr[dist]' (mpi4py and the mpich wheel), "
                           "or run without mpiexec") from None
    return Communicator(MPI.COMM_WORLD, device=device, timeout=timeout, eval_timeout=eval_timeout)


def _env_seconds(name, default):
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from None


class Communicator:
    """The ranks of one data-parallel run, and the collectives the Trainer needs.

    Parameters
    ----------
    comm : an ``mpi4py.MPI.Comm`` (normally ``MPI.COMM_WORLD``)
    device : ``"cpu"`` (MPI all-reduce of host buffers) or ``"cuda"`` (NCCL on GPU buffers; MPI on
        host copies when CuPy has no NCCL)
    timeout, eval_timeout : seconds before a silent rank counts as lost (see the module docstring)
    algorithm : ``"mpi"`` (the library's ``Allreduce``) or ``"ring"`` (:func:`ring_allreduce`, built
        from point-to-point messages; lesson 11 trains with it)
    """

    def __init__(self, comm, *, device="cpu", timeout=None, eval_timeout=None, algorithm="mpi"):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(timeout or _env_seconds("TINYSR_DIST_TIMEOUT", DEFAULT_TIMEOUT))
        self.eval_timeout = float(eval_timeout or _env_seconds("TINYSR_DIST_EVAL_TIMEOUT", DEFAULT_EVAL_TIMEOUT))
        if algorithm not in ("mpi", "ring"):
            raise ValueError(f"algorithm must be 'mpi' or 'ring', not {algorithm!r}")
        self.algorithm = algorithm
        self.step = 0                 # for messages: the step whose collective failed
        self.share = 1.0 / self.size  # this rank's fraction of the last global batch
        self.seconds_reducing = 0.0   # wall time spent in (and waiting at) the all-reduce
        self._aborting = False
        self._nccl = _Nccl(comm) if backend.parse_device(device)[0] == "cuda" else None

    @property
    def is_root(self):
        """Rank 0 evaluates, prints and writes checkpoints."""
        return self.rank == 0

    # ------------------------------------------------------------------ the batch
    def local_batch(self, x, y):
        """This rank's rows of the global batch ``(x, y)`` (NCHW): rows ``[B*r/N, B*(r+1)/N)``.

        Every rank drew the same ``(x, y)``, so the slices tile the batch exactly.  The share of each
        rank (``rows / B``) weights its gradient in the all-reduce, so a batch that does not divide
        evenly still gives the gradient of the whole batch's mean loss.
        """
        n = len(x)
        if n < self.size:
            raise ValueError(f"a global batch of {n} patches cannot be split over {self.size} ranks: use a batch "
                             f"size of at least {self.size} (--batch-size), or fewer ranks")
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        self.share = (hi - lo) / n
        return x[lo:hi], y[lo:hi]

    # ------------------------------------------------------------------ the step's all-reduce
    def backward_and_reduce(self, loss, model, optimizer):
        """Back-propagate this rank's ``loss``, then sum the weighted gradients over all ranks.

        One flat buffer holds, in order: every optimised parameter's gradient times this rank's
        share; one flag per parameter (1 if it received a gradient here: MDSR's branches of other
        scales do not, and must stay without one, as in a single process); the loss times the share;
        and BatchNorm's running statistics divided by the number of ranks.  After the sum, every rank
        unpacks the same values.  Returns the global batch's mean loss (a float).
        """
        optimizer.zero_grad()
        with np.errstate(over="ignore", invalid="ignore"):
            loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        running = [(m, name) for m in model.modules() for name in m._buffers if name.startswith("running_")]
        xp = backend.get_array_module(params[0].data)
        sizes = [p.data.size for p in params]
        total = sum(sizes)
        buf = xp.zeros(total + len(params) + 1 + sum(getattr(m, n).size for m, n in running), dtype=np.float32)
        share = np.float32(self.share)
        o = 0
        for i, (p, n) in enumerate(zip(params, sizes)):
            if p.grad is not None:
                buf[o:o + n] = p.grad.ravel() * share
                buf[total + i] = 1.0
            o += n
        o = total + len(params)
        buf[o] = float(loss.item()) * self.share
        o += 1
        for m, name in running:
            b = getattr(m, name)
            buf[o:o + b.size] = b.ravel() / np.float32(self.size)
            o += b.size
        self._all_reduce(buf)
        flags = backend.as_numpy(buf[total:total + len(params) + 1])    # one small copy from a GPU, not one each
        o = 0
        for i, (p, n) in enumerate(zip(params, sizes)):
            p.grad = buf[o:o + n].reshape(p.data.shape) if flags[i] > 0 else None
            o += n
        value = float(flags[-1])
        o = total + len(params) + 1
        for m, name in running:
            b = getattr(m, name)
            b[...] = buf[o:o + b.size].reshape(b.shape)
            o += b.size
        self.step += 1
        return value

    def _all_reduce(self, buf):
        """Sum ``buf`` over the ranks in place (NCCL for GPU arrays, else MPI), within the deadline."""
        t0 = time.perf_counter()
        try:
            if backend.is_cupy_array(buf):
                if self._nccl is not None and self._nccl.comm is not None:
                    self._nccl.all_reduce(buf, self)
                else:                                  # no NCCL in this CuPy: through the host
                    host = backend.as_numpy(buf)
                    self._all_reduce(host)
                    buf[...] = backend.to_device(host, f"cuda:{buf.device.id}")
            elif self.algorithm == "ring":
                ring_allreduce(self.comm, buf, wait=self.wait)
            else:
                self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), "the gradient all-reduce")
        finally:
            self.seconds_reducing += time.perf_counter() - t0

    # ------------------------------------------------------------------ deadlines
    def wait(self, request, what, timeout=None):
        """Poll a non-blocking MPI ``request`` until it completes; :class:`RankLost` after ``timeout`` s.

        Polling sleeps a little between tests (up to 2 ms), so a waiting rank leaves the CPU to the
        ranks that are still computing.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline, pause = time.monotonic() + timeout, 20e-6
        while not request.Test():
            if time.monotonic() > deadline:
                self.lost(what, timeout)
            time.sleep(pause)
            pause = min(2 * pause, 2e-3)

    def lost(self, what, timeout):
        """Raise :class:`RankLost` for a collective that did not complete, and end the job at exit."""
        self.abort_at_exit()
        raise RankLost(f"rank {self.rank} of {self.size}: {what} at step {self.step + 1} got no answer from the other "
                       f"ranks within {timeout:.0f} s, so a rank has died or hangs; stopping every rank. The last "
                       "checkpoint is kept: run the same command again, with the same or another number of ranks, "
                       "to resume (TINYSR_DIST_TIMEOUT sets the deadline)")

    def abort_at_exit(self):
        """End every rank when this process exits (``MPI_Abort``): the others would wait for it forever.

        MPI cannot continue a job after one of its ranks is gone, so the Trainer calls this when any
        error leaves its loop.  The error's message is printed first (Python's exit handlers run
        before MPI is finalised).
        """
        if not self._aborting:
            self._aborting = True
            atexit.register(self._abort)

    def _abort(self):
        # The launcher forwards each rank's output through a pipe and MPI_Abort tears the pipes down:
        # give it a moment to pass on the error message before the job ends.  The job's own line says
        # why every rank stops; the launcher's report of the abort is not always forwarded.
        print(f"tinysr: rank {self.rank} of {self.size} ends the job (MPI_Abort), so that the other ranks do not "
              "wait for it", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_SECONDS)
        self.comm.Abort(1)

    # ------------------------------------------------------------------ rank 0's jobs
    def evaluate_on_root(self, evaluate):
        """Wrap ``evaluate(model) -> metrics`` so that only rank 0 runs it and the others wait for it.

        The others get ``{}``; they wait at a barrier with the longer ``eval_timeout``, so that the
        next step's all-reduce need not allow for an evaluation.
        """
        if evaluate is None:
            return None

        def run(model):
            out = evaluate(model) if self.is_root else {}
            self.wait(self.comm.Ibarrier(), "waiting for rank 0's evaluation", self.eval_timeout)
            return out
        return run

    def check_same_start(self, step, model, rng):
        """Refuse to train unless every rank starts at the same step with the same weights and sampler
        state (a rank that read another checkpoint, or was given another seed, would silently train a
        different model and average it in)."""
        state = b"".join(np.ascontiguousarray(backend.as_numpy(p.data)).tobytes() for p in model.parameters())
        mine = np.array([step, zlib.crc32(state), zlib.crc32(repr(rng.bit_generator.state).encode())],
                        dtype=np.int64)
        both = np.concatenate([mine, -mine])
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, both, op=self.MPI.MAX), "the start-up check")
        if not np.array_equal(both[:3], -both[3:]):
            what = "steps" if both[0] != -both[3] else "weights" if both[1] != -both[4] else "sampler states"
            raise ValueError(f"the {self.size} ranks start from different {what} (rank {self.rank} is at step "
                             f"{step}); every rank must see the same out_dir and seed")
        self.step = int(step)


def ring_allreduce(comm, x, *, wait=None):
    """Sum the float array ``x`` over all ranks of ``comm`` in place, with a ring (Patarasuk & Yuan 2009).

    The ranks form a ring ``0 -> 1 -> ... -> N-1 -> 0`` and ``x`` is cut into ``N`` chunks.

    1. **Reduce-scatter**, ``N - 1`` rounds: in round ``t`` rank ``r`` sends chunk ``(r - t) mod N``
       to its right neighbour and adds the chunk ``(r - t - 1) mod N`` that arrives from its left one.
       Afterwards rank ``r`` holds the complete sum of chunk ``(r + 1) mod N``.
    2. **All-gather**, ``N - 1`` rounds: the completed chunks travel once more round the ring, each
       rank overwriting the chunk it receives.

    Each rank sends ``2 (N - 1) / N`` times the size of ``x`` in all, independent of ``N`` -- why
    NCCL and most MPI libraries use rings (or trees) for large messages.  ``wait(request, what)``
    completes a non-blocking request (a deadline, as :meth:`Communicator.wait`); default: ``Wait``.
    """
    n, r = comm.Get_size(), comm.Get_rank()
    if n == 1:
        return x
    flat = x.reshape(-1)
    bounds = [len(flat) * k // n for k in range(n + 1)]
    chunk = [flat[bounds[k]:bounds[k + 1]] for k in range(n)]
    right, left = (r + 1) % n, (r - 1) % n
    incoming = np.empty(max(len(c) for c in chunk), dtype=flat.dtype)
    wait = wait or (lambda req, what: req.Wait())
    for phase in ("reduce-scatter", "all-gather"):
        for t in range(n - 1):
            if phase == "reduce-scatter":
                send, recv = (r - t) % n, (r - t - 1) % n
            else:
                send, recv = (r + 1 - t) % n, (r - t) % n
            got = incoming[:len(chunk[recv])]
            reqs = [comm.Irecv(got, source=left, tag=t), comm.Isend(chunk[send], dest=right, tag=t)]
            for req in reqs:
                wait(req, f"the ring all-reduce ({phase})")
            if phase == "reduce-scatter":
                chunk[recv] += got
            else:
                chunk[recv][...] = got
    return x


class _Nccl:
    """NCCL (through ``cupy.cuda.nccl``) for GPU buffers; ``comm`` stays None when CuPy has no NCCL.

    Each rank selects the GPU of its local rank before anything is allocated, gets the NCCL id from
    rank 0 over MPI, and joins the NCCL communicator.  NCCL calls are queued on the current stream;
    the wait polls a CUDA event against the same deadline as the MPI path and aborts the NCCL
    communicator on timeout (a lost rank would otherwise leave the kernel spinning).
    """

    def __init__(self, mpi_comm):
        cp = backend.cupy_module()
        self.cp, self.comm = cp, None
        from mpi4py import MPI
        local = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()     # this rank's index on its node
        n_gpus = cp.cuda.runtime.getDeviceCount()
        if local >= n_gpus:
            raise ValueError(f"{local + 1} ranks share this node but it has {n_gpus} GPU(s): start at most one rank "
                             "per GPU (mpiexec -n <GPUs>)")
        cp.cuda.Device(local).use()
        try:
            from cupy.cuda import nccl
        except ImportError:
            return
        if not getattr(nccl, "available", True):
            return
        self.nccl = nccl
        uid = nccl.get_unique_id() if mpi_comm.Get_rank() == 0 else None
        uid = mpi_comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(mpi_comm.Get_size(), uid, mpi_comm.Get_rank())

    def all_reduce(self, buf, owner):
        stream = self.cp.cuda.get_current_stream()
        dtype = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32, np.dtype(np.float64): self.nccl.NCCL_FLOAT64}[buf.dtype]
        ptr = _device_pointer(buf)
        self.comm.allReduce(ptr, ptr, buf.size, dtype, self.nccl.NCCL_SUM, stream.ptr)   # in place
        done = stream.record()
        deadline, pause = time.monotonic() + owner.timeout, 20e-6
        while not done.done:
            if time.monotonic() > deadline:
                self.comm.abort()
                owner.lost("the NCCL gradient all-reduce", owner.timeout)
            time.sleep(pause)
            pause = min(2 * pause, 2e-3)


def _device_pointer(buf):
    """The address of a CuPy array's first element (what NCCL's C interface takes)."""
    return buf.data.ptr
