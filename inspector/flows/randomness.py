"""The one window test: is a byte histogram random, compressed or plain?

Compiled, so the flow kernels label every window and block as it finishes
and ``classify.statistics`` labels the rows of the windows table with the
same code (the same float operations, so the same label).

``random``      chi-square consistent with uniform bytes: z = (chi2 - 255) /
                sqrt(510) below ``Z_RANDOM``. Under uniform bytes chi2 has
                mean 255 and variance 510 (1 - 1/n) for any sample size n, so
                the test is valid on small windows too.
``compressed``  not random, but the bias per byte is small: the collision
                entropy estimate H2 = 8 - log2(1 + (chi2 - 255) / n) is at
                least ``H2_COMPRESSED``. zlib/zstd data scores H2 ~7.93-7.99.
``plain``       not random and strongly biased: text, code, headers, zeros.
"""

from __future__ import annotations

import numpy as np

from inspector.jit import njit

RANDOM, COMPRESSED, PLAIN = 0, 1, 2  # codes into schema.WINDOW_LABELS
Z_RANDOM = 5.0  # one-sided z on chi2(255); ciphertext windows sit at ~0 +- 1
H2_COMPRESSED = 7.0  # collision entropy bound between compressed and plain


@njit(cache=True, inline="always")
def label(n, chi2):
    """Label code of a histogram of ``n`` bytes with this chi-square against uniform bytes."""
    if (chi2 - 255.0) / np.sqrt(510.0) < Z_RANDOM:
        return RANDOM
    excess = max(chi2 - 255.0, 0.0) / max(n, 1.0)
    if 8.0 - np.log2(1.0 + excess) >= H2_COMPRESSED:
        return COMPRESSED
    return PLAIN


@njit(cache=True)
def labels(n, chi2):
    """``label`` of each (bytes, chi2) pair."""
    out = np.empty(n.size, dtype=np.int8)
    for i in range(n.size):
        out[i] = label(n[i], chi2[i])
    return out
