"""Pre-trade risk: every rule passing and denying (hand numbers), trading states, trips, audit."""

from __future__ import annotations

import itertools

import pytest

from bridge.errors import ConfigError, ValidationError
from bridge.risk import (
    ALLOWED,
    AccountView,
    AvailableCash,
    Blacklist,
    Decision,
    DuplicateOrder,
    GrossExposure,
    MaxOrderNotional,
    MaxOrderQuantity,
    MaxPositionWeight,
    PatternDayTrader,
    PriceBand,
    RiskEngine,
    RiskOrder,
    SubmitRate,
    TradingState,
    UpstreamState,
)

_ids = itertools.count(1)
T0 = 1_700_000_000_000  # ms since the epoch


def order(side="buy", quantity=100, price=100.0, instrument="AAPL", ts_ms=T0, **kw):
    kw.setdefault("client_order_id", f"c-{next(_ids)}")
    return RiskOrder(instrument=instrument, side=side, quantity=quantity, price=price,
                     ts_ms=ts_ms, **kw)


def account(**kw):
    """Cash 100,000; AAPL 200 @ 100 (20,000), MSFT 100 @ 300 (30,000): equity 150,000."""
    base = dict(cash=100_000.0, positions={"AAPL": 200, "MSFT": 100},
                prices={"AAPL": 100.0, "MSFT": 300.0}, equity=150_000.0)
    base.update(kw)
    return AccountView(**base)


def one(rule, o, a=None):
    """Run one rule through an engine (so on_allowed hooks run too)."""
    return RiskEngine([rule]).check(o, a or account())


# ------------------------------------------------------------------------------ records


def test_order_record_validates_once():
    with pytest.raises(ValidationError, match="side"):
        order(side="short")
    with pytest.raises(ValidationError, match="quantity"):
        order(quantity=0)
    with pytest.raises(ValidationError, match="price"):
        order(price=float("nan"))


def test_account_from_book_computes_equity():
    a = AccountView.from_book(100_000.0, {"AAPL": 200, "MSFT": 100}, {"AAPL": 100.0, "MSFT": 300.0})
    assert a.equity == 150_000.0
    with pytest.raises(ValidationError, match="no last price"):
        AccountView.from_book(0.0, {"XYZ": 1}, {})


# ------------------------------------------------------------------------------ size and exposure


def test_max_order_notional():
    rule = MaxOrderNotional(50_000)
    assert one(rule, order(quantity=500, price=100.0)) is ALLOWED       # 50,000 == cap
    d = one(rule, order(quantity=501, price=100.0))                     # 50,100 > 50,000
    assert (d.allowed, d.reason) == (False, "NOTIONAL_EXCEEDS_MAX_PER_ORDER")
    assert "50,100.00" in d.message and "50,000.00" in d.message
    tight = MaxOrderNotional(50_000, per_instrument={"AAPL": 10_000})
    assert not one(tight, order(quantity=101, price=100.0)).allowed     # 10,100 > 10,000
    assert one(tight, order(quantity=101, price=100.0, instrument="MSFT")).allowed


def test_max_order_quantity():
    rule = MaxOrderQuantity(1_000)
    assert one(rule, order(quantity=1_000)).allowed
    d = one(rule, order(quantity=1_001, price=1.0))
    assert d.reason == "QUANTITY_EXCEEDS_MAXIMUM" and "1001" in d.message


def test_max_position_weight_after_fill():
    rule = MaxPositionWeight(0.20)                       # 20 % of 150,000 = 30,000
    assert one(rule, order(quantity=100)).allowed        # AAPL (200 + 100) * 100 = 30,000
    d = one(rule, order(quantity=101))                   # 30,100 = 20.07 %
    assert d.reason == "POSITION_WEIGHT_EXCEEDS_MAX" and "20.07%" in d.message
    over = MaxPositionWeight(0.10)                       # MSFT 30,000 = 20 % already over 10 %
    assert one(over, order("sell", 10, 300.0, "MSFT")).allowed          # shrinking passes
    assert one(over, order("buy", 1, 300.0, "MSFT")).reason == "POSITION_WEIGHT_EXCEEDS_MAX"
    # a short is weighed by its absolute value: sell 500 AAPL -> -300 * 100 = 30,000 = 20 %
    assert one(rule, order("sell", 500)).allowed
    assert not one(rule, order("sell", 501)).allowed


