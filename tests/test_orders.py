"""The order state machine, fills and client order ids (bridge.execution.orders)."""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import BridgeError, ConfigError
from bridge.execution import (
    OPEN,
    TERMINAL,
    TRANSITIONS,
    Fill,
    FillError,
    IllegalTransition,
    LateFillAfterTerminal,
    Order,
    OrderStatus,
    OverfillError,
    check_transition,
    client_order_id,
)
from bridge.execution.orders import TRANSITION_NOTES

S = OrderStatus
ALL_PAIRS = list(itertools.product(OrderStatus, OrderStatus))
COID = "b-test"


def make_order(quantity: float = 300.0, status: OrderStatus = S.INITIALIZED, **kw) -> Order:
    order = Order(client_order_id=COID, instrument="AAPL", side="buy", quantity=quantity,
                  order_type=kw.pop("order_type", "limit"),
                  limit_price=kw.pop("limit_price", 10.05),
                  time_in_force="day", created_ts_ms=1_000, decision_snapshot_id="ds-1",
                  strategy_id="momentum_top50", **kw)
    # Walk the ordinary path so the order reaches ``status`` through the table.
    path = {S.INITIALIZED: [], S.SUBMITTED: [S.SUBMITTED], S.ACCEPTED: [S.SUBMITTED, S.ACCEPTED],
            S.CANCELED: [S.SUBMITTED, S.ACCEPTED, S.CANCELED],
            S.EXPIRED: [S.SUBMITTED, S.ACCEPTED, S.EXPIRED],
            S.REJECTED: [S.SUBMITTED, S.REJECTED], S.DENIED: [S.DENIED],
            S.PENDING_CANCEL: [S.SUBMITTED, S.ACCEPTED, S.PENDING_CANCEL],
            S.PENDING_UPDATE: [S.SUBMITTED, S.ACCEPTED, S.PENDING_UPDATE]}[status]
    for i, st_ in enumerate(path):
        order.transition(st_, 1_001 + i)
    return order


def fill(exec_id: str, quantity: float, price: float, **kw) -> Fill:
    base = dict(client_order_id=COID, broker_order_id="brk-1", instrument="AAPL", side="buy",
                commission=0.0, fees=0.0, ts_ms=2_000)
    base.update(kw)
    return Fill(exec_id, base.pop("client_order_id"), base.pop("broker_order_id"),
                base.pop("instrument"), base.pop("side"), quantity, price, **base)


# -- the transition table ----------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_pair_allowed_iff_in_table(a, b):
    if (a, b) in TRANSITIONS:
        check_transition(a, b, "c-1")
    else:
        with pytest.raises(IllegalTransition) as ei:
            check_transition(a, b, "c-1")
        err = ei.value
        assert isinstance(err, BridgeError)
        assert (err.from_status, err.to_status, err.client_order_id) == (a, b, "c-1")


def test_table_shape():
    assert len(ALL_PAIRS) == 121
    assert TERMINAL == {S.DENIED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}
    # the only same-status pair
    assert {(a, b) for a, b in TRANSITIONS if a == b} == {(S.PARTIALLY_FILLED, S.PARTIALLY_FILLED)}
    # nothing leaves DENIED, FILLED or REJECTED; CANCELED/EXPIRED only to FILLED (late fill)
    out = {a: {b for x, b in TRANSITIONS if x == a} for a in OrderStatus}
    assert out[S.DENIED] == out[S.FILLED] == out[S.REJECTED] == set()
    assert out[S.CANCELED] == out[S.EXPIRED] == {S.FILLED}
    # DENIED comes only from INITIALIZED (never sent); INITIALIZED only to DENIED or SUBMITTED
    assert {a for a, b in TRANSITIONS if b == S.DENIED} == {S.INITIALIZED}
    assert out[S.INITIALIZED] == {S.DENIED, S.SUBMITTED}
    # the real-world pairs the brief asks for
    for pair in [(S.PENDING_CANCEL, S.PARTIALLY_FILLED), (S.PENDING_CANCEL, S.FILLED),
                 (S.PENDING_CANCEL, S.ACCEPTED), (S.SUBMITTED, S.FILLED),
                 (S.SUBMITTED, S.REJECTED), (S.SUBMITTED, S.CANCELED), (S.SUBMITTED, S.EXPIRED),
                 (S.PENDING_UPDATE, S.ACCEPTED), (S.PENDING_UPDATE, S.PARTIALLY_FILLED),
                 (S.PENDING_UPDATE, S.FILLED), (S.PENDING_UPDATE, S.CANCELED),
                 (S.PENDING_UPDATE, S.REJECTED)]:
        assert pair in TRANSITIONS, pair
    assert (S.CANCELED, S.PARTIALLY_FILLED) not in TRANSITIONS
    # every note belongs to a pair of the table
    assert set(TRANSITION_NOTES) <= TRANSITIONS


