"""A-share rules on real data: 002032.SZ (Supor, SZSE SME board, +-10%), daily, 2004-08-17 ..
2016-08-17, unadjusted (tests/fixtures/002032_SZ.csv, from stockstats 0.6.10, BSD-3; see
tests/fixtures/README.md).

What the exchange refuses, found in the real bars and then refused by the planner:
limit-up / limit-down closes (checked against an independent plain-pandas computation with
decimal half-up rounding), one-price limit sessions, ex-rights gaps (which must not become false
limit flags), then bridge.planner.plan_orders with bridge.market.rules.CN on real sessions:
limits, T+1, lots, odd lots and fees. Fees are today's CN schedule (2.5 bps commission, 5 CNY
minimum, 5 bps stamp duty on sells since 2023-08-28) applied to the historic prices.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from bridge.market.limits import ex_rights_gaps, limit_flags
from bridge.market.rules import CN
from bridge.planner import plan_orders

FIXTURE = Path(__file__).parent / "fixtures" / "002032_SZ.csv"
INSTRUMENT = "002032.SZ"

# What the fixture holds, found by this test and by the independent computation below.
LIMIT_UP_DATES = [
    "2006-05-15", "2006-05-16", "2006-05-26", "2006-08-11", "2007-04-12", "2007-05-31",
    "2007-12-28", "2008-01-02", "2008-01-15", "2008-04-11", "2008-04-24", "2008-07-08",
    "2008-07-09", "2008-07-11", "2008-09-19", "2013-04-26", "2015-07-09", "2015-07-10",
    "2015-07-28", "2015-10-26",
]
LIMIT_DOWN_DATES = [
    "2006-05-23", "2008-03-31", "2008-04-01", "2008-04-02", "2008-04-09", "2008-09-08",
    "2015-06-26", "2015-08-18", "2015-08-24", "2015-09-14",
]
ONE_PRICE_DATES = ["2008-03-31"]
GAP_DATES = {  # session -> trigger
    "2005-07-01": "open", "2005-08-08": "range", "2008-03-28": "open",
    "2010-05-27": "open", "2012-05-17": "open", "2015-05-29": "range",
}


def _d(s: str) -> date:
    return date.fromisoformat(s)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    """The fixture as bridge bars: datetime, instrument, open, high, low, close, volume (shares)."""
    raw = pl.read_csv(FIXTURE)
    return raw.select(
        pl.col("date").cast(pl.Utf8).str.to_date("%Y%m%d").alias("datetime"),
        pl.lit(INSTRUMENT).alias("instrument"),
        "open", "high", "low", "close",
        pl.col("volume").cast(pl.Float64),
        pl.col("amount").alias("amount_cny"),
    )


@pytest.fixture(scope="module")
def flags(bars) -> pl.DataFrame:
    return limit_flags(bars, CN)


@pytest.fixture(scope="module")
def gaps(bars) -> pl.DataFrame:
    return ex_rights_gaps(bars, CN)


def _half_up(x: float, factor: str) -> float:
    """``x * factor`` rounded half-up to 0.01, in decimal arithmetic (no float rounding)."""
    return float((Decimal(str(x)) * Decimal(factor)).quantize(Decimal("0.01"), ROUND_HALF_UP))


@pytest.fixture(scope="module")
def independent() -> pd.DataFrame:
    """Plain pandas from the raw CSV, sharing no code with bridge: the band of the previous
    close (+-10%, decimal half-up to 0.01), sessions trading outside it set aside, then closes
    at the band."""
    df = pd.read_csv(FIXTURE)
    df["datetime"] = pd.to_datetime(df["date"].astype(str), format="%Y%m%d").dt.date
    df = df.sort_values("datetime").reset_index(drop=True)
    prev = df["close"].shift(1)
    df["up"] = [np.nan if pd.isna(p) else _half_up(p, "1.1") for p in prev]
    df["down"] = [np.nan if pd.isna(p) else _half_up(p, "0.9") for p in prev]
    df["prev"] = prev
    outside = (df["high"] > df["up"]) | (df["low"] < df["down"])
    normal = prev.notna() & ~outside
    df["gap"] = outside
    df["lu"] = normal & (df["close"] >= df["up"])
    df["ld"] = normal & (df["close"] <= df["down"])
    df["one"] = (df["lu"] | df["ld"]) & (df["high"] == df["low"])
    return df


def _row(flags: pl.DataFrame, day: str) -> dict:
    rows = flags.filter(pl.col("datetime") == _d(day))
    assert rows.height == 1, day
    return rows.row(0, named=True)


def _dates(frame: pl.DataFrame, col: str) -> list[str]:
    return [d.isoformat() for d in frame.filter(pl.col(col))["datetime"].to_list()]


# --------------------------------------------------------------------------------------------
# limit flags and ex-rights gaps on the real bars


def test_fixture_is_the_stockstats_file(bars):
    assert bars.height == 2813
    assert bars["datetime"].min() == _d("2004-08-17")
    assert bars["datetime"].max() == _d("2016-08-17")
    assert bars["datetime"].is_unique().all()
    assert CN.limit_pct(INSTRUMENT, on=_d("2010-01-04")) == 0.10   # SME board: +-10%


def test_limit_closes_match_an_independent_computation(flags, independent):
    up, down, one = _dates(flags, "limit_up"), _dates(flags, "limit_down"), _dates(
        flags, "one_price_limit")
    print(f"\n002032.SZ 2004-08-17..2016-08-17, {flags.height} sessions: {len(up)} limit-up "
          f"closes, {len(down)} limit-down closes, {len(one)} one-price limit sessions")
    print("limit-up:  ", ", ".join(up))
    print("limit-down:", ", ".join(down))
    print("one-price: ", ", ".join(one))
    ind = independent
    assert up == [d.isoformat() for d in ind.loc[ind["lu"], "datetime"]]
    assert down == [d.isoformat() for d in ind.loc[ind["ld"], "datetime"]]
    assert one == [d.isoformat() for d in ind.loc[ind["one"], "datetime"]]
    assert (len(up), len(down), len(one)) == (20, 10, 1)
    assert up == LIMIT_UP_DATES and down == LIMIT_DOWN_DATES and one == ONE_PRICE_DATES
    # the limit prices themselves agree with decimal half-up on every normal session
    normal = flags.filter(pl.col("prev_close").is_not_null())
    merged = normal.select("datetime", "limit_up_price", "limit_down_price").to_pandas().merge(
        ind[["datetime", "up", "down"]].assign(datetime=lambda x: pd.to_datetime(x["datetime"])),
        on="datetime")
    assert len(merged) == flags.height - 1 - len(GAP_DATES)
    assert np.abs(merged["limit_up_price"] - merged["up"]).max() < 1e-9
    assert np.abs(merged["limit_down_price"] - merged["down"]).max() < 1e-9


def test_known_limit_sessions(flags):
    # 2008-09-19, a market-wide limit-up day: 11.70 * 1.1 = 12.87, opened and closed there
    r = _row(flags, "2008-09-19")
    assert (r["prev_close"], r["limit_up_price"], r["close"], r["open"]) == (11.70, 12.87, 12.87,
                                                                              12.87)
    assert r["limit_up"] and not r["one_price_limit"] and not r["ex_rights"]   # low 12.41
    # half-up matters: 14.85 * 1.1 = 16.335 -> 16.34 (the close), not 16.33
    r = _row(flags, "2006-08-11")
    assert (r["limit_up_price"], r["close"], r["limit_up"]) == (16.34, 16.34, True)
    # after the gap in the bars (2008-01-18 .. 03-27) and the ex-rights 03-28: one-price
    # limit-down on 03-31
    # (22.92 * 0.9 = 20.628 -> 20.63, high == low == 20.63), then two more limit-down closes
    r = _row(flags, "2008-03-31")
    assert (r["limit_down_price"], r["high"], r["low"]) == (20.63, 20.63, 20.63)
    assert r["limit_down"] and r["one_price_limit"]
    assert _row(flags, "2008-04-01")["limit_down_price"] == 18.57   # 20.63 * 0.9 = 18.567
    assert _row(flags, "2008-04-02")["limit_down_price"] == 16.71   # 18.57 * 0.9 = 16.713
    # 2015 crash: limit-down on the "Black Monday" of 2015-08-24
    assert _row(flags, "2015-08-24")["limit_down"]
    # a session that reaches the limit intraday and falls back is not flagged at the close
    touched = flags.filter((pl.col("high") >= pl.col("limit_up_price") - 1e-6)
                           & ~pl.col("limit_up"))
    print(f"\nsessions touching the upper limit intraday but closing below it: {touched.height}")
    assert touched.height > 0 and not touched["limit_up"].any()


def test_naive_float_rounding_would_misprice_the_limits(flags, independent):
    """np.round(prev * 1.1, 2) rounds half to even after scaling (9.55 * 1.1 -> 1050.5 -> 1050:
    10.50); the exchange rounds half up (10.51): wrong limit prices on many sessions, though on
    this stock no limit close changes."""
    prev = independent["prev"]
    naive_up, naive_down = np.round(prev * 1.1, 2), np.round(prev * 0.9, 2)
    off_up = int(((naive_up != independent["up"]) & prev.notna()).sum())
    off_down = int(((naive_down != independent["down"]) & prev.notna()).sum())
    print(f"\nnaive float rounding differs from half-up on {off_up} upper / {off_down} lower "
          "limit prices (e.g. 2004-09-15: 9.55 * 1.1 -> 10.50 naive, 10.51 exchange)")
    assert off_up == 101 and off_down == 146
    i = independent.index[independent["datetime"] == _d("2004-09-15")][0]
    assert (naive_up[i], independent.loc[i, "up"]) == (10.50, 10.51)
    assert _row(flags, "2004-09-15")["limit_up_price"] == 10.51
    close = independent["close"]
    assert ((close >= naive_up) == (close >= independent["up"])).all()
    assert ((close <= naive_down) == (close <= independent["down"])).all()


def test_ex_rights_gaps(gaps, flags, independent):
    print("\nex-rights gaps (the band of the unadjusted previous close did not hold):")
    print(gaps.select("datetime", "prev_close", "open", "high", "low", "close",
                      "limit_down_price", "trigger", "implied_ratio", "ref_low", "ref_high"))
    got = {d.isoformat(): t for d, t in gaps.select("datetime", "trigger").iter_rows()}
    assert got == GAP_DATES
    assert sorted(got) == [d.isoformat() for d in independent.loc[independent["gap"], "datetime"]]
    ratio = (gaps["open"] / gaps["prev_close"] - 1).abs()
    opened_outside = gaps["trigger"] == "open"
    # each open-triggered gap really opened more than 10% (plus a tick) away from the previous
    # close: impossible on a normal session
    assert (ratio.filter(opened_outside) > 0.10 + 0.01 / gaps["prev_close"].filter(
        opened_outside)).all()
    # the others opened inside the band but traded outside it later
    rng = gaps.filter(~opened_outside)
    assert (ratio.filter(~opened_outside) <= 0.10).all()
    assert ((rng["high"] > rng["limit_up_price"]) | (rng["low"] < rng["limit_down_price"])).all()
    # 2010-05-27: 23.69 -> open 18.07, an implied ratio of 0.763; the references that keep the
    # session inside +-10% are 16.87 .. 19.23
    r = gaps.filter(pl.col("datetime") == _d("2010-05-27")).row(0, named=True)
    assert r["implied_ratio"] == pytest.approx(18.07 / 23.69)
    assert r["ref_low"] == pytest.approx((18.56 - 0.005) / 1.1)
    assert r["ref_high"] == pytest.approx((17.30 + 0.005) / 0.9)
    # 2008-03-28: 50.93 -> one price 22.92 all day, after a 2-month suspension: the session is
    # consistent with a reference of 20.83 .. 25.47 (ratio 0.41 .. 0.50), not with 50.93
    r = gaps.filter(pl.col("datetime") == _d("2008-03-28")).row(0, named=True)
    assert r["ref_low"] == pytest.approx(22.915 / 1.1) and r["ref_high"] == pytest.approx(
        22.925 / 0.9)


def test_gaps_are_not_flagged_as_limits(flags, bars):
    ex = flags.filter(pl.col("ex_rights"))
    assert _dates(flags, "ex_rights") == sorted(GAP_DATES)
    assert ex["prev_close"].is_null().all() and ex["limit_up_price"].is_null().all()
    assert not (ex["limit_up"] | ex["limit_down"] | ex["one_price_limit"]).any()
    # what a naive shift(1) would have claimed: five false limit-down closes
    prev = bars["close"].shift(1)
    # (NaN -> null: polars orders NaN above every number, so `close <= NaN` would be True)
    down = pl.Series(CN.limit_prices(prev.to_numpy(), 0.10)[1]).fill_nan(None)
    naive = bars.filter(bars["close"] <= down + 1e-6)["datetime"]
    false_down = sorted(set(d.isoformat() for d in naive) - set(LIMIT_DOWN_DATES))
    print(f"\nfalse limit-down closes avoided on ex-rights sessions: {false_down}")
    assert false_down == ["2005-07-01", "2005-08-08", "2008-03-28", "2010-05-27", "2012-05-17"]
    # an open exactly at the limit is not a gap, though open / prev - 1 is 0.10000000000000009
    # in floating point (2008-09-19: 12.87 / 11.70)
    assert 12.87 / 11.70 - 1 > 0.10
    assert not _row(flags, "2008-09-19")["ex_rights"]
    # the first session has no reference at all
    first = flags.row(0, named=True)
    assert first["prev_close"] is None and not (first["limit_up"] or first["limit_down"])


def test_input_order_and_pandas_input_are_kept(bars, flags):
    shuffled = bars.sample(fraction=1.0, shuffle=True, seed=7)
    again = limit_flags(shuffled.to_pandas(), CN)
    assert again["close"].to_list() == shuffled["close"].to_list()
    cols = ["close", "prev_close", "limit_up_price", "limit_down_price", "ex_rights", "limit_up",
            "limit_down", "one_price_limit"]
    assert again.sort("datetime").select(cols).equals(flags.sort("datetime").select(cols))


# --------------------------------------------------------------------------------------------
# the planner refuses what the exchange would refuse, on real sessions


def _plan(session: dict, current: float, target: float, cash: float = 1_000_000.0,
          sellable: float | None = None):
    """One-instrument plan at the session's close with its limit flags."""
    return plan_orders(
        np.array([current]), np.array([target]), np.array([session["close"]]),
        np.array([True]), cash, CN,
        volume=np.array([session["volume"]]),
        limit_up=np.array([session["limit_up"]]), limit_down=np.array([session["limit_down"]]),
        sellable=None if sellable is None else np.array([sellable]))


