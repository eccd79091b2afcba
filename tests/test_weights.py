import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ConfigError, ConstraintError
from bridge.portfolio import WEIGHT_METHODS, Constraints, PortfolioEngine, apply_constraints

S = pd.Series([3.0, 1.0, -1.0, 2.0], index=["A", "B", "C", "D"])


def test_equal_and_score_proportional_by_hand():
    assert WEIGHT_METHODS["equal"](S).tolist() == [0.25] * 4
    # positive parts 3, 1, 0, 2 over 6
    assert WEIGHT_METHODS["score"](S).tolist() == pytest.approx([0.5, 1 / 6, 0.0, 1 / 3])
    with pytest.raises(ConstraintError, match="positive"):
        WEIGHT_METHODS["score"](-S.abs())


def test_inverse_volatility_by_hand():
    r = pd.DataFrame({"A": [0.01, -0.01, 0.01, -0.01], "B": [0.02, -0.02, 0.02, -0.02]})
    w = WEIGHT_METHODS["inverse_volatility"](pd.Series([1.0, 1.0], index=["A", "B"]), r, lookback=4)
    assert w.tolist() == pytest.approx([2 / 3, 1 / 3])        # vol B = 2 x vol A
    with pytest.raises(ConfigError, match="returns"):
        WEIGHT_METHODS["inverse_volatility"](S)
    with pytest.raises(ConstraintError, match="no return history"):
        WEIGHT_METHODS["inverse_volatility"](S, r, lookback=4)


def test_min_variance_on_real_skfolio_prices():
    from skfolio.datasets import load_sp500_dataset

    prices = load_sp500_dataset()
    returns = prices.pct_change().iloc[1:].loc["2020":"2022"]
    names = pd.Series(1.0, index=["JNJ", "KO", "PG", "AMD", "RRC"])
    w = WEIGHT_METHODS["min_variance"](names, returns, lookback=250)
    assert w.sum() == pytest.approx(1.0) and (w >= -1e-9).all()
    # the defensive names carry the book, the volatile ones next to nothing
    assert w[["JNJ", "KO", "PG"]].sum() > 0.9
    var = lambda x: float(x @ returns[names.index].iloc[-250:].cov().to_numpy() @ x)  # noqa: E731
    assert var(w.to_numpy()) <= var(np.full(5, 0.2)) + 1e-12


def test_constraints_by_hand():
    w = pd.Series([0.7, 0.2, 0.1], index=["A", "B", "C"])
    out = apply_constraints(w, Constraints(max_weight=0.4, cash_buffer=0.1))
    # budget 0.9: A capped at 0.4, the 0.5 rest spread 2:1 over B and C
    assert out.tolist() == pytest.approx([0.4, 1 / 3, 1 / 6])
    sectors = pd.Series({"A": "Tech", "B": "Tech", "C": "Energy"})
    out = apply_constraints(w, Constraints(sector_caps={"Tech": 0.5}), sectors)
    assert out.tolist() == pytest.approx([0.5 * 7 / 9, 0.5 * 2 / 9, 0.5])
    out = apply_constraints(w, Constraints(blacklist=("A",)))
    assert out.tolist() == pytest.approx([0.0, 2 / 3, 1 / 3])


@pytest.mark.parametrize("c,which", [
    (Constraints(max_weight=0.3), "max_weight"),                               # 3 x 0.3 < 1
    (Constraints(sector_caps={"Tech": 0.4, "Energy": 0.4}), "sector_caps"),
    (Constraints(blacklist=("A", "B", "C")), "blacklist"),
    (Constraints(cash_buffer=1.0), "cash_buffer"),
])
def test_infeasible_constraints_say_which(c, which):
    sectors = pd.Series({"A": "Tech", "B": "Tech", "C": "Energy"})
    with pytest.raises(ConstraintError) as e:
        apply_constraints(pd.Series([0.5, 0.3, 0.2], index=["A", "B", "C"]), c, sectors)
    assert e.value.constraint == which


@settings(max_examples=200, deadline=None)
@given(w=st.lists(st.floats(0.001, 10), min_size=1, max_size=40), cap=st.floats(0.01, 1),
       buf=st.floats(0, 0.5), sector_cap=st.floats(0.05, 1))
def test_constraints_hold_or_raise(w, cap, buf, sector_cap):
    idx = [f"I{i}" for i in range(len(w))]
    sectors = pd.Series(["S0", "S1", "S2"] * 14, index=[f"I{i}" for i in range(42)])[idx]
    c = Constraints(max_weight=cap, cash_buffer=buf, sector_caps={"S0": sector_cap})
    try:
        out = apply_constraints(pd.Series(w, index=idx), c, sectors)
    except ConstraintError:
        return
    assert out.sum() == pytest.approx(1 - buf)
    assert (out <= cap + 1e-9).all() and (out >= 0).all()
    assert out[sectors == "S0"].sum() <= sector_cap + 1e-9


def test_engine_target_weights_topk_and_planner_round_trip():
    from bridge.market.rules import MarketRules
    from bridge.planner import OrderPlanner

    scores = pd.DataFrame({"instrument": list("ABCDE"), "score": [5.0, 4.0, 3.0, 2.0, 1.0]})
    t = PortfolioEngine.target_weights(scores, "equal", topk=3,
                                       constraints=Constraints(blacklist=("B",), cash_buffer=0.1))
    assert t["instrument"].tolist() == ["A", "C", "D"]
    assert t["target_weight"].tolist() == pytest.approx([0.3, 0.3, 0.3])
    market = pd.DataFrame({"instrument": list("ACD"), "price": [10.0, 20.0, 30.0]})
    orders, cash = OrderPlanner(MarketRules(commission_bps=0, min_commission=0)).plan(
        pd.DataFrame({"instrument": [], "amount": []}), t, market, cash=10_000.0)
    assert orders["quantity"].tolist() == [300.0, 150.0, 100.0] and cash == pytest.approx(1_000.0)
    with pytest.raises(ConfigError):
        PortfolioEngine.target_weights(scores, "magic")