def test_illegal_transition_logged_at_error(caplog):
    with caplog.at_level(logging.ERROR, logger="bridge.execution"):
        with pytest.raises(IllegalTransition):
            check_transition(S.FILLED, S.CANCELED, "c-9")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "FILLED -> CANCELED" in caplog.text and "c-9" in caplog.text


def test_order_transition_records_history_and_reasons():
    o = make_order()
    o.transition(S.SUBMITTED, 1_100)
    o.transition(S.REJECTED, 1_200, "insufficient_buying_power")
    assert o.status is S.REJECTED and o.reject_reason == "insufficient_buying_power"
    assert o.history == [(1_100, S.INITIALIZED, S.SUBMITTED, ""),
                         (1_200, S.SUBMITTED, S.REJECTED, "insufficient_buying_power")]
    assert o.last_status_ts_ms == 1_200 and o.is_terminal and not o.is_open
    with pytest.raises(IllegalTransition):
        o.transition(S.ACCEPTED, 1_300)
    assert o.status is S.REJECTED and len(o.history) == 2

    d = make_order()
    d.transition("DENIED", 1_100, "max_notional")
    assert d.deny_reason == "max_notional" and d.reject_reason == ""
    # same-status no-op is illegal except PARTIALLY_FILLED -> PARTIALLY_FILLED
    a = make_order(status=S.ACCEPTED)
    with pytest.raises(IllegalTransition):
        a.transition(S.ACCEPTED, 1_500)


def test_open_and_inflight():
    assert make_order(status=S.SUBMITTED).is_open      # an unknown outcome may be working
    assert make_order(status=S.SUBMITTED).is_inflight
    assert not make_order().is_open
    assert make_order(status=S.PENDING_CANCEL).is_open
    assert OPEN.isdisjoint(TERMINAL) and S.INITIALIZED not in OPEN


def test_order_refuses_bad_fields():
    with pytest.raises(ConfigError):
        make_order(order_type="limit", limit_price=None)
    with pytest.raises(ConfigError):
        make_order(order_type="market", limit_price=10.0)
    with pytest.raises(ConfigError):
        make_order(quantity=0.0)
    with pytest.raises(ConfigError):
        make_order(filled_quantity=5.0)


# -- fills -------------------------------------------------------------------------------------


def test_partial_fills_accumulate_with_exact_average():
    o = make_order(300.0, S.ACCEPTED)
    assert o.apply_fill(fill("e1", 100, 10.01, commission=0.35, fees=0.01))
    assert o.status is S.PARTIALLY_FILLED and o.remaining == 200.0
    assert o.apply_fill(fill("e2", 50, 10.02, commission=0.35, fees=0.02))
    assert o.status is S.PARTIALLY_FILLED and o.remaining == 150.0
    assert o.apply_fill(fill("e3", 150, 10.03, commission=0.3, fees=0.03))
    assert o.status is S.FILLED and o.remaining == 0.0 and o.is_terminal
    expected = (100 * Fraction("10.01") + 50 * Fraction("10.02") + 150 * Fraction("10.03")) / 300
    assert expected == Fraction(30065, 3000)
    assert o.avg_fill_price == float(expected)
    assert o.filled_quantity == 300.0
    assert o.commission == 1.0 and o.fees == 0.06   # exact decimal sums (0.35+0.35+0.3)
    assert [h[2] for h in o.history[-3:]] == [S.PARTIALLY_FILLED] * 2 + [S.FILLED]
    assert o.broker_order_id == "brk-1"
    rec = o.to_record()
    assert rec["status"] == "FILLED" and rec["n_fills"] == 3 and rec["remaining"] == 0.0


def test_fill_dedup_by_exec_id(caplog):
    o = make_order(300.0, S.ACCEPTED)
    f = fill("e1", 100, 10.0)
    assert o.apply_fill(f) is True
    before = o.to_record(), list(o.history)
    assert o.apply_fill(f) is False
    assert o.apply_fill(fill("e1", 100, 10.0, raw={"again": 1})) is False   # raw is not identity
    assert (o.to_record(), o.history) == before
    with caplog.at_level(logging.WARNING, logger="bridge.execution"):
        assert o.apply_fill(fill("e1", 50, 11.0)) is False   # same id, other content: kept first
    assert o.filled_quantity == 100.0 and "duplicate exec_id" in caplog.text


def test_remaining_exact_with_decimal_fractions():
    o = make_order(0.3, S.ACCEPTED)
    o.apply_fill(fill("e1", 0.1, 10.0))
    assert o.remaining == 0.2          # not 0.19999999999999998
    o.apply_fill(fill("e2", 0.2, 10.0))
    assert o.status is S.FILLED and o.remaining == 0.0   # 0.1 + 0.2 fills 0.3 exactly


