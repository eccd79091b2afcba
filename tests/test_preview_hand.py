"""A 3-stock, 3-session case computed by hand (numbers in the comments)."""

import numpy as np
import pytest

from bridge.market.rules import MarketRules
from bridge.portfolio import TopkDropout
from bridge.preview import InstanceSpec, run_preview, signal_grid

RULES = MarketRules(commission_bps=10.0, min_commission=1.0)
DAYS = ["2010-01-04", "2010-01-05", "2010-01-06"]


def _run(panel_factory, mode):
    import pandas as pd

    panel = panel_factory(DAYS, {"A": [10.0, 11.2, 12.0], "B": [20.0, 19.0, 18.0],
                                 "C": [50.0, 52.0, 55.0]})
    sig = pd.DataFrame({
        "datetime": pd.to_datetime(["2009-12-31"] * 3 + ["2010-01-04"] * 3 + ["2010-01-05"] * 3),
        "instrument": ["A", "B", "C"] * 3,
        "score": [3, 2, 1, 1, 3, 2, 0, 3, 2],
    })
    spec = InstanceSpec("hand", "topk_dropout", 10_000.0, signal="s",
                        topk=TopkDropout(topk=2, n_drop=1, risk_degree=0.95, mode=mode))
    return run_preview(panel, [spec], {"s": signal_grid(panel, sig)}, RULES)


@pytest.fixture
def result(panel_factory):
    """Qlib mode: buys sized from cash after sells."""
    return _run(panel_factory, "qlib")


def test_corrected_mode_sizes_from_total_value(panel_factory):
    res = _run(panel_factory, "corrected")
    cols = ["trading_day", "instrument", "side", "quantity", "trade_value", "fee"]
    got = [(str(r[0]), *r[1:]) for r in res.trade.select(cols).rows()]
    assert got == [
        # day 1: total 10,000 * 0.95 / 2 = 4,750 per slot, as in Qlib mode
        ("2010-01-04", "A", "buy", 475.0, 4_750.0, 4.75),
        ("2010-01-04", "B", "buy", 237.0, 4_740.0, 4.74),
        ("2010-01-05", "A", "sell", 475.0, 5_320.0, 5.32),
        # day 2: total = 500.51 + 475 * 11.2 + 237 * 19 = 10,323.51; * 0.95 / 2 / 52 = 94.3 -> 94
        ("2010-01-05", "C", "buy", 94.0, 4_888.0, 4.89),
    ]
    a = res.account.to_pandas()
    assert a["cash"].round(2).tolist() == [500.51, 922.30, 922.30]
    assert a["total_value"].round(2).tolist() == [9_990.51, 10_313.30, 10_358.30]


def test_orders_and_fees(result):
    cols = ["trading_day", "instrument", "side", "quantity", "deal_price", "trade_value", "fee"]
    got = [(str(r[0]), *r[1:]) for r in result.trade.select(cols).rows()]
    assert got == [
        # day 1: 10,000 * 0.95 / 2 = 4,750 each; A 475 @ 10; B 237.5 -> 237 @ 20
        ("2010-01-04", "A", "buy", 475.0, 10.0, 4_750.0, 4.75),
        ("2010-01-04", "B", "buy", 237.0, 20.0, 4_740.0, 4.74),
        # day 2: A (score 1) dropped for C (2); sell 475 @ 11.20 = 5,320, fee 5.32
        ("2010-01-05", "A", "sell", 475.0, 11.2, 5_320.0, 5.32),
        # cash 500.51 + 5,320 - 5.32 = 5,815.19; * 0.95 = 5,524.43 / 52 = 106.2 -> 106 shares
        ("2010-01-05", "C", "buy", 106.0, 52.0, 5_512.0, 5.51),
    ]


def test_account_nav_by_hand(result):
    a = result.account.to_pandas()
    assert a["cash"].round(2).tolist() == [500.51, 297.68, 297.68]
    # day 1: 475 * 10 + 237 * 20 = 9,490; day 2: 237 * 19 + 106 * 52 = 10,015; day 3: 4,266 + 5,830
    assert a["market_value"].tolist() == [9_490.0, 10_015.0, 10_096.0]
    assert a["total_value"].round(2).tolist() == [9_990.51, 10_312.68, 10_393.68]
    assert a["daily_pnl"].round(2).tolist() == [-9.49, 322.17, 81.0]
    assert a["cum_pnl"].round(2).tolist() == [-9.49, 312.68, 393.68]
    assert a["peak"].round(2).tolist() == [10_000.0, 10_312.68, 10_393.68]
    assert a["drawdown"].tolist() == pytest.approx([9_990.51 / 10_000 - 1, 0.0, 0.0])
    assert a["cost"].round(2).tolist() == [9.49, 10.83, 0.0]
    assert a["n_trades"].tolist() == [2, 2, 0]
    assert a["turnover"].tolist() == pytest.approx([9_490 / 10_000, 10_832 / 9_990.51, 0.0])


def test_positions_by_hand(result):
    p = result.position.to_pandas()
    last = p[p["trading_day"] == "2010-01-06"]
    assert last[["instrument", "amount", "avg_cost", "last_price", "market_value"]].values.tolist() == [
        ["B", 237.0, 20.0, 18.0, 4_266.0], ["C", 106.0, 52.0, 55.0, 5_830.0]]


def test_buy_and_hold_and_deal_price_open(panel_factory):
    panel = panel_factory(DAYS[:2], {"A": [10.0, 12.0], "B": [20.0, 22.0]},
                          open_={"A": [9.0, 11.0], "B": [19.0, 21.0]})
    spec = InstanceSpec("bh", "buy_and_hold", 1_000.0, deal_price="open", cash_buffer=0.0)
    res = run_preview(panel, [spec], {}, RULES)
    t = res.trade.to_pandas()
    # 500 per name at the open: A 55 @ 9 (495 + 1 fee), B 26 @ 19 (494 + 1): cash 1000-496-495 = 9
    assert t[["instrument", "quantity", "deal_price"]].values.tolist() == [["A", 55.0, 9.0], ["B", 26.0, 19.0]]
    assert str(t["datetime"].iloc[0]) == "2010-01-04 09:30:00"
    a = res.account.to_pandas()
    assert a["cash"].round(2).tolist() == [9.0, 9.0]
    assert a["total_value"].round(2).tolist() == [9 + 55 * 10 + 26 * 20, 9 + 55 * 12 + 26 * 22]
    assert np.all(res.account["n_trades"].to_numpy() == [2, 0])


def test_slippage_moves_fills_against_the_trader(panel_factory):
    panel = panel_factory(DAYS[:1], {"A": [10.0]})
    spec = InstanceSpec("s", "buy_and_hold", 1_000.0, cash_buffer=0.0, slippage_bps=100.0)
    t = run_preview(panel, [spec], {}, RULES).trade.to_pandas()
    # 1,000 / 10 = 100 target shares, filled at 10.10: 98 shares (989.80 + 1 fee <= 1,000)
    assert t[["quantity", "deal_price", "market_price", "trade_value"]].values.tolist() == [
        [98.0, 10.1, 10.0, 989.8]]
