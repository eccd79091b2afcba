import numpy as np
import pandas as pd
import pytest

from bridge.errors import ConfigError
from bridge.market.rules import MarketRules
from bridge.portfolio import PortfolioEngine, TopkDropout, select_topk_dropout, size_from_cash

NAN = np.nan


def _sel(score, held, params, tradable=None, rng=None):
    score = np.array(score, dtype=float)
    held = np.array(held, dtype=bool)
    tradable = np.ones(len(score), bool) if tradable is None else np.array(tradable)
    sell, buy = select_topk_dropout(score, held, tradable, params, rng)
    return sorted(sell.tolist()), buy.tolist()


def test_empty_book_buys_topk_best():
    assert _sel([3, 1, 4, 2], [0, 0, 0, 0], TopkDropout(topk=2, n_drop=1)) == ([], [2, 0])


def test_drop_the_worst_held_when_a_better_candidate_exists():
    # held 0 (score 1) and 1 (score 5); candidates 2 (4) and 3 (0.5): drop 0, buy 2
    assert _sel([1, 5, 4, 0.5], [1, 1, 0, 0], TopkDropout(topk=2, n_drop=1)) == ([0], [2])


def test_no_trade_when_candidates_are_worse_than_holdings():
    assert _sel([3, 5, 1, 0.5], [1, 1, 0, 0], TopkDropout(topk=2, n_drop=1)) == ([], [])


def test_held_without_score_is_sold_first():
    # Qlib sorts NaN last: a held name without a score is the first to drop
    assert _sel([NAN, 5, 4, 1], [1, 1, 0, 0], TopkDropout(topk=2, n_drop=1)) == ([0], [2])


def test_n_drop_limits_replacements():
    score = [1, 2, 3, 10, 11, 12]
    held = [1, 1, 1, 0, 0, 0]
    assert _sel(score, held, TopkDropout(topk=3, n_drop=2)) == ([0, 1], [5, 4])


def test_only_tradable_skips_untradable_candidates():
    p = TopkDropout(topk=1, n_drop=1, only_tradable=True)
    assert _sel([1, 9, 5], [0, 0, 0], p, tradable=[True, False, True]) == ([], [2])
    assert _sel([1, 9, 5], [0, 0, 0], TopkDropout(topk=1, n_drop=1), tradable=[True, False, True]) == ([], [1])


def test_random_methods_are_seeded():
    p = TopkDropout(topk=3, n_drop=2, method_buy="random", method_sell="random")
    score = np.arange(10, dtype=float)
    held = np.zeros(10, bool)
    held[:3] = True
    a = _sel(score, held, p, rng=np.random.default_rng(7))
    b = _sel(score, held, p, rng=np.random.default_rng(7))
    assert a == b
    with pytest.raises(ConfigError, match="rng"):
        _sel(score, held, p)


@pytest.mark.parametrize("kw", [{"topk": 0}, {"n_drop": 6, "topk": 5}, {"method_sell": "top"},
                                {"method_buy": "bottom"}, {"risk_degree": 1.5}, {"hold_thresh": -1}])
def test_bad_parameters(kw):
    with pytest.raises(ConfigError):
        TopkDropout(**kw)


def test_size_from_cash_is_qlibs_rule():
    out = size_from_cash(np.array([0, 2]), np.array([10.0, 5.0, 20.0]), 1_000.0, 0.95, 3)
    assert out.tolist() == pytest.approx([47.5, 0.0, 23.75])  # 1,000 * 0.95 / 2 / price


def test_portfolio_engine_frame_api():
    eng = PortfolioEngine(MarketRules(commission_bps=10, min_commission=1.0))
    scores = pd.DataFrame({"instrument": ["A", "B", "C"], "score": [1.0, 3.0, 2.0]})
    current = pd.DataFrame({"instrument": ["A", "B"], "amount": [100.0, 50.0]})
    prices = pd.DataFrame({"instrument": ["A", "B", "C"], "price": [10.0, 20.0, 40.0]})
    tgt = eng.topk_dropout(scores, current, prices, cash=0.0, params=TopkDropout(
        topk=2, n_drop=1, risk_degree=1.0, mode="qlib"))
    t = tgt.set_index("instrument")
    assert t.loc["A", "action"] == "sell" and t.loc["A", "target_amount"] == 0
    assert t.loc["B", "action"] == "hold" and t.loc["B", "target_amount"] == 50
    # C sized from the cash the sale of A frees: 1,000 - 1 fee = 999 -> 999 / 40 shares
    assert t.loc["C", "action"] == "buy" and t.loc["C", "target_amount"] == pytest.approx(999 / 40)
    ew = PortfolioEngine.equal_weight(["A", "B", "C", "D"], cash_buffer=0.2)
    assert ew["target_weight"].tolist() == [0.2] * 4