def test_overfill_raises_and_changes_nothing():
    o = make_order(100.0, S.ACCEPTED)
    o.apply_fill(fill("e1", 60, 10.0))
    snap = o.to_record()
    with pytest.raises(OverfillError) as ei:
        o.apply_fill(fill("e2", 41, 10.0))
    assert ei.value.field == "quantity" and ei.value.reason == "overfill"
    assert ei.value.fill.exec_id == "e2"            # kept for reconciliation
    assert o.to_record() == snap and "e2" not in o.fills
    o.apply_fill(fill("e3", 40, 10.0))
    with pytest.raises(OverfillError):
        o.apply_fill(fill("e4", 1, 10.0))           # any fill on a FILLED order overfills


@pytest.mark.parametrize(("name", "value"),
                         [("instrument", "MSFT"), ("side", "sell"), ("client_order_id", "b-other")])
def test_fill_for_another_order_raises(name, value):
    o = make_order(100.0, S.ACCEPTED)
    with pytest.raises(FillError) as ei:
        o.apply_fill(fill("e1", 10, 10.0, **{name: value}))
    assert ei.value.field == name and ei.value.reason == "mismatch"
    assert o.fills == {} and o.status is S.ACCEPTED


def test_fill_on_never_sent_order_is_illegal():
    o = make_order(100.0)
    with pytest.raises(IllegalTransition):
        o.apply_fill(fill("e1", 10, 10.0))
    assert o.fills == {} and o.filled_quantity == 0.0


@pytest.mark.parametrize("status", [S.SUBMITTED, S.PENDING_CANCEL, S.PENDING_UPDATE])
def test_fills_in_flight_follow_the_table(status):
    o = make_order(100.0, status)
    o.apply_fill(fill("e1", 40, 10.0))
    assert o.status is S.PARTIALLY_FILLED
    o.apply_fill(fill("e2", 60, 10.0))
    assert o.status is S.FILLED


def test_malformed_fill_refused():
    for kw, name in [(dict(quantity=0), "quantity"), (dict(price=-1.0), "price"),
                     (dict(price=float("nan")), "price"), (dict(side="BUY"), "side")]:
        q, p = kw.pop("quantity", 10), kw.pop("price", 10.0)
        with pytest.raises(FillError) as ei:
            fill("e1", q, p, **kw)
        assert ei.value.field == name and ei.value.reason == "invalid"
    with pytest.raises(FillError):
        Fill("", COID, None, "AAPL", "buy", 1, 1.0, 0.0, 0.0, 0)


# -- the late-fill rule ------------------------------------------------------------------------


def test_late_partial_fill_after_cancel_recorded_not_reopened(caplog):
    o = make_order(100.0, S.ACCEPTED)
    o.apply_fill(fill("e1", 30, 10.0))
    o.transition(S.PENDING_CANCEL, 2_100)
    o.transition(S.CANCELED, 2_200)
    with caplog.at_level(logging.WARNING, logger="bridge.execution"):
        assert o.apply_fill(fill("e2", 20, 10.5, ts_ms=2_150)) is True
    assert o.status is S.CANCELED and o.is_terminal and not o.is_open
    assert o.filled_quantity == 50.0 and o.avg_fill_price == 10.2 and o.remaining == 50.0
    assert o.anomalies == [LateFillAfterTerminal(COID, "e2", S.CANCELED, S.CANCELED, 20.0, 2_150)]
    assert o.history[-1] == (2_150, S.CANCELED, S.CANCELED, "late fill e2 after CANCELED")
    assert "late fill e2" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING


@pytest.mark.parametrize("terminal", [S.CANCELED, S.EXPIRED])
def test_late_fill_completing_the_order_becomes_filled(terminal):
    o = make_order(100.0, terminal)
    assert o.apply_fill(fill("e1", 100, 10.0))
    assert o.status is S.FILLED and o.remaining == 0.0
    assert o.anomalies[0].status is terminal and o.anomalies[0].new_status is S.FILLED


@pytest.mark.parametrize("terminal", [S.REJECTED, S.DENIED])
def test_fill_after_refusal_kept_and_flagged_at_error(terminal, caplog):
    o = make_order(100.0, terminal)
    with caplog.at_level(logging.WARNING, logger="bridge.execution"):
        assert o.apply_fill(fill("e1", 100, 10.0))
    assert o.status is terminal and o.filled_quantity == 100.0   # status stays; shares counted
    assert len(o.anomalies) == 1 and caplog.records[-1].levelno == logging.ERROR


# -- client order ids --------------------------------------------------------------------------