def test_no_buy_on_a_limit_up_close(flags):
    s = _row(flags, "2008-09-19")       # closed at the limit, 12.87
    p = _plan(s, 0.0, 1_000.0)
    assert (p.side[0], p.quantity[0], p.reason[0], p.fee[0]) == (1, 0.0, "limit", 0.0)
    assert p.cash_after == 1_000_000.0
    # the session before (11.70, not at a limit) buys the 1,000 shares
    ok = _plan(_row(flags, "2008-09-18"), 0.0, 1_000.0)
    assert (ok.quantity[0], ok.reason[0], ok.value[0]) == (1_000.0, "", 11_700.0)
    # a sell on the limit-up session is fine
    sell = _plan(s, 1_000.0, 0.0)
    assert (sell.quantity[0], sell.reason[0]) == (1_000.0, "")


def test_no_sell_on_a_limit_down_close(flags):
    for day in ("2008-04-01", "2008-03-31", "2015-08-24"):
        s = _row(flags, day)
        p = _plan(s, 5_000.0, 0.0)
        assert (p.side[0], p.quantity[0], p.reason[0]) == (-1, 0.0, "limit"), day
    # buying on a limit-down session is allowed (2008-04-01 at 18.57)
    b = _plan(_row(flags, "2008-04-01"), 0.0, 1_000.0)
    assert (b.quantity[0], b.reason[0], b.value[0]) == (1_000.0, "", 18_570.0)


