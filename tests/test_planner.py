import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ValidationError
from bridge.market.rules import MarketRules
from bridge.planner import CUT_REASONS, OrderPlanner, PlanPolicy, plan_orders

RULES = MarketRules(commission_bps=10.0, min_commission=1.0)


def test_sells_first_and_their_cash_funds_the_buys():
    cur = np.array([100.0, 0.0])
    tgt = np.array([0.0, 50.0])
    p = plan_orders(cur, tgt, np.array([10.0, 20.0]), np.ones(2, bool), 0.0, RULES)
    assert p.side.tolist() == [-1, 1]
    # sell 100 @ 10 = 1,000 - 1 fee = 999 cash; buy 50 @ 20 = 1,000 + 1 > 999 -> 49 shares
    assert p.quantity.tolist() == [100.0, 49.0]
    assert p.reason.tolist() == ["", "cash"]
    assert p.fee.tolist() == [1.0, 1.0]
    assert p.cash_after == pytest.approx(999 - 980 - 1)


def test_lot_rounding_and_min_fee():
    lots = MarketRules(trade_unit=100, commission_bps=3, min_commission=5.0)
    p = plan_orders(np.zeros(2), np.array([250.0, 60.0]), np.array([10.0, 10.0]),
                    np.ones(2, bool), 1e6, lots)
    assert p.quantity.tolist() == [200.0, 0.0]
    assert p.reason.tolist() == ["", "lot"]
    assert p.fee.tolist() == [5.0, 0.0]      # 2,000 * 3 bps = 0.60 < 5 minimum


def test_odd_lot_allowed_only_when_selling_everything():
    lots = MarketRules(trade_unit=100, commission_bps=0, min_commission=0)
    p = plan_orders(np.array([150.0, 150.0]), np.array([0.0, 20.0]), np.array([1.0, 1.0]),
                    np.ones(2, bool), 0.0, lots)
    assert p.quantity.tolist() == [150.0, 100.0]   # whole holding; 130 -> one lot


def test_untradable_instruments_are_dropped_with_reason():
    p = plan_orders(np.array([10.0, 0.0]), np.array([0.0, 10.0]), np.array([5.0, np.nan]),
                    np.array([False, False]), 1e4, RULES)
    assert p.quantity.tolist() == [0.0, 0.0]
    assert p.reason.tolist() == ["suspended", "suspended"]
    assert p.cash_after == 1e4


def test_buy_priority_gets_cash_first():
    p = plan_orders(np.zeros(3), np.array([10.0, 10.0, 10.0]), np.full(3, 10.0), np.ones(3, bool),
                    202.0, RULES, buy_priority=np.array([2, 0]))
    assert p.instrument.tolist() == [2, 0, 1]
    assert p.quantity.tolist() == [10.0, 10.0, 0.0]   # 101 each; nothing left for 1
    assert p.reason.tolist() == ["", "", "cash"]


def test_order_planner_frames_with_target_weight():
    planner = OrderPlanner(RULES)
    current = pd.DataFrame({"instrument": ["A"], "amount": [10.0]})
    target = pd.DataFrame({"instrument": ["B", "A"], "target_weight": [0.5, 0.0]})
    prices = pd.DataFrame({"instrument": ["A", "B"], "price": [100.0, 50.0]})
    orders, cash = planner.plan(current, target, prices, cash=1_000.0)
    # total = 1,000 + 10 * 100 = 2,000; B target 0.5 * 2,000 / 50 = 20 shares
    assert orders[["instrument", "side", "quantity"]].values.tolist() == [["A", "sell", 10.0],
                                                                        ["B", "buy", 20.0]]
    assert cash == pytest.approx(1_000 + 1_000 - 1 - 1_000 - 1)


def test_order_planner_bad_input():
    planner = OrderPlanner(RULES)
    cur = pd.DataFrame({"instrument": ["A", "A"], "amount": [1.0, 2.0]})
    tgt = pd.DataFrame({"instrument": ["A"], "target_amount": [1.0]})
    px = pd.DataFrame({"instrument": ["A"], "price": [1.0]})
    with pytest.raises(ValidationError, match="duplicate_key"):
        planner.plan(cur, tgt, px, 0.0)
    with pytest.raises(ValidationError, match="missing_price"):
        planner.plan(cur.head(1), pd.DataFrame({"instrument": ["Z"], "target_amount": [1.0]}), px, 0.0)
    with pytest.raises(ValidationError, match="missing_column"):
        planner.plan(cur.head(1), pd.DataFrame({"instrument": ["A"], "w": [1.0]}), px, 0.0)


