"""The pure-Python sum of the per-session loops is NumPy's sum, bit for bit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge._npsum import np_sum

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, -0.0, 1e16, -1e16, 1.0, 0.1, 1e-300]),
)


def _bits(x: float) -> int:
    return int(np.float64(x).view(np.int64))


@settings(max_examples=500, deadline=None)
@given(st.lists(FLOATS, max_size=300))
def test_np_sum_is_numpy_sum_bit_for_bit(values):
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are part of the inputs
        expected = np.sum(np.array(values, dtype=np.float64))
    assert _bits(np_sum(values)) == _bits(expected)


@settings(max_examples=20, deadline=None)
@given(st.integers(300, 20_000), st.integers(0, 2**32 - 1))
def test_np_sum_long_inputs(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n) * 10.0 ** rng.integers(-5, 17, n)
    assert _bits(np_sum(x.tolist())) == _bits(np.sum(x))