def test_gross_exposure_after_fill():
    rule = GrossExposure(1.0)           # gross 20,000 + 30,000 = 50,000; equity 150,000
    assert one(rule, order(quantity=1_000)).allowed      # AAPL 1,200 * 100 + 30,000 = 150,000
    d = one(rule, order(quantity=1_001))                 # 150,100 > 150,000
    assert d.reason == "GROSS_EXPOSURE_EXCEEDS_MAX" and "150,100.00" in d.message
    # the ordered instrument is valued at the order's price: (200 + 900) * 110 + 30,000
    # = 151,000 > 150,000
    assert not one(rule, order(quantity=900, price=110.0)).allowed
    assert one(rule, order("sell", 200)).allowed         # closing a position always passes
    blind = account(positions={"AAPL": 200, "XYZ": 10})
    d = one(rule, order(quantity=1), blind)
    assert not d.allowed and "XYZ" in d.message          # fail closed: no price for a holding


def test_available_cash_with_fee_buffer():
    rule = AvailableCash(fee_buffer_bps=10)              # cash 100,000
    assert one(rule, order(quantity=999)).allowed        # 99,900 * 1.001 = 99,999.90
    d = one(rule, order(quantity=1_000))                 # 100,000 * 1.001 = 100,100.00
    assert d.reason == "NOTIONAL_EXCEEDS_FREE_BALANCE"
    assert "100,100.00" in d.message and "100,000.00" in d.message
    assert one(rule, order("sell", 10_000)).allowed      # sells need no cash


def test_blacklist():
    rule = Blacklist({"XYZ"})
    a = account(positions={"XYZ": 50}, prices={"XYZ": 10.0})
    d = one(rule, order(instrument="XYZ", quantity=1), a)
    assert d.reason == "INSTRUMENT_BLACKLISTED" and "XYZ" in d.message
    assert one(rule, order("sell", 50, 10.0, "XYZ"), a).allowed          # exiting passes
    assert not one(rule, order("sell", 60, 10.0, "XYZ"), a).allowed      # a flip opens a short
    assert one(rule, order(instrument="AAPL"), a).allowed
    strict = Blacklist({"XYZ"}, allow_reducing=False)
    assert not one(strict, order("sell", 50, 10.0, "XYZ"), a).allowed
    with pytest.raises(ConfigError):
        Blacklist("XYZ")


# ------------------------------------------------------------------------------ flow control


def test_submit_rate_token_bucket_with_injected_time():
    engine = RiskEngine([SubmitRate(rate_per_s=2, burst=2)])
    a = account()
    assert engine.check(order(ts_ms=T0), a).allowed
    assert engine.check(order(ts_ms=T0), a).allowed
    third = engine.check(order(ts_ms=T0), a)
    assert (third.allowed, third.reason) == (False, "RATE_LIMIT_EXCEEDED")
    assert "next slot in 500 ms" in third.message
    assert engine.check(order(ts_ms=T0 + 499), a).allowed is False     # 0.998 tokens
    assert engine.check(order(ts_ms=T0 + 500), a).allowed              # 1 token back
    assert engine.check(order(ts_ms=T0 + 500), a).allowed is False
    assert engine.check(order(ts_ms=T0 + 200), a).allowed is False     # time back: no refill
    assert engine.denied["RATE_LIMIT_EXCEEDED"] == 4


def test_submit_rate_token_only_for_sent_orders():
    # a denial by an earlier rule costs no token
    engine = RiskEngine([MaxOrderQuantity(100), SubmitRate(rate_per_s=1, burst=1)])
    a = account()
    assert engine.check(order(quantity=101, ts_ms=T0), a).reason == "QUANTITY_EXCEEDS_MAXIMUM"
    assert engine.check(order(quantity=100, ts_ms=T0), a).allowed


def test_duplicate_order():
    engine = RiskEngine([DuplicateOrder(window_ms=1_000)])
    a = account()
    assert engine.check(order(client_order_id="x-1", ts_ms=T0), a).allowed
    d = engine.check(order(client_order_id="x-1", ts_ms=T0 + 60_000), a)
    assert d.reason == "DUPLICATE_ORDER" and "'x-1'" in d.message
    d = engine.check(order(ts_ms=T0 + 999), a)                  # same AAPL buy 100, 999 ms on
    assert d.reason == "DUPLICATE_ORDER" and "999 ms" in d.message
    assert engine.check(order(quantity=101, ts_ms=T0 + 999), a).allowed    # other quantity
    assert engine.check(order(side="sell", ts_ms=T0 + 999), a).allowed     # other side
    assert engine.check(order(ts_ms=T0 + 1_000), a).allowed                # window over


