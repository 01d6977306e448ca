"""Who owns the cores: OpenBLAS (the GEMMs) or Numba (everything around them).

Both libraries keep a pool of worker threads.  After a parallel region their workers do not sleep at
once: OpenBLAS's busy-wait for a while and libgomp (Numba's default "omp" threading layer) spins too.
On a machine with few cores, a Numba kernel that starts right after a GEMM then shares its cores with
OpenBLAS threads that are only waiting for work, and the reverse.  A convolution's backward alternates
Numba kernels and GEMMs, so every switch pays for the other pool's spinning: with both pools at full
size a training step runs several times slower (``benchmarks/README.md``, "Measurements behind the
kernel design", has the numbers).

So tinysr decides who owns the cores, once, before the first kernel runs:

* Numba owns the parallel loops, on its OpenMP layer (libgomp) when that loads, else "workqueue".
  Its idle workers sleep (``OMP_WAIT_POLICY=PASSIVE``, see :func:`_launch_with_passive_openmp`).
  It runs the same training steps 10-20% faster than workqueue, idle and beside a busy process.
  When another library has already loaded its own libgomp (PyTorch imported first), Numba's layer is
  loaded with ``RTLD_DEEPBIND`` so that it still gets a runtime whose workers sleep (see
  :func:`_foreign_openmp_in_scope`).
  (``NUMBA_THREADING_LAYER`` set by the user wins: a program that forks worker processes after
  tinysr has run a kernel should choose ``workqueue``, as GNU OpenMP is not fork-safe.)
* NumPy's OpenBLAS runs single-threaded (it has no non-spinning mode that can be set after it is
  loaded), and :func:`gemm` spreads one large GEMM over :func:`get_num_threads` Python threads by
  splitting the output's columns -- NumPy releases the GIL inside BLAS, and idle Python threads block.

* Waking a sleeping worker is not free: tens of microseconds, as much as a small kernel.  Work made
  of many small steps (the batched im2col path of FSRCNN's and SRCNN's training patches) therefore goes
  to :func:`run_parallel` in one share per thread, and the parallel kernels inside each share run on that
  thread alone (Numba's thread count is per thread).

:func:`set_num_threads` sets both (what the benchmark uses to run tinysr and PyTorch on the same
thread count); :func:`info` says what is in effect.  ``TINYSR_BLAS_THREADS=keep`` leaves OpenBLAS's
own threading alone.
"""
import contextvars
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
# Numba's argument typing reads ``np.ma``, which NumPy imports lazily on first use; two pool threads making
# their first kernel call at once can both start that import and recurse until RecursionError.  Importing
# it here, before any thread exists, removes the race.
import numpy.ma  # noqa: F401,E402

_configured = False
_threads = os.cpu_count() or 1
_pool = None
_nests = None      # see parallel_kernels_nest


def configure():
    """Choose Numba's threading layer before its first parallel kernel runs (idempotent)."""
    global _configured, _threads
    if _configured:
        return
    import numba
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # Only effective before the first parallel launch; harmless otherwise.  "default" walks the
        # priority list and takes the first layer that loads (libgomp is not on every machine).
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
        numba.config.THREADING_LAYER = "default"
        _launch_with_passive_openmp()
    _threads = min(_threads, numba.config.NUMBA_NUM_THREADS)
    if os.environ.get("TINYSR_BLAS_THREADS", "").lower() != "keep":
        _numpy_blas().limit(limits=1)
    _configured = True


def _launch_with_passive_openmp():
    """Start Numba's thread pool with GNU OpenMP's idle workers sleeping, not spinning.

    libgomp reads ``OMP_WAIT_POLICY`` once, when Numba loads it, so the variable is set just for that
    moment (and left alone if the user set it).  Spinning workers are a little faster on an idle
    machine but collapse when another process wants a core: beside one busy process an FSRCNN step
    runs about five times slower with spinning workers than with sleeping ones.
    """
    import numba
    try:
        from numba.np.ufunc.parallel import _launch_threads  # Numba's own (private) pool start-up
    except ImportError:
        # A Numba without it: keep the layer whose idle workers always sleep.
        numba.config.THREADING_LAYER = "workqueue"
        return
    if "OMP_WAIT_POLICY" in os.environ:
        _launch_threads()
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    old_flags = sys.getdlopenflags()
    if _foreign_openmp_in_scope():
        sys.setdlopenflags(old_flags | os.RTLD_DEEPBIND)
    try:
        _launch_threads()
    finally:
        del os.environ["OMP_WAIT_POLICY"]
        sys.setdlopenflags(old_flags)