def test_t_plus_one_on_real_sessions(flags):
    d1, d2 = _row(flags, "2016-08-16"), _row(flags, "2016-08-17")
    assert not (d1["limit_up"] or d1["limit_down"] or d2["limit_up"] or d2["limit_down"])
    buy = _plan(d1, 0.0, 1_000.0)
    bought = buy.quantity[0]
    assert (bought, buy.value[0]) == (1_000.0, 39_660.0)
    # same session: held 1,000, all bought today -> sellable 0
    same = _plan(d1, bought, 0.0, sellable=bought - bought)
    assert (same.quantity[0], same.reason[0]) == (0.0, "T+1")
    # with 500 older shares: only those go
    mixed = _plan(d1, 1_500.0, 0.0, sellable=1_500.0 - bought)
    assert (mixed.quantity[0], mixed.intended[0], mixed.reason[0]) == (500.0, 1_500.0, "T+1")
    # next session the shares are sellable: 1,000 * 40.45
    nxt = _plan(d2, bought, 0.0, sellable=bought)
    assert (nxt.quantity[0], nxt.reason[0], nxt.value[0]) == (1_000.0, "", 40_450.0)


def test_odd_lot_holding_of_150(flags):
    s = _row(flags, "2016-08-17")       # 40.45
    out = _plan(s, 150.0, 0.0)
    assert (out.quantity[0], out.reason[0]) == (150.0, "")         # sell out: odd lot included
    assert out.value[0] == 6_067.50
    part = _plan(s, 150.0, 50.0)                                      # sell 100, keep 50
    assert (part.quantity[0], part.reason[0]) == (100.0, "")
    # whatever the target, the order is a whole lot, the whole odd remainder (50, in one go) or
    # both: never 30, 80, 130 shares
    sizes = {_plan(s, 150.0, float(t)).quantity[0] for t in range(0, 150)}
    assert sizes == {0.0, 50.0, 100.0, 150.0}
    assert _plan(s, 150.0, 120.0).reason[0] == "lot"                 # 30 < the odd 50: nothing