def test_duplicate_guard_forgets_denied_orders():
    engine = RiskEngine([AvailableCash(0), DuplicateOrder()])
    poor = account(cash=0.0)
    d = engine.check(order(client_order_id="y-1"), poor)
    assert d.reason == "NOTIONAL_EXCEEDS_FREE_BALANCE"
    assert engine.check(order(client_order_id="y-1"), account()).allowed   # corrected, re-sent


def test_price_band():
    rule = PriceBand(band_bps=500)                        # last AAPL 100: 95 .. 105
    assert one(rule, order(price=105.0)).allowed
    assert one(rule, order(price=95.0)).allowed
    d = one(rule, order(price=105.5))
    assert d.reason == "PRICE_OUTSIDE_BAND" and "+550 bps" in d.message
    assert one(rule, order(price=94.5)).reason == "PRICE_OUTSIDE_BAND"
    d = one(rule, order(instrument="NEW"))
    assert not d.allowed and "no last price" in d.message


# ------------------------------------------------------------------------------ PDT


def test_pattern_day_trader():
    rule = PatternDayTrader()                             # 25,000, 3 day trades
    small = account(equity=20_000.0, is_margin=True, day_trades=3,
                    bought_today={"AAPL"}, sold_today={"MSFT"})
    d = one(rule, order("sell", 100, instrument="AAPL"), small)   # would be day trade #4
    assert d.reason == "PATTERN_DAY_TRADER" and "#4" in d.message and "20,000.00" in d.message
    assert one(rule, order("buy", 10, 300.0, "MSFT"), small).reason == "PATTERN_DAY_TRADER"
    assert one(rule, order("buy", 100, instrument="AAPL"), small).allowed  # no round trip
    assert one(rule, order("sell", 10, 300.0, "MSFT"), small).allowed      # not bought today
    small.day_trades = 2
    assert one(rule, order("sell", 100), small).allowed                    # 3rd is still fine
    small.day_trades = 3
    small.equity = 25_000.0
    assert one(rule, order("sell", 100), small).allowed                    # 25k+ may day-trade
    cash_account = account(equity=20_000.0, is_margin=False, day_trades=3, bought_today={"AAPL"})
    assert one(rule, order("sell", 100), cash_account).allowed             # cash account


# ------------------------------------------------------------------------------ upstream state


def test_upstream_warmup_and_guard_deny():
    engine = RiskEngine([UpstreamState()])
    d = engine.check(order(warmup=True, strategy_id="mom"), account())
    assert (d.allowed, d.reason, d.throttle) == (False, "WARMUP", False)
    assert "warming up" in d.message
    d = engine.check(order(guard_reason="stale feed"), account())
    assert d.reason == "GUARD_STALE_FEED" and "'stale feed'" in d.message
    assert engine.check(order(guard_reason=""), account()) is ALLOWED
    assert engine.denied == {"WARMUP": 1, "GUARD_STALE_FEED": 1}


def test_low_consistency_one_in_n_is_deterministic():
    def run():
        engine = RiskEngine([UpstreamState(min_consistency=0.5, every_n=3)])
        a = account()
        out = [engine.check(order(consistency=0.2, strategy_id="mom"), a) for _ in range(6)]
        return engine, out

    engine, out = run()
    assert [d.allowed for d in out] == [True, False, False, True, False, False]
    assert all(d.throttle and d.reason == "LOW_CONSISTENCY" for d in out)
    assert "let through (1 in 3)" in out[0].message and "dropped" in out[1].message
    assert engine.throttled == {"low_consistency": 6}     # executor_throttle_total
    assert engine.denied == {"LOW_CONSISTENCY": 4}
    assert [d.allowed for d in run()[1]] == [d.allowed for d in out]     # replay: same picks
    # counted per strategy; known-good or unknown consistency is not throttled
    assert engine.check(order(consistency=0.2, strategy_id="rev"), account()).allowed
    assert engine.check(order(consistency=0.5, strategy_id="mom"), account()) is ALLOWED
    assert engine.check(order(consistency=None, strategy_id="mom"), account()) is ALLOWED


