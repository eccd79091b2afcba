import pytest

from bridge.market.rules import US, MarketRules
from bridge.planner import align_to_tick

RULES = MarketRules(commission_bps=10.0, min_commission=1.0)


def test_fee_proportional_minimum_and_zero():
    assert RULES.fee(4_740.0, False) == 4.74          # 10 bps
    assert RULES.fee(50.0, False) == 1.0              # minimum binds
    assert RULES.fee(0.0, False) == 0.0               # no trade, no fee
    duty = MarketRules(commission_bps=10.0, min_commission=5.0, stamp_duty_bps=5.0)
    assert duty.fee(10_000.0, True) == 15.0           # 10 + 5 stamp duty on a sell
    assert duty.fee(10_000.0, False) == 10.0


def test_max_affordable_includes_fees():
    # 1,000 cash at 10.00: 99 shares (990 + 1 fee = 991), not 100 (1,000 + 1 > 1,000)
    assert RULES.max_affordable(1_000.0, 10.0) == 99
    # proportional fee binds: 100,000 / (10 * 1.001) = 9,990.0099 -> 9,990 shares
    assert RULES.max_affordable(100_000.0, 10.0) == 9_990
    assert 9_990 * 10.0 + RULES.fee(99_900.0, False) <= 100_000.0
    assert RULES.max_affordable(0.5, 10.0) == 0
    lots = MarketRules(trade_unit=100, commission_bps=0, min_commission=5.0)
    assert lots.max_affordable(10_000.0, 9.0) == 1_100  # 1,100 * 9 = 9,900 + 5 <= 10,000


@pytest.mark.parametrize("price,side,aligned", [
    (10.017, 1, 10.01), (10.017, -1, 10.02), (10.01, 1, 10.01), (10.01, -1, 10.01),
])
def test_align_to_tick_never_against_the_trader(price, side, aligned):
    got, diff = align_to_tick(price, US.tick_size, side)
    assert got == aligned
    assert diff == pytest.approx(aligned - price)
