import math
from datetime import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ConfigError, ValidationError
from bridge.planner.schedule import DEFAULT_US_PROFILE, pov, twap, vwap

EV = pd.DataFrame({"start": ["09:30", "10:00", "10:30"], "end": ["10:00", "10:30", "11:00"],
                   "expected_volume": [10_000.0, 5_000.0, 20_000.0]})


def buckets(n: int, minutes: int = 10) -> tuple[list[time], list[time]]:
    edges = [time(9 + (30 + k * minutes) // 60, (30 + k * minutes) % 60) for k in range(n + 1)]
    return edges[:-1], edges[1:]


# --- hand-checked numbers ---------------------------------------------------------------------

def test_twap_lots_with_remainder_in_last_slice():
    s = twap(1000, "09:30", "16:00", 3, trade_unit=100)
    assert s["quantity"].tolist() == [300.0, 300.0, 400.0]
    # 390 minutes / 3 = 130 minutes each
    assert s["start"].tolist() == [time(9, 30), time(11, 40), time(13, 50)]
    assert s["end"].tolist() == [time(11, 40), time(13, 50), time(16, 0)]
    assert s["slice"].tolist() == [0, 1, 2]
    assert s.dtypes.to_dict() == {"slice": np.int64, "start": object, "end": object,
                                  "quantity": np.float64}


def test_twap_whole_shares_and_uneven_times():
    s = twap(1000, time(9, 30), time(16, 0), 7)
    assert s["quantity"].tolist() == [142.0] * 6 + [148.0]    # 6 * 142 = 852, 1000 - 852
    assert s["end"].iloc[0] == time(10, 25, 42, 857142)         # 390 min / 7, to the microsecond


def test_twap_fractional_and_single_slice():
    s = twap(1000, "09:30", "16:00", 3, trade_unit=None)
    assert s["quantity"].tolist() == pytest.approx([1000 / 3] * 3)
    assert math.fsum(s["quantity"]) == pytest.approx(1000, rel=1e-12)
    one = twap(500, "10:00", "10:05", 1)
    assert one[["start", "end", "quantity"]].values.tolist() == [[time(10), time(10, 5), 500.0]]


def test_vwap_default_profile_in_lots():
    s = vwap(10_000, DEFAULT_US_PROFILE, trade_unit=100)
    # 100 lots on the cumulative share, floored: each slice within one lot of its share
    lots = (s["quantity"] / 100).to_numpy()
    exact = 100 * DEFAULT_US_PROFILE["volume_share"].to_numpy()
    assert lots.sum() == 100 and (abs(lots - exact) < 1 + 1e-9).all()
    assert lots[0] == 12 and lots[-1] >= 14
    assert s["start"].tolist() == DEFAULT_US_PROFILE["start"].tolist()


def test_vwap_string_and_time_profiles_agree_and_zero_buckets_stay():
    prof = pd.DataFrame({"start": ["09:30", "10:00", "10:30"], "end": ["10:00", "10:30", "11:00"],
                         "volume_share": [0.25, 0.0, 0.75]})
    s = vwap(1001, prof)
    assert s["quantity"].tolist() == [250.0, 0.0, 751.0]       # floor(250.25) = 250, leftovers
    as_time = prof.assign(start=[time(9, 30), time(10), time(10, 30)],
                          end=[time(10), time(10, 30), time(11)])
    pd.testing.assert_frame_equal(vwap(1001, as_time), s)


def test_pov_incomplete_parent_reports_remainder():
    s = pov(5000, EV, 0.1, trade_unit=100)
    assert s["quantity"].tolist() == [1000.0, 500.0, 2000.0]
    assert s["remaining"].tolist() == [4000.0, 3500.0, 1500.0]
    assert s.attrs["remainder"] == 1500.0


def test_pov_complete_parent_stops_and_floors_to_lots():
    s = pov(1200, EV, 0.1, trade_unit=100)
    assert s["quantity"].tolist() == [1000.0, 200.0, 0.0]
    assert s.attrs["remainder"] == 0.0
    odd = pov(1000, EV.assign(expected_volume=[1999.0, 0.0, 9.0]), 0.1, trade_unit=100)
    assert odd["quantity"].tolist() == [100.0, 0.0, 0.0]      # 199.9 -> 1 lot; 0.9 -> 0 lots
    assert odd.attrs["remainder"] == 900.0
    full = pov(30_000, EV, 1.0, trade_unit=None)
    assert full["quantity"].tolist() == [10_000.0, 5_000.0, 15_000.0]


# --- the default profile ----------------------------------------------------------------------

def test_default_profile_sums_to_one_and_is_u_shaped():
    share = DEFAULT_US_PROFILE["volume_share"].to_numpy()
    assert len(share) == 13 and math.fsum(share) == pytest.approx(1.0, abs=1e-9)
    assert DEFAULT_US_PROFILE["start"].tolist() == buckets(13, 30)[0]
    assert DEFAULT_US_PROFILE["end"].iloc[-1] == time(16, 0)
    low = int(np.argmin(share))
    assert 0 < low < 12
    assert (np.diff(share[:low + 1]) <= 0).all() and (np.diff(share[low:]) >= 0).all()
    assert share[-1] == share.max() and share[0] > share[1:-1].max()   # heaviest at the close


def test_default_profile_is_labelled_stylised():
    from bridge.planner import schedule

    assert "stylised" in schedule.__doc__.lower() and "not measured" in schedule.__doc__
    csv = (schedule.__file__.rsplit("/", 1)[0]) + "/data/us_intraday_profile.csv"
    with open(csv, encoding="utf-8") as f:
        first = f.readline()
    assert first.startswith("#") and "illustrative" in first and "not measured" in first


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"quantity": 0}, "quantity"), ({"quantity": -100}, "quantity"),
    ({"quantity": float("nan")}, "quantity"), ({"quantity": float("inf")}, "quantity"),
    ({"quantity": "100"}, "quantity"), ({"quantity": 150, "trade_unit": 100}, "quantity"),
    ({"n_slices": 0}, "n_slices"), ({"n_slices": 2.5}, "n_slices"),
    ({"n_slices": True}, "n_slices"),
    ({"trade_unit": 0}, "trade_unit"), ({"trade_unit": -1}, "trade_unit"),
    ({"trade_unit": float("nan")}, "trade_unit"),
    ({"start": "9h30"}, "start"), ({"end": 16}, "end"),
    ({"end": "09:30"}, "end"), ({"end": "09:00"}, "end"),
])
def test_twap_config_errors_name_the_parameter(kwargs, field):
    args = {"quantity": 1000, "start": "09:30", "end": "16:00", "n_slices": 3} | kwargs
    with pytest.raises(ConfigError, match=field):
        twap(**args)