def test_throttled_order_still_faces_the_other_rules():
    engine = RiskEngine([UpstreamState(every_n=1), MaxOrderQuantity(10)])
    d = engine.check(order(quantity=11, consistency=0.1), account())
    assert (d.allowed, d.reason, d.throttle) == (False, "QUANTITY_EXCEEDS_MAXIMUM", True)
    assert engine.check(order(quantity=10, consistency=0.1), account()).allowed


# ------------------------------------------------------------------------------ trading state


def test_reducing_lets_only_reducing_orders_through():
    engine = RiskEngine([], TradingState.REDUCING)
    a = account(positions={"AAPL": 200, "TSLA": -50}, prices={"AAPL": 100.0, "TSLA": 200.0})
    assert engine.check(order("sell", 200), a).allowed                     # sell the long
    d = engine.check(order("sell", 201), a)                                # over-sell
    assert d.reason == "TRADING_STATE_REDUCING" and "exceeds the long position 200" in d.message
    d = engine.check(order("buy", 1), a)
    assert d.reason == "TRADING_STATE_REDUCING" and "adds exposure" in d.message
    assert not engine.check(order("sell", 1, instrument="MSFT"), a).allowed   # would open short
    assert engine.check(order("buy", 50, 200.0, "TSLA"), a).allowed          # cover the short
    assert not engine.check(order("buy", 51, 200.0, "TSLA"), a).allowed
    assert engine.denied["TRADING_STATE_REDUCING"] == 4


def test_reducing_orders_still_face_the_rules():
    engine = RiskEngine([MaxOrderQuantity(100)], TradingState.REDUCING)
    assert engine.check(order("sell", 150), account()).reason == "QUANTITY_EXCEEDS_MAXIMUM"


def test_halted_denies_everything():
    engine = RiskEngine.default(state=TradingState.HALTED)
    for o in (order("buy", 1), order("sell", 1), order("sell", 200)):
        d = engine.check(o, account())
        assert (d.allowed, d.reason) == (False, "TRADING_HALTED")
        assert "cancels only" in d.message
    assert engine.denied == {"TRADING_HALTED": 3}


def test_kill_switch_by_hand_is_audited():
    seen = []
    engine = RiskEngine([], on_audit=seen.append)
    rec = engine.set_state("HALTED", "fat finger on desk 3", "alice", T0)
    assert rec == {"ts_ms": T0, "from": "ACTIVE", "to": "HALTED",
                   "reason": "fat finger on desk 3", "actor": "alice"}
    assert engine.state is TradingState.HALTED and seen == [rec] and engine.audit == [rec]
    assert engine.set_state(TradingState.HALTED, "again", "alice", T0 + 1) is None   # no change
    engine.set_state(TradingState.ACTIVE, "reviewed", "bob", T0 + 2)
    assert [r["to"] for r in engine.audit] == ["HALTED", "ACTIVE"]
    with pytest.raises(ConfigError):
        engine.set_state("PAUSED", "x", "bob", T0)
    with pytest.raises(ConfigError):
        engine.set_state("HALTED", "", "bob", T0)


def test_drawdown_trips_halted_and_is_audited():
    seen = []
    engine = RiskEngine([], max_drawdown=0.10, on_audit=seen.append)
    # exactly 10 % from the peak is not beyond the limit
    assert engine.update_account(account(equity=90_000.0, peak_equity=100_000.0), T0) \
        is TradingState.ACTIVE
    assert engine.update_account(account(equity=89_000.0, peak_equity=100_000.0), T0 + 1) \
        is TradingState.HALTED                                             # 11 % > 10 %
    (rec,) = seen
    assert (rec["from"], rec["to"], rec["actor"], rec["ts_ms"]) == \
        ("ACTIVE", "HALTED", "risk_engine", T0 + 1)
    assert rec["reason"].startswith("MAX_DRAWDOWN:") and "11.00%" in rec["reason"]
    assert engine.check(order(), account()).reason == "TRADING_HALTED"
    engine.update_account(account(equity=100_000.0, peak_equity=100_000.0), T0 + 2)
    assert engine.state is TradingState.HALTED                             # sticky
    assert len(engine.audit) == 1


