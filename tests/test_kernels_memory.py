"""The CPU kernels' pool of recycled buffers (``tinysr_kernels.cpu.memory``): a large array's memory is
reused only once nothing refers to it any more, never while an array or a view of it is alive."""
import numpy as np
import pytest

from tinysr_kernels.cpu import memory

BIG = (memory.min_bytes // 4 + 7,)          # float32 elements just over the pooled size


@pytest.fixture(autouse=True)
def empty_pool():
    memory.release()
    yield
    memory.release()


def _buffer(a):
    return a.base if a.base is not None else a


def test_a_freed_array_is_reused_and_a_live_one_is_not():
    a = memory.empty(BIG)
    a[:] = 1.0
    address = a.ctypes.data
    b = memory.empty(BIG)                                   # a is alive: a new buffer
    assert b.ctypes.data != address
    del a
    c = memory.empty(BIG)                                   # a is gone: its buffer serves again
    assert c.ctypes.data == address and c.shape == BIG and c.dtype == np.float32 and c.flags.c_contiguous
    assert b.ctypes.data != c.ctypes.data


def test_a_view_keeps_its_buffer_in_use():
    a = memory.empty((16,) + BIG)
    a[:] = 2.0
    view = a[3].reshape(-1)[::5]
    del a
    b = memory.empty((16,) + BIG)
    b[:] = -1.0
    assert (view == 2.0).all()                              # b did not get the view's memory
    del view, b
    assert memory.idle_bytes() >= 16 * BIG[0] * 4


def test_shapes_and_dtypes_are_those_asked_for_and_small_arrays_are_plain():
    small = memory.empty((3, 4), np.float64)
    assert small.shape == (3, 4) and small.dtype == np.float64 and small.base is None and memory.idle_bytes() == 0
    big = memory.empty((2, 3) + BIG, np.float64)
    assert big.shape == (2, 3) + BIG and big.dtype == np.float64 and big.flags.writeable
    address, size = big.ctypes.data, _buffer(big).nbytes
    del big
    half = memory.empty((BIG[0] * 3 + 1,), np.float64)      # just over half the size: the same buffer serves
    assert half.ctypes.data == address and _buffer(half).nbytes == size
    del half
    tiny_share = memory.empty((BIG[0] + 1,), np.float32)    # under half of it: a buffer of its own
    assert tiny_share.nbytes < memory.idle_bytes()


def test_giant_requests_are_plain_arrays():
    giant = memory.empty((memory.max_bytes // 4 + 1,))
    assert giant.base is None and giant.dtype == np.float32
    del giant
    assert memory.idle_bytes() == 0


def test_free_buffers_beyond_the_cap_are_given_back(monkeypatch):
    monkeypatch.setattr(memory, "max_idle_bytes", 3 * memory.min_bytes)
    arrays = [memory.empty((BIG[0] * k,)) for k in (1, 3, 9)]   # three sizes no one of which serves another
    assert memory.idle_bytes() == 0
    del arrays
    memory.empty((1,))                                         # a small request trims nothing
    assert memory.idle_bytes() > 3 * memory.min_bytes
    keep = memory.empty(BIG)                                   # a request trims the free ones to the cap
    assert memory.idle_bytes() <= 3 * memory.min_bytes
    del keep
    memory.release()
    assert memory.idle_bytes() == 0
