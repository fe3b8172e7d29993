"""Compiled readers of big- and little-endian integers in a byte buffer (the kernels' shared vocabulary)."""

from __future__ import annotations

import numpy as np

from inspector.jit import njit


@njit(cache=True, inline="always")
def be16(buf, i):
    return (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])


@njit(cache=True, inline="always")
def le16(buf, i):
    return (np.int64(buf[i + 1]) << 8) | np.int64(buf[i])


@njit(cache=True, inline="always")
def be32(buf, i):
    return (
        (np.int64(buf[i]) << 24)
        | (np.int64(buf[i + 1]) << 16)
        | (np.int64(buf[i + 2]) << 8)
        | np.int64(buf[i + 3])
    )


@njit(cache=True, inline="always")
def le32(buf, i):
    return (
        (np.int64(buf[i + 3]) << 24)
        | (np.int64(buf[i + 2]) << 16)
        | (np.int64(buf[i + 1]) << 8)
        | np.int64(buf[i])
    )
