"""Sizes of kernels, strides and paddings: one int means the same along height and width.

Imports nothing, so that every op (``conv``, ``pool``) and the layers in :mod:`tinysr.nn` share it.
"""

__all__ = ["pair"]


def pair(v):
    """``(height, width)`` from one int (a square kernel, stride or padding) or from a pair of ints."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)