def _valid_lot(q, held, unit, side):
    r = q % unit
    return math.isclose(r, 0, abs_tol=1e-9) or math.isclose(r, unit, abs_tol=1e-9) or (
        side < 0 and math.isclose(r, held % unit, abs_tol=1e-9))


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 5_000), st.floats(0, 10_000), st.floats(0.01, 500),
                            st.booleans(), st.booleans(), st.booleans(), st.integers(0, 5_000),
                            st.floats(0, 1e6)), min_size=1, max_size=30),
    cash=st.floats(0, 1e6),
    unit=st.sampled_from([1, 10, 100]),
    bps=st.floats(0, 30),
    min_fee=st.floats(0, 10),
    part=st.one_of(st.none(), st.floats(0.001, 1)),
    min_value=st.floats(0, 1_000),
)
def test_planner_invariants(data, cash, unit, bps, min_fee, part, min_value):
    rules = MarketRules(trade_unit=unit, commission_bps=bps, min_commission=min_fee)
    cur = np.array([float(d[0]) for d in data])
    tgt = np.array([d[1] for d in data])
    price = np.array([round(d[2], 2) for d in data])
    trad = np.array([d[3] for d in data])
    up = np.array([d[4] for d in data])
    down = np.array([d[5] for d in data])
    sellable = np.minimum(cur, [float(d[6]) for d in data])
    vol = np.array([d[7] for d in data])
    kw = dict(volume=vol, limit_up=up, limit_down=down, sellable=sellable,
              policy=PlanPolicy(participation=part, min_order_value=min_value))
    p = plan_orders(cur, tgt, price, trad, cash, rules, **kw)
    again = plan_orders(cur, tgt, price, trad, cash, rules, **kw)
    assert p.quantity.tolist() == again.quantity.tolist()            # deterministic
    assert p.cash_after >= -1e-6                                       # never spends cash it lacks
    sells = p.side < 0
    if sells.any():
        assert (np.flatnonzero(sells) < np.flatnonzero(~sells).min(initial=len(p))).all()
    for i, s, q, r in zip(p.instrument, p.side, p.quantity, p.reason, strict=True):
        assert r in CUT_REASONS or r == ""
        if q == 0:
            continue
        assert trad[i]                                   # never trades a suspended instrument
        assert not (up[i] if s > 0 else down[i])         # never buys limit-up / sells limit-down
        assert _valid_lot(q, cur[i], unit, s)            # lots (odd remainder only on sells)
        assert q * price[i] >= min_value - 0.01
        if part is not None:
            assert q <= part * vol[i] + 1e-6
        if s < 0:
            assert q <= sellable[i] + 1e-9                # T+1 and never more than held
    cash_flow = cash + np.sum(np.where(p.side < 0, p.value, -p.value)) - p.fee.sum()
    assert cash_flow == pytest.approx(p.cash_after, abs=1e-6)


def test_order_planner_limit_orders_record_tick_rounding_and_reasons():
    planner = OrderPlanner(RULES, PlanPolicy(limit_offset_bps=7.0, participation=0.1,
                                             min_order_value=100.0))
    current = pd.DataFrame({"instrument": ["A", "B"], "amount": [300.0, 50.0], "sellable": [100.0, 50.0]})
    target = pd.DataFrame({"instrument": ["C", "D", "A", "B"], "target_amount": [500.0, 5.0, 0.0, 0.0]})
    market = pd.DataFrame({"instrument": ["A", "B", "C", "D"], "price": [10.0, 1.0, 23.456, 5.0],
                           "volume": [1e6, 1e6, 2_000.0, 1e6], "limit_down": [False, True, False, False]})
    orders, _ = planner.plan(current, target, market, cash=1e6)
    o = orders.set_index("instrument")
    assert o.loc["A", "quantity"] == 100 and o.loc["A", "reason"] == "T+1"      # 200 bought today
    assert o.loc["B", "quantity"] == 0 and o.loc["B", "reason"] == "limit"      # limit-down
    assert o.loc["C", "quantity"] == 200 and o.loc["C", "reason"] == "participation"  # 10% of 2,000
    assert o.loc["D", "quantity"] == 0 and o.loc["D", "reason"] == "min_value"  # 25 < 100
    # C buy limit: 23.456 * 1.0007 = 23.4724... -> 23.47 (down for a buy), rounding -0.0024...
    assert o.loc["C", "order_type"] == "limit" and o.loc["C", "limit_price"] == 23.47
    assert o.loc["C", "tick_rounding"] == pytest.approx(23.47 - 23.456 * 1.0007)
    # A sell limit: 10 * 0.9993 = 9.993 -> 10.00 (up for a sell)
    assert o.loc["A", "limit_price"] == 10.0
