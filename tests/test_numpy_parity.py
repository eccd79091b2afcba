"""The per-session work on Python lists gives the NumPy implementation's results, bit for bit.

``numpy_reference`` holds the array implementation of top-k dropout, of the order planner and of
the preview loop as they were before the loop moved to Python lists; every function here runs both
on the same random inputs and compares every output exactly (floats by their bits).
"""

import math

import numpy as np
import numpy_reference as ref
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.market.data import Panel
from bridge.market.rules import MarketRules
from bridge.planner import PlanPolicy, plan_orders
from bridge.portfolio import TopkDropout, decide_topk, select_topk_dropout, size_from_cash
from bridge.preview import InstanceSpec, run_preview

SPECIAL = [math.nan, 0.0, -0.0, 1.0, -1.0, 0.5, math.inf, -math.inf]
SCORES = st.one_of(st.sampled_from(SPECIAL), st.floats(-10, 10))
PRICES = st.one_of(st.sampled_from([math.nan, 0.0, -1.0, 10.0]), st.floats(0.01, 500))
AMOUNTS = st.one_of(st.sampled_from([0.0, -0.0, 100.0, -5.0]), st.floats(0, 1e4))

PARAMS = st.builds(
    lambda topk, drop, sell, buy, hold, risk, only, forbid, mode: TopkDropout(
        topk=topk, n_drop=min(drop, topk), method_sell=sell, method_buy=buy, hold_thresh=hold,
        risk_degree=risk, only_tradable=only, forbid_all_trade_at_limit=forbid, mode=mode),
    st.integers(1, 6), st.integers(0, 6), st.sampled_from(["bottom", "random"]),
    st.sampled_from(["top", "random"]), st.integers(0, 3), st.floats(0.1, 1.0), st.booleans(),
    st.booleans(), st.sampled_from(["corrected", "qlib"]))

RULES = st.builds(
    lambda unit, frac, bps, min_fee, stamp, cents_: MarketRules(
        trade_unit=unit, fractional=frac, commission_bps=bps, min_commission=min_fee,
        stamp_duty_bps=stamp, round_cents=cents_),
    st.sampled_from([1, 100]), st.booleans(), st.floats(0, 30), st.floats(0, 5),
    st.floats(0, 10), st.booleans())


def _bits(a) -> list:
    a = np.asarray(a)
    return a.view(np.int64).tolist() if a.dtype == np.float64 else a.tolist()


def _outcome(fn, *args, **kw):
    """The result of ``fn``, or the type of the exception it raised."""
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - both sides must fail the same way
        return type(exc)


def _arrays(draw, n, elements, dtype=np.float64):
    return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=dtype)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), params=PARAMS, seed=st.integers(0, 2**16))
def test_select_topk_dropout(data, n, params, seed):
    score = _arrays(data.draw, n, SCORES)
    held = _arrays(data.draw, n, st.booleans(), bool)
    tradable = _arrays(data.draw, n, st.booleans(), bool)
    new = _outcome(select_topk_dropout, score, held, tradable, params, np.random.default_rng(seed))
    old = _outcome(ref.select_topk_dropout, score, held, tradable, params,
                   np.random.default_rng(seed))
    if isinstance(old, type):
        assert new is old
        return
    assert [x.tolist() for x in new] == [x.tolist() for x in old]
    assert [x.dtype for x in new] == [x.dtype for x in old]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), params=PARAMS, rules=RULES,
       cash=st.one_of(st.floats(-1e3, 1e6), st.sampled_from([0.0, 1e6])), seed=st.integers(0, 99),
       limits=st.sampled_from(["none", "up", "down", "both"]), marked=st.booleans())
def test_decide_topk(data, n, params, rules, cash, seed, limits, marked):
    score = _arrays(data.draw, n, SCORES)
    amount = _arrays(data.draw, n, AMOUNTS)
    days = _arrays(data.draw, n, st.integers(0, 5), np.int64)
    price = _arrays(data.draw, n, PRICES)
    tradable = _arrays(data.draw, n, st.booleans(), bool)
    flags = {k: _arrays(data.draw, n, st.booleans(), bool) for k in ("limit_up", "limit_down")
             if limits in (k[6:], "both")}
    if marked:
        flags["mark"] = _arrays(data.draw, n, PRICES)
    args = (score, amount, days, price, tradable, cash, params, rules)
    new = _outcome(decide_topk, *args, np.random.default_rng(seed), **flags)
    old = _outcome(ref.decide_topk, *args, np.random.default_rng(seed), **flags)
    if isinstance(old, type):
        assert new is old
        return
    assert _bits(new[0]) == _bits(old[0])
    assert new[1].tolist() == old[1].tolist()


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 10), cash=st.floats(-10, 1e6), risk=st.floats(0.1, 1))
def test_size_from_cash(data, n, cash, risk):
    price = _arrays(data.draw, n, PRICES)
    buy = np.array(data.draw(st.lists(st.integers(0, n - 1), unique=True)), dtype=np.intp)
    assert _bits(size_from_cash(buy, price, cash, risk, n)) == _bits(
        ref.size_from_cash(buy, price, cash, risk, n))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), rules=RULES, cash=st.floats(0, 1e5),
       part=st.one_of(st.none(), st.floats(0.001, 1)), min_value=st.floats(0, 500),
       offset=st.one_of(st.none(), st.floats(0, 50)), extras=st.booleans(),
       priority=st.booleans())