def test_twap_needs_room_for_every_slice():
    with pytest.raises(ConfigError, match="end"):
        twap(10, time(9, 30), time(9, 30, 0, 2), 3)     # 2 microseconds, 3 slices


def _profile(**cols) -> pd.DataFrame:
    base = {"start": ["09:30", "10:00"], "end": ["10:00", "10:30"], "volume_share": [0.5, 0.5]}
    return pd.DataFrame(base | cols)


@pytest.mark.parametrize("profile, field, reason", [
    (_profile().drop(columns="volume_share"), "volume_share", "missing_column"),
    (_profile().drop(columns="start"), "start", "missing_column"),
    (_profile().iloc[:0], "volume_share", "empty"),
    (_profile(start=["9:30am", "10:00"]), "start", "bad_time"),
    (_profile(end=["10:00", None]), "end", "bad_time"),
    (_profile(end=["09:30", "10:30"]), "end", "not_after_start"),
    (_profile(start=["09:30", "09:45"]), "start", "overlap"),
    (_profile(start=["10:00", "09:30"], end=["10:30", "10:00"]), "start", "overlap"),
    (_profile(volume_share=[0.5, float("nan")]), "volume_share", "not_finite"),
    (_profile(volume_share=[1.5, -0.5]), "volume_share", "negative"),
    (_profile(volume_share=[0.5, 0.4]), "volume_share", "sum"),
    (_profile(volume_share=[0.5, 0.5 + 2e-9]), "volume_share", "sum"),
])
def test_vwap_profile_errors_name_the_column(profile, field, reason):
    with pytest.raises(ValidationError) as err:
        vwap(1000, profile)
    assert (err.value.field, err.value.reason) == (field, reason)
    assert field in str(err.value)


def test_vwap_tolerates_float_noise_in_the_sum_and_checks_its_arguments():
    assert vwap(1000, _profile(volume_share=[0.5, 0.5 + 5e-10]))["quantity"].sum() == 1000
    with pytest.raises(ConfigError, match="profile"):
        vwap(1000, {"start": ["09:30"], "end": ["10:00"], "volume_share": [1.0]})
    with pytest.raises(ConfigError, match="quantity"):
        vwap(0, DEFAULT_US_PROFILE)


@pytest.mark.parametrize("participation", [0, -0.1, 1.01, float("nan"), "0.1", None])
def test_pov_participation_must_be_in_unit_interval(participation):
    with pytest.raises(ConfigError, match="participation"):
        pov(1000, EV, participation)


