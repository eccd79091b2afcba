"""Embedded paper broker, SimExecutor and TradeRun: matching, faults, the end-to-end paper loop."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge.brokers.sim import FaultPlan, PaperBroker
from bridge.brokers.sim_executor import SimExecutor, advance_session
from bridge.brokers.slippage import FixedBps, VolumeShareImpact
from bridge.execution import OrderCtx, OrderStatus
from bridge.execution.metrics import ExecMetrics, sampled
from bridge.execution.run import SnapshotRequired, TradeRun
from bridge.market.rules import MarketRules
from bridge.risk import RiskEngine
from bridge.store import read_table

RULES = MarketRules(commission_bps=10.0, min_commission=1.0)
DAYS = ["2010-01-04", "2010-01-05", "2010-01-06"]


@pytest.fixture
def panel(panel_factory):
    # A: open 10, range 9.5..10.5 each day; volume 1,000 shares a day
    return panel_factory(DAYS, {"A": [10.2, 10.4, 10.1], "B": [20.0, 20.0, 20.0]},
                         volume=1_000.0, open_={"A": [10.0, 10.0, 10.0], "B": [20.0, 20.0, 20.0]})


def test_market_order_fills_at_open_with_fees(panel):
    b = PaperBroker(panel, 10_000.0, RULES, fill_at="open", participation=1.0)
    assert b.place_order("c1", "A", "buy", 100)["status"] == "accepted"
    f = b.run_session(0)
    assert [(x["quantity"], x["price"], x["commission"]) for x in f] == [(100.0, 10.0, 1.0)]
    assert b.get_account()["cash"] == 10_000 - 1_000 - 1
    assert b.get_positions()["A"]["qty"] == 100


def test_participation_caps_fills_and_gtc_carries_day_expires(panel):
    b = PaperBroker(panel, 1e6, RULES, participation=0.1)   # 100 shares of A per session
    b.place_order("gtc", "A", "buy", 150, time_in_force="gtc")
    b.place_order("day", "A", "buy", 50, time_in_force="day")
    s0 = b.run_session(0)
    assert [(x["client_order_id"], x["quantity"]) for x in s0] == [("gtc", 100.0)]
    assert b.get_order_by_client_id("day")["status"] == "expired"      # cap used up, day ends
    s1 = b.run_session(1)
    assert [(x["client_order_id"], x["quantity"]) for x in s1] == [("gtc", 50.0)]
    assert b.get_order_by_client_id("gtc")["status"] == "filled"


def test_limit_orders_fill_only_through_the_limit(panel):
    b = PaperBroker(panel, 1e6, RULES, participation=1.0)
    b.place_order("lo", "A", "buy", 10, "limit", 9.0, "gtc")      # low is 10.0: never
    b.place_order("hi", "A", "buy", 10, "limit", 10.05, "day")    # low 10.0 <= 10.05: at the open
    fills = b.run_session(0)
    assert [(x["client_order_id"], x["price"]) for x in fills] == [("hi", 10.0)]
    assert b.get_order_by_client_id("lo")["status"] == "accepted"


def test_venue_rejections(panel):
    b = PaperBroker(panel, 500.0, RULES)
    assert b.place_order("s", "A", "sell", 1)["reject_reason"] == "insufficient qty available for order"
    assert b.place_order("big", "B", "buy", 100)["reject_reason"] == "insufficient buying power"
    assert b.place_order("ok", "B", "buy", 10)["status"] == "accepted"
    assert b.place_order("ok", "B", "buy", 10)["reject_reason"] == "client_order_id must be unique"


def test_slippage_models():
    assert FixedBps(10).price(100.0, 1, 1, 1) == pytest.approx(100.1)
    assert FixedBps(10).price(100.0, -1, 1, 1) == pytest.approx(99.9)
    # 1% of the bar: 0.02 * sqrt(0.01) = 20 bps
    assert VolumeShareImpact(0.02).price(100.0, 1, 10, 1_000) == pytest.approx(100.2)
    assert VolumeShareImpact(0.02, max_bps=5).price(100.0, -1, 10, 1_000) == pytest.approx(99.95)


def _ctx(cid, inst="A", side="buy", qty=10.0):
    return OrderCtx(client_order_id=cid, instrument=inst, side=side, quantity=qty,
                    order_type="market", limit_price=None, time_in_force="day",
                    decision_snapshot_id="ds-x", strategy_id="s", ts_ms=1, event_ts_ms=1,
                    tick_size=0.01, step_size=1.0, px_intent=10.0)


@pytest.mark.parametrize("fault", ["timeout_before", "timeout_after", "error_before", "error_after"])
def test_fault_runs_no_duplicate_no_lost_orders(panel, fault):
    """1,000 submits per fault kind, a third of them hit: every order exists exactly once."""
    b = PaperBroker(panel, 1e9, RULES, seed=11, faults=FaultPlan(**{fault: 0.33, "query_error": 0.2}))
    ex = SimExecutor(b)
    final = {}
    for i in range(1_000):
        ctx = _ctx(f"c{i:04d}")
        res = ex.submit(ctx)
        tries = 0
        while res.status == "UNKNOWN" and tries < 20:   # in flight until the venue answers
            res, tries = ex.resolve(ctx), tries + 1
        final[ctx.client_order_id] = res.status
    venue = [o.client_order_id for o in b.orders.values()]
    assert len(venue) == len(set(venue))                    # zero duplicate broker orders
    assert set(venue) == set(final)                         # zero lost orders
    assert set(final.values()) == {"ACCEPTED"}              # every one resolved by query
    assert ex.unknown_outcomes.__reduce__()[1][0] > 100      # the faults really happened


def test_metrics_and_log_sampling():
    m = ExecMetrics()
    m.submit_total.labels(result="accepted", reason="").inc(3)
    m.risk_denied_total.labels(reason="WARMUP").inc()
    assert m.value("executor_submit_total", result="accepted", reason="") == 3
    assert "risk_denied_total" in m.text()
    share = np.mean([sampled(f"b-{i}") for i in range(100_000)])
    assert 0.008 < share < 0.012 and sampled("b-1") == sampled("b-1")


@pytest.mark.realdata
def test_paper_loop_on_real_data(sample_dir, tmp_path):
    """Snapshot -> risk -> paper broker -> fills -> bridge's book equals the broker's, twice."""
    from bridge.market.data import Panel, load_bars
    from bridge.planner.job import plan_tomorrow, read_positions
    from bridge.planner.tomorrow import PlanParams
    from bridge.portfolio import TopkDropout
    from bridge.research import momentum

    panel = Panel.from_bars(load_bars(sample_dir))
    preds = momentum(panel, 20)

    def one_run(db: Path):
        now = [int(pd.Timestamp("2010-08-12 20:00").value // 10**6)]
        broker = PaperBroker(panel, 1_000_000.0, fill_at="open", clock=lambda: now[0], seed=3,
                             faults=FaultPlan(timeout_after=0.2, error_before=0.1))
        ex = SimExecutor(broker)
        run = TradeRun(db, ex, RiskEngine.default(rate_per_s=1e4, burst=1e4, max_weight=0.2,
                                                  max_notional=1e6), lambda: now[0])
        book = read_positions(None)
        for day in ("2010-08-12", "2010-08-13"):
            broker._t = int(np.searchsorted(panel.sessions, np.datetime64(day)))
            params = PlanParams(topk=TopkDropout(topk=20, n_drop=4))
            cash = broker.get_account()["cash"]
            out = plan_tomorrow(preds[preds["datetime"] <= day], book, cash, params, sample_dir,
                                db, tmp_path / "out", created_at=datetime(2010, 8, 18))
            rep = run.submit_snapshot(out.snapshot.snapshot_id, now[0])
            advance_session(ex, out.snapshot.trade_date.date())
            run.collect(rep)
            assert all(o.is_terminal for o in rep.orders)        # nothing left unknown
            book = pd.DataFrame([{"instrument": i, "amount": p["qty"]}
                                 for i, p in broker.get_positions().items()])
            now[0] += 86_400_000
        return broker, run

    db = tmp_path / "a.duckdb"
    broker, run = one_run(db)
    local = read_table(db, "exec_position").to_pandas().set_index("instrument")["quantity"]
    remote = pd.Series({i: p["qty"] for i, p in broker.get_positions().items()}, dtype=float)
    assert len(local) >= 15 and local.sort_index().equals(remote.sort_index())
    acct = read_table(db, "exec_account", order_by="ts_ms, rowid").to_pandas().iloc[-1]
    assert acct["cash"] == broker.get_account()["cash"]             # to the cent
    orders = read_table(db, "exec_order")
    assert orders["client_order_id"].n_unique() == orders.height
    assert set(orders["status"]) <= {"FILLED", "DENIED", "REJECTED", "EXPIRED"}
    denied = orders.filter(orders["status"] == "DENIED")
    assert (denied["deny_reason"].str.len_chars() > 0).all()   # every denial says why
    fills = read_table(db, "exec_fill")
    assert fills["exec_id"].n_unique() == fills.height
    audit = read_table(db, "audit_log")
    assert (audit.filter(audit["kind"] == "ORDER_SUBMIT")["success"]).sum() >= 20
    # same inputs, same run: bit-identical orders and fills
    db2 = tmp_path / "b.duckdb"
    one_run(db2)
    for table, key in (("exec_order", "client_order_id"), ("exec_fill", "exec_id")):
        assert read_table(db, table).sort(key).equals(read_table(db2, table).sort(key)), table


def test_run_without_snapshot_is_blocked(panel, tmp_path):
    b = PaperBroker(panel, 1e6, RULES)
    run = TradeRun(tmp_path / "x.duckdb", SimExecutor(b), RiskEngine.default(), lambda: 0)
    with pytest.raises(SnapshotRequired):
        run.submit_snapshot(None, 0)
    with pytest.raises(SnapshotRequired, match="bridge plan"):
        run.submit_snapshot("ds-missing", 0)


def test_trade_overview_and_outbox_events(panel, tmp_path):
    """A hand-made snapshot through the run: overview numbers and the events read back in order."""
    from bridge.execution.events import EventType
    from bridge.execution.outbox import Outbox, read_events
    from bridge.execution.overview import trade_overview
    from bridge.planner.tomorrow import PlanParams
    from bridge.store.snapshots import build_snapshot, save_snapshot

    db = tmp_path / "o.duckdb"
    snap = build_snapshot("2010-01-04", "2010-01-05", PlanParams(), "h", 10_000.0,
                          pd.DataFrame({"instrument": ["A", "B"], "score": [2.0, 1.0]}),
                          pd.DataFrame({"instrument": [], "amount": []}),
                          pd.DataFrame({"instrument": ["A", "B"], "price": [10.0, 20.0]}))
    save_snapshot(db, snap, datetime(2010, 1, 4))
    broker = PaperBroker(panel, 10_000.0, RULES, participation=1.0, clock=lambda: 1)
    with Outbox(tmp_path / "events") as box:
        run = TradeRun(db, SimExecutor(broker), RiskEngine.default(max_weight=1.0), lambda: 1,
                       outbox=box, strategy_id="s1")
        rep = run.submit_snapshot(snap.snapshot_id, 1)
        advance_session(run.executor, "2010-01-05")
        run.collect(rep)
    ov = trade_overview(db)
    assert ov.open_orders.height == 0
    assert sorted(ov.positions["instrument"]) == ["A", "B"]
    row = ov.pnl.row(0, named=True)
    assert (row["strategy_id"], row["mode"], row["n_orders"], row["n_fills"]) == ("s1", "paper", 2, 2)
    assert row["equity"] == pytest.approx(row["cash"] + row["market_value"])
    events = list(read_events(tmp_path / "events"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.type for e in events]
    assert kinds.count(EventType.ORDER_SUBMITTED) == 2 and kinds.count(EventType.ORDER_FILLED) == 2
    assert kinds.index(EventType.ORDER_SUBMITTED) < kinds.index(EventType.ORDER_FILLED)


def _stored_snapshot(db, names=("A", "B"), prices=(10.0, 20.0)):
    from bridge.planner.tomorrow import PlanParams
    from bridge.store.snapshots import build_snapshot, save_snapshot

    snap = build_snapshot("2010-01-04", "2010-01-05", PlanParams(), "h", 10_000.0,
                          pd.DataFrame({"instrument": list(names), "score": [2.0, 1.0]}),
                          pd.DataFrame({"instrument": [], "amount": []}),
                          pd.DataFrame({"instrument": list(names), "price": list(prices)}))
    save_snapshot(db, snap, datetime(2010, 1, 4))
    return snap


def test_cancel_is_audited_and_a_filled_order_cannot_be_canceled(panel, tmp_path):
    db = tmp_path / "c.duckdb"
    snap = _stored_snapshot(db)
    broker = PaperBroker(panel, 10_000.0, RULES, participation=1.0, clock=lambda: 5)
    run = TradeRun(db, SimExecutor(broker), RiskEngine.default(max_weight=1.0), lambda: 5)
    rep = run.submit_snapshot(snap.snapshot_id, 5)
    a, b = rep.orders
    assert run.cancel(rep, a.client_order_id) == "CANCELED"
    advance_session(run.executor, "2010-01-05")
    run.collect(rep)
    assert a.status == OrderStatus.CANCELED and b.status == OrderStatus.FILLED
    assert run.cancel(rep, b.client_order_id) == "FILLED"          # too late: stays FILLED
    audit = read_table(db, "audit_log")
    audit = audit.filter(audit["kind"] == "ORDER_CANCEL")
    assert audit.select("client_order_id", "success").rows() == [(a.client_order_id, True),
                                                                 (b.client_order_id, False)]
    assert broker.get_order_by_client_id(a.client_order_id)["status"] == "canceled"


def test_live_mode_needs_approval_and_explicit_flag(panel, tmp_path):
    from bridge.execution.run import ApprovalRequired, approve_live

    db = tmp_path / "l.duckdb"
    ex = SimExecutor(PaperBroker(panel, 1e6, RULES))
    with pytest.raises(ApprovalRequired):
        TradeRun(db, ex, RiskEngine.default(), lambda: 0, mode="live", strategy_id="s")
    approve_live(db, "s", actor="risk-officer", ts_ms=1)
    with pytest.raises(ApprovalRequired):          # approved, but no explicit flag
        TradeRun(db, ex, RiskEngine.default(), lambda: 0, mode="live", strategy_id="s")
    with pytest.raises(ApprovalRequired):          # flag, but another strategy's approval
        TradeRun(db, ex, RiskEngine.default(), lambda: 0, mode="live", strategy_id="t",
                 allow_live=True)
    run = TradeRun(db, ex, RiskEngine.default(), lambda: 0, mode="live", strategy_id="s",
                   allow_live=True)
    assert run.mode == "live"


def test_paper_broker_state_survives_the_process(panel, tmp_path):
    b = PaperBroker(panel, 10_000.0, RULES, participation=1.0)
    b.place_order("a", "A", "buy", 100)
    b.place_order("g", "B", "buy", 10, "limit", 15.0, "gtc")     # stays open
    b.run_session(0)
    b.save(tmp_path / "venue.json")
    c = PaperBroker.load(tmp_path / "venue.json", panel, RULES)
    assert c.get_account() == b.get_account() and c.get_positions() == b.get_positions()
    assert c.get_fills() == b.get_fills()
    assert c.place_order("a", "A", "buy", 1)["reject_reason"] == "client_order_id must be unique"
    assert c._buying_power() == b._buying_power()                # open orders still reserve cash
    nxt = c.place_order("n", "A", "sell", 50)
    assert nxt["broker_order_id"] == "sim-00000003"               # ids continue, never reused
    assert c.run_session(1)[0]["exec_id"] == "simx-0000000002"


def test_sells_first_funds_the_buys_at_the_close(panel, tmp_path):
    """A book fully invested in A: switching to B needs A's proceeds. All at once, the buy is
    denied for cash; sells at the open then buys at the close, it fills."""
    from functools import partial

    from bridge.planner.tomorrow import PlanParams
    from bridge.portfolio import TopkDropout
    from bridge.store.snapshots import build_snapshot, save_snapshot

    def setup(name):
        db = tmp_path / f"{name}.duckdb"
        snap = build_snapshot("2010-01-04", "2010-01-05",
                              PlanParams(topk=TopkDropout(topk=1, n_drop=1, risk_degree=0.9)), "h",
                              50.0, pd.DataFrame({"instrument": ["A", "B"], "score": [1.0, 2.0]}),
                              pd.DataFrame({"instrument": ["A"], "amount": [100.0]}),
                              pd.DataFrame({"instrument": ["A", "B"], "price": [10.2, 20.0]}))
        save_snapshot(db, snap, datetime(2010, 1, 4))
        broker = PaperBroker(panel, 50.0, RULES, participation=1.0, clock=lambda: 7)
        broker.transfer_in("A", 100, 10.0)
        run = TradeRun(db, SimExecutor(broker), RiskEngine.default(max_weight=1.0), lambda: 7)
        return snap, broker, run

    snap, broker, run = setup("once")
    rep = run.submit_snapshot(snap.snapshot_id, 7)
    advance_session(run.executor, "2010-01-05")
    run.collect(rep)
    by = {o.instrument: o for o in rep.orders}
    assert by["B"].status == OrderStatus.DENIED and "NOTIONAL_EXCEEDS_FREE_BALANCE" in by["B"].deny_reason

    snap, broker, run = setup("phased")
    sells, buys = run.execute_sells_first(snap.snapshot_id, 7, "2010-01-05",
                                          partial(advance_session, run.executor))
    assert [o.status for o in sells.orders] == [OrderStatus.FILLED]
    assert [o.status for o in buys.orders] == [OrderStatus.FILLED]
    fills = broker.get_fills()
    assert [(f["instrument"], f["price"]) for f in fills] == [("A", 10.0), ("B", 20.0)]  # open, close
    assert fills[1]["ts_ms"] > fills[0]["ts_ms"]
    local = read_table(tmp_path / "phased.duckdb", "exec_position").to_pandas()
    assert local[["instrument", "quantity"]].values.tolist() == [["B", broker.get_positions()["B"]["qty"]]]