def test_buy_rounds_down_to_lots(flags):
    s = _row(flags, "2016-08-17")
    p = _plan(s, 0.0, 250.0)
    assert (p.quantity[0], p.intended[0], p.reason[0]) == (200.0, 250.0, "")
    assert _plan(s, 0.0, 99.0).reason[0] == "lot"


def test_fees_by_hand(flags):
    s = _row(flags, "2016-08-17")       # close 40.45 CNY
    # buy 200: 200 * 40.45 = 8,090.00; commission 8,090 * 2.5 bps = 2.0225 < 5 -> 5.00
    buy = _plan(s, 0.0, 200.0)
    assert (buy.value[0], buy.fee[0]) == (8_090.00, 5.00)
    assert buy.cash_after == pytest.approx(1_000_000 - 8_090 - 5)
    # sell 150 (odd lot): 6,067.50; commission 1.52 -> 5.00 minimum; stamp duty 6,067.50 * 5 bps
    # = 3.03375; 8.03375 -> 8.03
    sell = _plan(s, 150.0, 0.0, cash=0.0)
    assert (sell.value[0], sell.fee[0]) == (6_067.50, 8.03)
    assert sell.cash_after == pytest.approx(6_067.50 - 8.03)
    # sell 3,000: 121,350.00; commission 30.3375 -> 30.34 (above the minimum) + stamp duty
    # 60.675 -> 60.68, each rounded as a statement shows it = 91.02; the buy pays 30.34
    big = _plan(s, 3_000.0, 0.0, cash=0.0)
    assert (big.value[0], big.fee[0]) == (121_350.00, 91.02)
    assert _plan(s, 0.0, 3_000.0).fee[0] == 30.34
    # and the planner never spends cash it has not got: 8,095 CNY buys 200 shares, not 300
    tight = _plan(s, 0.0, 300.0, cash=8_095.0)
    assert (tight.quantity[0], tight.reason[0], tight.cash_after) == (200.0, "cash", 0.0)
