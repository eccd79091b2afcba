"""NumPy's float64 sum, in pure Python, for the short lists of the per-session loops.

``float(np.sum(np.array(values)))`` costs ~2 us of call overhead for a handful of values; the loops
that run once per session on a small universe add a few such sums per session. Float addition is
not associative, so a plain left-to-right sum can differ from NumPy's in the last bits. This module
reproduces NumPy's order exactly: the reduction starts from the identity 0.0 and adds the pairwise
sum of the values (fewer than 8 values: left to right; up to 128: eight interleaved partial sums
combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the remainder left to right;
more: split in two halves at a multiple of 8 and recurse). ``tests/test_npsum.py`` checks it
against ``numpy.sum`` bit for bit on random inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

_BLOCK = 128  # NumPy's PW_BLOCKSIZE


def np_sum(values: Sequence[float]) -> float:
    """Sum of ``values`` in NumPy's order: bit-identical to ``float(numpy.sum(values))``.

    Parameters
    ----------
    values : sequence of float
        Python floats (or float64 scalars).

    Returns
    -------
    float
    """
    return 0.0 + _pairwise(values, 0, len(values))


def _pairwise(x: Sequence[float], lo: int, hi: int) -> float:
    n = hi - lo
    if n < 8:
        res = -0.0
        for i in range(lo, hi):
            res += x[i]
        return res
    if n > _BLOCK:
        half = n // 2
        half -= half % 8
        return _pairwise(x, lo, lo + half) + _pairwise(x, lo + half, hi)
    r0, r1, r2, r3, r4, r5, r6, r7 = x[lo:lo + 8]
    end = hi - n % 8
    for i in range(lo + 8, end, 8):
        r0 += x[i]
        r1 += x[i + 1]
        r2 += x[i + 2]
        r3 += x[i + 3]
        r4 += x[i + 4]
        r5 += x[i + 5]
        r6 += x[i + 6]
        r7 += x[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(end, hi):
        res += x[i]
    return res