@pytest.mark.parametrize("frame, field, reason", [
    (EV.assign(expected_volume=[1.0, -1.0, 1.0]), "expected_volume", "negative"),
    (EV.assign(expected_volume=["a", "1", "2"]), "expected_volume", "not_finite"),
    (EV.drop(columns="expected_volume"), "expected_volume", "missing_column"),
    (EV.assign(end=["10:00", "10:30", "10:30"]), "end", "not_after_start"),
])
def test_pov_expected_volume_errors(frame, field, reason):
    with pytest.raises(ValidationError) as err:
        pov(1000, frame, 0.1)
    assert (err.value.field, err.value.reason) == (field, reason)


def test_pov_config_errors():
    with pytest.raises(ConfigError, match="quantity"):
        pov(-1, EV, 0.1)
    with pytest.raises(ConfigError, match="expected_volume"):
        pov(1000, [1, 2, 3], 0.1)


# --- properties -------------------------------------------------------------------------------

units = st.sampled_from([1, 100, None])


def parent(unit, lots):
    return float(lots) if unit is None else float(lots * unit)


def check_children(s, quantity, unit, exact=True):
    q = s["quantity"].to_numpy()
    assert (q >= 0).all()
    if unit is not None:
        assert (q % unit == 0).all()
    if exact:   # to the share in lots; to float rounding when fractional
        assert (q.sum() == quantity if unit else math.fsum(q) == pytest.approx(quantity, rel=1e-12))


@settings(max_examples=200, deadline=None)
@given(lots=st.integers(1, 10**6), unit=units, n=st.integers(1, 60))
def test_twap_properties(lots, unit, n):
    quantity = parent(unit, lots)
    s = twap(quantity, "09:30", "16:00", n, trade_unit=unit)
    assert len(s) == n
    check_children(s, quantity, unit)
    assert s["start"].iloc[0] == time(9, 30) and s["end"].iloc[-1] == time(16, 0)
    assert s["start"].iloc[1:].tolist() == s["end"].iloc[:-1].tolist()
    assert s["quantity"].iloc[:-1].nunique() <= 1       # equal slices; only the last differs
    pd.testing.assert_frame_equal(s, twap(quantity, "09:30", "16:00", n, trade_unit=unit))


@settings(max_examples=200, deadline=None)
@given(lots=st.integers(1, 10**6), unit=units,
       weights=st.lists(st.floats(0, 1), min_size=1, max_size=39).filter(lambda w: sum(w) > 0))
def test_vwap_properties(lots, unit, weights):
    quantity = parent(unit, lots)
    starts, ends = buckets(len(weights))
    w = np.array(weights)
    prof = pd.DataFrame({"start": starts, "end": ends, "volume_share": w / w.sum()})
    s = vwap(quantity, prof, trade_unit=unit)
    assert len(s) == len(weights)
    check_children(s, quantity, unit)
    if unit is not None:    # cumulative rounding: every slice within one lot of its share
        exact = quantity * prof["volume_share"]
        assert ((s["quantity"] - exact).abs() <= unit + 1e-6 * quantity).all()
    pd.testing.assert_frame_equal(s, vwap(quantity, prof, trade_unit=unit))


@settings(max_examples=200, deadline=None)
@given(lots=st.integers(1, 10**5), unit=units,
       volume=st.lists(st.floats(0, 1e7), min_size=1, max_size=39),
       participation=st.floats(0, 1, exclude_min=True))
def test_pov_properties(lots, unit, volume, participation):
    quantity = parent(unit, lots)
    starts, ends = buckets(len(volume))
    ev = pd.DataFrame({"start": starts, "end": ends, "expected_volume": volume})
    s = pov(quantity, ev, participation, trade_unit=unit)
    q, cap = s["quantity"].to_numpy(), participation * np.array(volume)
    check_children(s, quantity, unit, exact=False)
    assert (q <= cap * (1 + 1e-12) + 1e-9).all()
    rem = s.attrs["remainder"]
    assert rem == s["remaining"].iloc[-1] and rem >= 0
    assert (np.diff(s["remaining"]) <= 0).all()
    if unit is None:
        assert math.fsum(q) + rem == pytest.approx(quantity, rel=1e-12)
    else:
        assert q.sum() + rem == quantity and rem % unit == 0
        if rem > 0:         # the parent is short only because every slice is at its cap
            assert (q == np.floor(cap / unit + 1e-9) * unit).all()
    pd.testing.assert_frame_equal(s, pov(quantity, ev, participation, trade_unit=unit))