def test_daily_loss_trips_reducing_then_drawdown_halts():
    engine = RiskEngine([], max_drawdown=0.20, max_daily_loss=0.05)
    a = account(equity=95_000.0, day_start_equity=100_000.0, peak_equity=110_000.0)
    assert engine.update_account(a, T0) is TradingState.ACTIVE            # 5 % is the limit
    a.equity = 94_000.0                                     # 6 % > 5 %; drawdown 14.5 % < 20 %
    assert engine.update_account(a, T0 + 1) is TradingState.REDUCING
    rec = engine.audit[-1]
    assert (rec["from"], rec["to"]) == ("ACTIVE", "REDUCING")
    assert rec["reason"].startswith("MAX_DAILY_LOSS:") and "6.00%" in rec["reason"]
    assert engine.check(order("buy", 1), a).reason == "TRADING_STATE_REDUCING"
    assert engine.check(order("sell", 100), a).allowed
    a.equity = 85_000.0                                    # 1 - 85,000 / 110,000 = 22.7 %
    assert engine.update_account(a, T0 + 2) is TradingState.HALTED
    assert [(r["from"], r["to"]) for r in engine.audit] == [("ACTIVE", "REDUCING"),
                                                            ("REDUCING", "HALTED")]


def test_both_limits_breached_halts_once():
    engine = RiskEngine([], max_drawdown=0.10, max_daily_loss=0.05)
    engine.update_account(account(equity=80_000.0, day_start_equity=100_000.0,
                                  peak_equity=100_000.0), T0)
    assert engine.state is TradingState.HALTED and len(engine.audit) == 1


def test_audit_sink_failure_does_not_undo_the_kill_switch():
    def broken(_record):
        raise OSError("disk full")

    engine = RiskEngine([], on_audit=broken)
    with pytest.raises(OSError):
        engine.set_state("HALTED", "panic", "alice", T0)
    assert engine.state is TradingState.HALTED and len(engine.audit) == 1


# ------------------------------------------------------------------------------ engine


def test_denied_decision_carries_reason_and_message_first_failure_wins():
    engine = RiskEngine([MaxOrderQuantity(10), MaxOrderNotional(100)])
    d = engine.check(order(quantity=50, price=10.0), account())   # both fail: the first wins
    assert isinstance(d, Decision)
    assert d == Decision(False, "QUANTITY_EXCEEDS_MAXIMUM", d.message, False)
    assert d.message.startswith("order quantity 50 shares of AAPL exceeds")
    assert engine.denied == {"QUANTITY_EXCEEDS_MAXIMUM": 1}
    with pytest.raises(Exception):
        d.allowed = True                                          # frozen


def test_default_engine_has_every_rule_and_passes_a_normal_order():
    engine = RiskEngine.default()
    codes = [r.code for r in engine.rules]
    assert codes == ["UPSTREAM_STATE", "INSTRUMENT_BLACKLISTED", "QUANTITY_EXCEEDS_MAXIMUM",
                     "NOTIONAL_EXCEEDS_MAX_PER_ORDER", "PRICE_OUTSIDE_BAND",
                     "NOTIONAL_EXCEEDS_FREE_BALANCE", "POSITION_WEIGHT_EXCEEDS_MAX",
                     "GROSS_EXPOSURE_EXCEEDS_MAX", "PATTERN_DAY_TRADER", "DUPLICATE_ORDER",
                     "RATE_LIMIT_EXCEEDED"]
    a = account(prices={"AAPL": 100.0, "MSFT": 300.0, "NVDA": 100.0})
    # NVDA 50 * 100 = 5,000: 3.3 % of equity, gross 55,000 / 150,000, cash and band fine
    assert engine.check(order(quantity=50, instrument="NVDA", consistency=0.9), a) is ALLOWED
    aapl = engine.check(order(quantity=50, consistency=0.9), a)   # AAPL 250 * 100 = 16.7 %
    assert aapl.reason == "POSITION_WEIGHT_EXCEEDS_MAX"
    assert (engine.max_drawdown, engine.max_daily_loss) == (0.20, 0.05)


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError):
        MaxOrderNotional(-1)
    with pytest.raises(ConfigError):
        SubmitRate(rate_per_s=1, burst=0.5)
    with pytest.raises(ConfigError):
        UpstreamState(every_n=0)
    with pytest.raises(ConfigError):
        RiskEngine([object()])
    with pytest.raises(ConfigError):
        RiskEngine([], max_drawdown=1.5)