def _foreign_openmp_in_scope():
    """Whether Numba's OpenMP layer must be loaded with ``RTLD_DEEPBIND`` to get a runtime of its own.

    PyTorch imported *before* tinysr puts its bundled libgomp into the process's global symbol scope,
    initialised with the default wait policy (idle workers spin).  Numba's OpenMP layer, loaded later,
    then binds its ``GOMP_*`` calls to that copy rather than to the system libgomp it was linked against
    (``LD_DEBUG=bindings`` shows it), and the ``OMP_WAIT_POLICY`` set above comes too late: EDSR-baseline
    inference then runs about 1.4x slower just because ``import torch`` came first -- which is how
    ``benchmarks/cpu.py`` and many notebooks start.
    ``RTLD_DEEPBIND`` makes the layer resolve symbols in its own dependencies first, so it gets the
    system libgomp, loaded fresh and reading the passive policy, while PyTorch keeps its own.
    True when a libgomp is already mapped (Linux) and the platform has ``RTLD_DEEPBIND``.
    """
    if not hasattr(os, "RTLD_DEEPBIND"):
        return False
    try:
        with open("/proc/self/maps") as f:
            return any("libgomp" in line for line in f)
    except OSError:
        return False


def _numpy_blas():
    """NumPy's and SciPy's BLAS (not PyTorch's: its threads are PyTorch's business)."""
    c = _blas_controller().select(user_api="blas")
    libs = [lib for lib in c.lib_controllers if "numpy" in lib.filepath or "scipy" in lib.filepath]
    c.lib_controllers = libs
    return c


def get_num_threads():
    """Threads tinysr's kernels and GEMMs use."""
    return _threads


def gemm(a, b, out):
    """``out[...] = a @ b`` (2-D float32), split by output columns over :func:`get_num_threads` threads.

    Each part is a single-threaded OpenBLAS sgemm on a column slice of ``b`` and ``out``; small GEMMs
    (fewer than 256 columns per thread) run in one piece.
    """
    n = out.shape[1]
    t = min(_threads, n // 256)
    if t <= 1:
        return np.matmul(a, b, out=out)
    cuts = [n * i // t for i in range(t + 1)]
    run_parallel(lambda i: np.matmul(a, b[:, cuts[i]:cuts[i + 1]], out=out[:, cuts[i]:cuts[i + 1]]), range(t))
    return out


def run_parallel(fn, args):
    """Call ``fn(arg)`` for every ``arg``: the first in this thread, the others on tinysr's thread pool.

    For work that releases the GIL (BLAS calls, ``nogil`` Numba kernels, NumPy ufuncs on large
    arrays); pass at most :func:`get_num_threads` arguments.  Exceptions propagate, and every call sees
    the caller's context variables (``np.errstate`` among them).  The parallelism is
    here, so a parallel Numba kernel called inside ``fn`` runs on the calling thread alone (Numba's
    thread count is per thread; it is set to 1 for the call and restored after).
    """
    args = list(args)
    if len(args) <= 1:
        for a in args:
            fn(a)
        return
    global _pool
    if _pool is None or _pool._max_workers < len(args) - 1:
        _pool = ThreadPoolExecutor(max_workers=len(args) - 1, thread_name_prefix="tinysr-gemm")
    # Each task runs in a copy of the caller's context: NumPy keeps ``np.errstate`` in a context
    # variable, and a pool thread's own (empty) context would warn about the very overflow the caller
    # chose to ignore (a diverging training step then printed "invalid value encountered in matmul").
    futures = [_pool.submit(contextvars.copy_context().run, _alone, fn, a) for a in args[1:]]
    _alone(fn, args[0])
    for f in futures:
        f.result()


def parallel_kernels_nest():
    """Whether parallel Numba kernels may be called from :func:`run_parallel`'s threads at the same time.

    True on the OpenMP and TBB layers; Numba's "workqueue" layer aborts the process on concurrent launches
    (even with one thread each), so callers keep such kernels out of ``run_parallel`` there.
    """
    global _nests
    if _nests is None:
        import numba
        configure()
        numba.get_num_threads()      # starts the layer if no parallel kernel has run yet (a user-chosen one)
        _nests = numba.threading_layer() in ("omp", "tbb")
    return _nests


def _alone(fn, arg):
    """``fn(arg)`` with Numba's parallel kernels confined to this thread."""
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        fn(arg)
    finally:
        numba.set_num_threads(before)


def _blas_controller():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def set_num_threads(n):
    """Use ``n`` threads for Numba's parallel loops and for tinysr's GEMMs (see :func:`gemm`)."""
    import numba
    global _threads
    configure()
    _threads = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(_threads)


def info():
    """A dict: Numba's threading layer and thread count, and each BLAS library's thread count."""
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = numba.config.THREADING_LAYER
    blas = [{"library": p["internal_api"], "threads": p["num_threads"], "file": os.path.basename(p["filepath"])}
            for p in _blas_controller().info() if p["user_api"] == "blas"]
    return {"numba_layer": layer, "numba_threads": numba.get_num_threads(), "gemm_threads": _threads, "blas": blas,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