def test_plan_orders(data, n, rules, cash, part, min_value, offset, extras, priority):
    current = _arrays(data.draw, n, AMOUNTS)
    keep = _arrays(data.draw, n, st.booleans(), bool)
    target = np.where(keep, current, _arrays(data.draw, n, AMOUNTS))
    price = _arrays(data.draw, n, PRICES)
    tradable = _arrays(data.draw, n, st.booleans(), bool)
    kw = {"policy": PlanPolicy(participation=part, min_order_value=min_value,
                               limit_offset_bps=offset)}
    if extras:
        kw.update(volume=_arrays(data.draw, n, st.floats(0, 1e4)),
                  limit_up=_arrays(data.draw, n, st.booleans(), bool),
                  limit_down=_arrays(data.draw, n, st.booleans(), bool),
                  sellable=np.minimum(current, _arrays(data.draw, n, st.floats(0, 1e4))))
    if priority:
        kw["buy_priority"] = np.array(data.draw(st.lists(st.integers(0, n - 1))), dtype=np.int64)
    new = _outcome(plan_orders, current, target, price, tradable, cash, rules, **kw)
    old = _outcome(ref.plan_orders, current, target, price, tradable, cash, rules, **kw)
    if isinstance(old, type):
        assert new is old
        return
    for field in ("instrument", "side", "quantity", "intended", "price", "value", "fee",
                  "limit_price", "tick_rounding", "reason"):
        a, b = getattr(new, field), getattr(old, field)
        assert a.dtype == b.dtype and _bits(a) == _bits(b), field
    assert _bits(new.cash_after) == _bits(old.cash_after)


@settings(max_examples=300, deadline=None)
@given(rules=RULES, values=st.lists(st.floats(0, 1e7), min_size=1, max_size=8),
       sell=st.booleans())
def test_scalar_fee_is_the_array_fee(rules, values, sell):
    arr = rules.fee(np.array(values), sell)
    assert _bits([rules.fee(float(v), sell) for v in values]) == _bits(arr)


def _random_panel(rng: np.random.Generator, T: int, N: int) -> Panel:
    """Bars with gaps, late starts, early ends (universe exits), zero volumes, tied prices."""
    close = np.round(rng.uniform(1, 20, (T, N)), 1)
    close[rng.random((T, N)) < 0.1] = np.nan
    for j in range(N):
        start, end = sorted(rng.integers(0, T + 1, 2))
        if rng.random() < 0.5:
            close[:start, j] = np.nan
        if rng.random() < 0.5:
            close[end:, j] = np.nan
    open_ = np.where(rng.random((T, N)) < 0.1, np.nan, np.round(close * rng.uniform(0.9, 1.1), 2))
    volume = np.where(rng.random((T, N)) < 0.05, 0.0, 1e6)
    sessions = np.datetime64("2020-01-01") + np.arange(T)
    names = np.array([f"I{j:02d}" for j in range(N)])
    return Panel(sessions=sessions, instruments=names, open=open_, high=close, low=close,
                 close=close, volume=volume)


def _spec(draw, params: TopkDropout) -> InstanceSpec:
    strategy = draw(st.sampled_from(["topk_dropout", "topk_dropout", "buy_and_hold"]))
    return InstanceSpec(
        "p", strategy, draw(st.sampled_from([1e4, 1e6])),
        signal="s" if strategy == "topk_dropout" else None, topk=params,
        deal_price=draw(st.sampled_from(["close", "open"])),
        slippage_bps=draw(st.sampled_from([0.0, 5.0])), cash_buffer=0.05,
        seed=draw(st.integers(0, 9)), exit_grace=draw(st.sampled_from([None, 0, 2, 5])))


def _assert_same_frame(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.schema == b.schema and a.shape == b.shape
    for c in a.columns:
        if a[c].dtype == pl.Float64:
            assert _bits(a[c].to_numpy()) == _bits(b[c].to_numpy()), c
        else:
            assert a[c].to_list() == b[c].to_list(), c


@pytest.mark.parametrize("base", [1_000_000, 2_000_000])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), T=st.integers(2, 30), N=st.integers(1, 10), params=PARAMS, rules=RULES)
def test_preview_loop(base, data, T, N, params, rules):
    rng = np.random.default_rng(base + T * 100 + N)
    panel = _random_panel(rng, T, N)
    grid = np.round(rng.normal(size=(T, N)), 1)
    grid[rng.random((T, N)) < 0.2] = np.nan
    spec = _spec(data.draw, params)
    new = run_preview(panel, [spec], {"s": (grid, {})}, rules)
    old = ref.run_instance(panel, spec, grid if spec.strategy == "topk_dropout" else None, rules)
    for name in ("trade", "cut", "position", "account"):
        _assert_same_frame(getattr(new, name), old[name])
