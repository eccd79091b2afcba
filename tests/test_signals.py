import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import SignalValidationError
from bridge.preview.signal_grid import signal_grid
from bridge.research import momentum, reversal
from bridge.signals import validate_signals

SESSIONS = pd.to_datetime(["2010-01-04", "2010-01-05", "2010-01-06"])
KNOWN = ["A", "B"]


def _sig(rows):
    return pd.DataFrame(rows, columns=["datetime", "instrument", "score"])


def test_valid_signals_are_normalised_and_sorted():
    out = validate_signals(_sig([("2010-01-05", "B", 1), ("2010-01-04 15:00", "A", 2.5)]),
                           KNOWN, SESSIONS)
    assert list(out.columns) == ["datetime", "instrument", "score"]
    assert out["datetime"].tolist() == list(pd.to_datetime(["2010-01-04", "2010-01-05"]))
    assert out["score"].dtype == np.float64


def test_qlib_pred_frame_is_accepted():
    idx = pd.MultiIndex.from_tuples([(pd.Timestamp("2010-01-04"), "A")], names=["datetime", "instrument"])
    out = validate_signals(pd.DataFrame({"score": [0.3]}, index=idx), KNOWN, SESSIONS)
    assert out.iloc[0].tolist() == [pd.Timestamp("2010-01-04"), "A", 0.3]


@pytest.mark.parametrize("rows,reason,n", [
    ([("2010-01-04", "A", 1.0), ("2010-01-04", "A", 2.0)], "duplicate_key", 2),
    ([("2010-01-04", "A", np.nan), ("2010-01-04", "B", 1.0)], "nan", 1),
    ([("2010-01-04", "A", np.inf)], "nan", 1),
    ([("2010-01-04", "ZZZ", 1.0), ("2010-01-04", "A", 1.0)], "unknown_instrument", 1),
    ([("2010-01-09", "A", 1.0)], "off_calendar", 1),
    ([("not a date", "A", 1.0)], "bad_datetime", 1),
])
def test_bad_signals_raise_typed_errors_listing_rows(rows, reason, n):
    with pytest.raises(SignalValidationError) as e:
        validate_signals(_sig(rows), KNOWN, SESSIONS)
    assert e.value.reason == reason
    assert len(e.value.rows) == n
    assert reason in str(e.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["2010-01-04", "2010-01-05"]),
                          st.sampled_from(["A", "B", "BB", "a", "é"]), st.floats(-5, 5)),
                max_size=8), st.randoms())
def test_rows_in_order_and_shuffled_rows_validate_alike(rows, rnd):
    """Rows already sorted by (datetime, instrument) skip the duplicate hash and the sort; the
    result, or the error, is the one the general path gives."""
    def outcome(frame):
        try:
            return validate_signals(frame)
        except SignalValidationError as e:
            return e.reason, sorted(map(tuple, e.rows.astype(str).to_numpy().tolist()))

    ordered = sorted(rows, key=lambda r: (r[0], r[1]))
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    a, b = outcome(_sig(ordered)), outcome(_sig(shuffled))
    if isinstance(a, tuple):
        assert a == b
    else:
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_missing_column():
    with pytest.raises(SignalValidationError) as e:
        validate_signals(pd.DataFrame({"datetime": [], "instrument": []}))
    assert e.value.field == "score" and e.value.reason == "missing_column"


def test_momentum_and_reversal_hand_checked(panel_factory):
    days = ["2010-01-04", "2010-01-05", "2010-01-06", "2010-01-07"]
    p = panel_factory(days, {"A": [10.0, 11.0, 12.0, 9.0], "B": [20.0, np.nan, 22.0, 30.0]})
    mom = momentum(p, 2)
    got = {(str(d.date()), i): s for d, i, s in mom.itertuples(index=False)}
    # A: 12/10-1, 9/11-1; B: 22/20-1 on 01-06; on 01-07 B's t-2 bar is missing -> no row
    assert got == pytest.approx({("2010-01-06", "A"): 0.2, ("2010-01-07", "A"): 9 / 11 - 1,
                                 ("2010-01-06", "B"): 0.1})
    rev = reversal(p, 2)
    assert rev["score"].tolist() == pytest.approx([-v for v in mom["score"]])


def test_signal_dated_t_trades_next_session(panel_factory):
    p = panel_factory(["2010-01-04", "2010-01-05", "2010-01-06"], {"A": [1.0, 1.0, 1.0]})
    sig = _sig([("2010-01-01", "A", 5.0), ("2010-01-04", "A", 1.0), ("2010-01-05", "A", 2.0),
                ("2010-01-06", "A", 3.0)])
    sig["datetime"] = pd.to_datetime(sig["datetime"])
    grid, counts = signal_grid(p, sig)
    assert grid[:, 0].tolist() == [5.0, 1.0, 2.0]          # shifted by one session
    assert counts == {"rows": 4, "used": 3, "superseded": 0, "after_last_session": 1}


def test_signal_grid_latest_wins_over_a_missing_session(panel_factory):
    # 01-05 has no bars: signals of 01-04 and 01-05 both map to 01-06; the later is used
    p = panel_factory(["2010-01-04", "2010-01-06"], {"A": [1.0, 1.0]})
    sig = _sig([("2010-01-04", "A", 1.0), ("2010-01-05", "A", 2.0)])
    sig["datetime"] = pd.to_datetime(sig["datetime"])
    grid, counts = signal_grid(p, sig)
    assert grid[1, 0] == 2.0 and counts["superseded"] == 1


def test_signal_grid_unknown_instrument(panel_factory):
    p = panel_factory(["2010-01-04"], {"A": [1.0]})
    sig = _sig([(pd.Timestamp("2010-01-04"), "Q", 1.0)])
    with pytest.raises(SignalValidationError, match="unknown_instrument"):
        signal_grid(p, sig)