def test_client_order_id_deterministic_and_sensitive():
    args = ("ds-3c84ee2d28db2cdb", "AAPL", "buy", 100.0, 1_282_550_400_000)
    cid = client_order_id(*args)
    assert cid == client_order_id(*args)
    assert cid.startswith("b-") and len(cid) == 32 and len(cid) <= 48
    int(cid[2:], 16)
    assert client_order_id(args[0], args[1], args[2], 100, args[4]) == cid   # 100 == 100.0
    variants = [("ds-other", "AAPL", "buy", 100.0, args[4]),
                (args[0], "MSFT", "buy", 100.0, args[4]),
                (args[0], "AAPL", "sell", 100.0, args[4]),
                (args[0], "AAPL", "buy", 101.0, args[4]),
                (args[0], "AAPL", "buy", 100.5, args[4]),
                (args[0], "AAPL", "buy", 100.0, args[4] + 1)]
    ids = {client_order_id(*v) for v in variants}
    assert len(ids) == len(variants) and cid not in ids
    # no ambiguity from joining: "A|B" + "C" differs from "A" + "B|C"
    assert client_order_id("s|x", "y", "buy", 1.0, 0) != client_order_id("s", "x|y", "buy", 1.0, 0)


def test_client_order_id_refuses_bad_input():
    for bad in [("s", "AAPL", "BUY", 1.0, 0), ("s", "AAPL", "buy", 0.0, 0),
                ("s", "AAPL", "buy", float("inf"), 0), ("s", "AAPL", "buy", 1.0, 1.5),
                ("s", "AAPL", "buy", 1.0, True)]:
        with pytest.raises(ConfigError):
            client_order_id(*bad)


# -- property: random fill sequences -----------------------------------------------------------

fills_st = st.lists(
    st.tuples(st.integers(0, 12),                       # exec_id index (collisions = duplicates)
              st.integers(1, 400),                       # quantity in thousandths of a share
              st.integers(1, 100_000)),                  # price in cents
    min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(order_milli=st.integers(1, 2_000), seq=fills_st)
def test_random_fill_sequences_never_overfill(order_milli, seq):
    qty = order_milli / 1000
    o = make_order(qty, S.ACCEPTED)
    applied: dict[str, tuple[Fraction, Fraction]] = {}
    for i, (eid, q_milli, cents) in enumerate(seq):
        f = fill(f"e{eid}", q_milli / 1000, cents / 100, ts_ms=3_000 + i)
        before = o.to_record()
        try:
            ok = o.apply_fill(f)
        except OverfillError:
            assert o.to_record() == before
            continue
        assert ok == (f.exec_id not in applied)
        if ok:
            applied[f.exec_id] = (Fraction(q_milli, 1000), Fraction(cents, 100))
        assert o.filled_quantity <= o.quantity
        assert o.remaining >= 0
        total = sum(q for q, _ in applied.values())
        assert o.filled_quantity == float(total)
        assert o.remaining == float(Fraction(order_milli, 1000) - total)
        prices = [float(p) for _, p in applied.values()]
        assert min(prices) <= o.avg_fill_price <= max(prices)
        exact = sum(q * p for q, p in applied.values()) / total
        assert o.avg_fill_price == float(exact)
        done = total == Fraction(order_milli, 1000)
        assert o.status is (S.FILLED if done else S.PARTIALLY_FILLED)


finite = st.floats(min_value=-1e300, max_value=1e300)        # sums of a few stay in range
positive = st.floats(min_value=5e-324, max_value=1e300)


@settings(max_examples=300, deadline=None)
@given(quantity=positive, seq=st.lists(st.tuples(positive, positive, finite, finite), min_size=1,
                                       max_size=8))
def test_fill_figures_are_the_exact_decimals_of_any_floats(quantity, seq):
    # the reference: every float as the Fraction of the decimal it prints as, summed exactly
    def exact(x):
        return Fraction(repr(float(x)))

    o = make_order(quantity, S.ACCEPTED)
    applied = []
    for i, (q, p, c, fee) in enumerate(seq):
        try:
            o.apply_fill(fill(f"e{i}", q, p, commission=c, fees=fee))
        except OverfillError:
            assert sum(exact(x[0]) for x in applied) + exact(q) > exact(quantity)
            continue
        applied.append((q, p, c, fee))
        qty = sum(exact(x[0]) for x in applied)
        assert o.filled_quantity == float(qty)
        assert o.avg_fill_price == float(sum(exact(x[0]) * exact(x[1]) for x in applied) / qty)
        assert o.commission == float(sum(exact(x[2]) for x in applied))
        assert o.fees == float(sum(exact(x[3]) for x in applied))
        assert o.remaining == float(exact(quantity) - qty)
        assert o.status is (S.FILLED if qty == exact(quantity) else S.PARTIALLY_FILLED)
        assert str(o.commission) != "-0.0" or not applied
