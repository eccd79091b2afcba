"""AlpacaExecutor through the real alpaca-py client against the local Alpaca emulator.

Loopback only: the emulator (aiohttp) runs on 127.0.0.1 in a background thread, backed by the
embedded paper broker on the real bars in data/.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("alpaca")
pytest.importorskip("aiohttp")

from alpaca.common.exceptions import APIError  # noqa: E402
from alpaca.trading.client import TradingClient  # noqa: E402
from alpaca.trading.models import Order, Position, TradeAccount  # noqa: E402

from bridge.brokers.alpaca import AlpacaExecutor  # noqa: E402
from bridge.brokers.alpaca_emulator import Faults, make_emulator  # noqa: E402
from bridge.execution.contract import Executor, OrderCtx  # noqa: E402

KEY = "PKEMULATORKEY0001"
SECRET = "sk-bridge-test-Zq7w9XvR2mT4pL8nY3cK"  # the string the scan test looks for
INSTRUMENTS = ["A", "AAPL", "JPM", "MSFT", "XOM"]
PX = {"A": 28.0, "AAPL": 250.0, "JPM": 40.0, "MSFT": 25.0, "XOM": 60.0}
SESSIONS = ["2010-08-03", "2010-08-04", "2010-08-05", "2010-08-06", "2010-08-09"]



def _sleep(s: float) -> None:
    time.sleep(min(s, 0.01))


@pytest.fixture
def emulator(sample_dir):
    emu = make_emulator(sample_dir, cash=100_000.0, start="2010-08-02", end="2010-08-31",
                        instruments=INSTRUMENTS, api_key=KEY, secret_key=SECRET, seed=7).start()
    yield emu
    emu.stop()


@pytest.fixture
def executor(emulator):
    ex = AlpacaExecutor(KEY, SECRET, url_override=emulator.url, timeout_s=0.3, sleep=_sleep)
    assert ex.wait_stream(5)
    yield ex
    ex.close()


def ctx(cid: str, instrument: str = "A", quantity: float = 10, side: str = "buy",
        limit: float | None = None, tif: str = "day") -> OrderCtx:
    return OrderCtx(client_order_id=cid, instrument=instrument, side=side, tick_size=0.01,
                    step_size=1.0, order_type="limit" if limit else "market", quantity=quantity,
                    limit_price=limit, time_in_force=tif, decision_snapshot_id="snap-1",
                    strategy_id="test", ts_ms=1_280_800_000_000, event_ts_ms=1_280_800_000_000,
                    px_intent=PX[instrument])


def kind(f) -> str:
    """fill / partial_fill, from a stream update or a back-filled FILL activity."""
    return f.raw.get("event") or f.raw["type"]


def _wait_fills(ex: AlpacaExecutor, n: int, timeout: float = 3.0, **kw) -> list:
    fills, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        fills += ex.flush(**kw)
        if len(fills) >= n:
            break
        time.sleep(0.02)
    return fills


def test_protocol_and_model_shapes(emulator, executor):
    assert isinstance(executor, Executor)
    res = executor.submit(ctx("shape-1"))
    assert res.status == "ACCEPTED" and res.broker_order_id and res.raw["client_order_id"] == "shape-1"
    emulator.advance(SESSIONS[0])
    # alpaca-py's own models parse every answer of the emulator
    client = TradingClient(KEY, SECRET, paper=True, url_override=emulator.url)
    assert isinstance(client.get_account(), TradeAccount)
    assert all(isinstance(p, Position) for p in client.get_all_positions())
    o = client.get_order_by_client_id("shape-1")
    assert isinstance(o, Order) and o.status.value == "filled" and float(o.filled_qty) == 10
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.requests import GetOrdersRequest
    assert [x.client_order_id for x in client.get_orders(GetOrdersRequest(
        status=QueryOrderStatus.CLOSED))] == ["shape-1"]
    assert client.get_orders() == []   # nothing open


def test_submit_fill_positions_account(emulator, executor):
    acct0 = executor.account()
    assert acct0["cash"] == 100_000.0 and acct0["raw"]["status"] == "ACTIVE"
    assert executor.submit(ctx("buy-1", "MSFT", 100)).status == "ACCEPTED"
    assert executor.submit(ctx("buy-2", "XOM", 20)).status == "ACCEPTED"
    emulator.advance(SESSIONS[0])
    fills = _wait_fills(executor, 2)
    assert sorted(f.client_order_id for f in fills) == ["buy-1", "buy-2"]
    assert all(kind(f) == "fill" and f.exec_id for f in fills)
    pos = executor.positions()
    assert {k: v["qty"] for k, v in pos.items()} == {"MSFT": 100.0, "XOM": 20.0}
    spent = sum(f.quantity * f.price for f in fills)
    assert executor.account()["cash"] == pytest.approx(100_000.0 - spent, abs=0.01)
    venue = executor.orders()
    assert venue["buy-1"]["status"] == "filled" and venue["buy-1"]["alpaca_status"] == "filled"
    h = executor.health()
    assert h["connection"] == "ok" and h["stream"] == "connected" and h["last_heartbeat_ms"]


def test_partial_fills(emulator, executor):
    emulator.broker.participation = 2e-5          # A trades ~2e6 shares: ~40 per session
    assert executor.submit(ctx("part-1", "A", 100, tif="gtc")).status == "ACCEPTED"
    emulator.advance(SESSIONS[0])
    first = _wait_fills(executor, 1)
    assert [kind(f) for f in first] == ["partial_fill"]
    assert executor.orders()["part-1"]["status"] == "partially_filled"
    total = sum(f.quantity for f in first)
    for day in SESSIONS[1:]:
        emulator.advance(day)
        total += sum(f.quantity for f in _wait_fills(executor, 1))
        if total >= 100:
            break
    assert total == 100 and executor.orders()["part-1"]["status"] == "filled"
    assert executor.updates[-1]["event"] == "fill"


def test_cancel_and_cancel_after_fill(emulator, executor):
    assert executor.submit(ctx("lim-1", "A", 10, limit=1.00)).status == "ACCEPTED"
    res = executor.cancel("lim-1")
    assert res.status == "DONE" and res.raw["status"] == "canceled"
    again = executor.cancel("lim-1")                          # idempotent: 422, still canceled
    assert again.status == "DONE" and again.raw["cancel_answer"]["code"] == 42210000
    assert executor.cancel("never-sent").reason == "not_found"
    assert executor.submit(ctx("mkt-1", "A", 10)).status == "ACCEPTED"
    emulator.advance(SESSIONS[0])
    _wait_fills(executor, 1)
    res = executor.cancel("mkt-1")
    assert res.status == "REJECTED" and res.reason == "too_late"
    assert res.raw["cancel_answer"]["code"] == 42210000
    events = [u["event"] for u in executor.updates]
    assert events.count("canceled") == 1 and "fill" in events


def test_fill_after_cancel(emulator, executor):
    emulator.set_faults(Faults(fill_after_cancel=1))
    assert executor.submit(ctx("late-1", "A", 10)).status == "ACCEPTED"
    res = executor.cancel("late-1")
    assert res.status == "PENDING" and res.raw["status"] == "pending_cancel"
    emulator.advance(SESSIONS[0])                       # the venue fills it before the cancel
    fills = _wait_fills(executor, 1)
    assert [f.client_order_id for f in fills] == ["late-1"]
    assert executor.orders()["late-1"]["status"] == "filled"


def test_replace(emulator, executor):
    assert executor.submit(ctx("rep-1", "A", 10, limit=1.00, tif="gtc")).status == "ACCEPTED"
    old_id = executor._alpaca_id["rep-1"]
    res = executor.amend("rep-1", quantity=20, limit_price=40.00)
    assert res.status == "DONE" and res.broker_order_id != old_id
    assert res.raw["replaces"] == old_id and res.raw["qty"] == "20"
    emulator.advance(SESSIONS[0])
    fills = _wait_fills(executor, 1)
    assert [(f.client_order_id, f.quantity) for f in fills] == [("rep-1", 20.0)]
    venue = executor.orders()
    assert venue["rep-1"]["broker_order_id"] == res.broker_order_id
    assert venue["rep-1"]["status"] == "filled"
    assert "replaced" in [u["event"] for u in executor.updates]


def test_reject_insufficient_buying_power(emulator, executor):
    res = executor.submit(ctx("big-1", "AAPL", 1_000))         # ~$250k > $100k
    assert res.status == "REJECTED" and res.reject_reason == "insufficient buying power"
    assert res.raw == {"http_status": 403, "code": 40310000, "message": "insufficient buying power"}
    client = TradingClient(KEY, SECRET, paper=True, url_override=emulator.url)
    from alpaca.trading.requests import MarketOrderRequest
    with pytest.raises(APIError) as e:
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1000, side="buy",
                                               time_in_force="day", client_order_id="big-2"))
    assert e.value.status_code == 403 and e.value.code == 40310000


def test_submit_never_retried_by_alpaca_py(emulator, executor):
    emulator.set_faults(Faults(once=[("submit", "429")]))
    res = executor.submit(ctx("rl-1"))
    assert res.status == "UNKNOWN" and res.reject_reason == "http_429"
    assert emulator.state()["counters"]["post_orders"] == 1     # one POST, no alpaca-py retry
    res = executor.resolve(ctx("rl-1"))                         # 404 -> re-sent, same id
    assert res.status == "ACCEPTED"
    c = emulator.state()["counters"]
    assert c["post_orders"] == 2 and c["placed"] == 1


def test_timeout_after_processing_is_resolved_without_resend(emulator, executor):
    emulator.set_faults(Faults(once=[("submit", "delay_after")], delay_s=0.6))
    res = executor.submit(ctx("to-1"))
    assert res.status == "UNKNOWN" and res.reject_reason == "timeout"
    res = executor.resolve(ctx("to-1"))
    assert res.status == "ACCEPTED"
    c = emulator.state()["counters"]
    assert c["post_orders"] == 1 and c["placed"] == 1 and executor.counters["resent"] == 0


def test_reads_retry_on_429_and_5xx(emulator, executor):
    emulator.set_faults(Faults(once=[("read", "429"), ("read", "500")]))
    assert executor.account()["cash"] == 100_000.0
    assert emulator.state()["injected"] == {"read:429": 1, "read:500": 1}


def test_dropped_stream_fills_are_backfilled(emulator, executor):
    assert executor.submit(ctx("drop-1", "MSFT", 50)).status == "ACCEPTED"
    executor.flush()
    assert emulator.drop_stream() == 1
    emulator.advance(SESSIONS[0])                        # fill sent while nobody listens
    fills = _wait_fills(executor, 1)
    assert [f.client_order_id for f in fills] == ["drop-1"]
    assert executor.counters["backfilled_fills"] == 1
    end = time.monotonic() + 5
    while executor.health()["stream_connects"] < 2 and time.monotonic() < end:
        time.sleep(0.02)
    assert executor.health()["stream_connects"] == 2      # reconnected by itself
    assert executor.flush() == []                         # no double count after the back-fill
    history = executor.fills()                            # the whole history, for reconciliation
    assert [(h["client_order_id"], h["exec_id"]) for h in history] == [
        ("drop-1", fills[0].exec_id)]


N_FAULT_RUN = int(os.environ.get("BRIDGE_ALPACA_FAULT_N", "200"))


def run_fault_run(emu, ex, n: int, sessions=SESSIONS) -> dict:
    """N submits under injected faults; returns the accounting (used by the benchmark too)."""
    emu.set_faults(Faults(p={
        "submit": {"delay_before": 0.03, "delay_after": 0.03, "429": 0.05, "500": 0.05,
                   "504_after": 0.05},
        "read": {"429": 0.05, "500": 0.05}},
        delay_s=0.45, duplicate=0.2, reorder=0.05))
    ctxs = [ctx(f"fr-{i:05d}", INSTRUMENTS[i % len(INSTRUMENTS)], 1 + i % 3, tif="gtc")
            for i in range(n)]
    outcome: dict[str, str] = {}
    first = Counter()
    for c in ctxs:
        r = ex.submit(c)
        first[r.status] += 1
        for _ in range(10):
            if r.status != "UNKNOWN":
                break
            r = ex.resolve(c)
        outcome[c.client_order_id] = r.status
    fills = []
    for day in sessions[:2]:
        emu.advance(day)
        time.sleep(0.1)
        fills += ex.flush()
    emu.set_faults(Faults())
    fills += _wait_fills(ex, 0, timeout=0.3, backfill=True)
    st = emu.state()
    broker = emu.broker
    cids = Counter(o.client_order_id for o in broker.orders.values())
    held = Counter()
    for f in fills:
        held[f.instrument] += f.quantity * (1 if f.side == "buy" else -1)
    remote = {k: v["qty"] for k, v in ex.positions().items()}
    return {"n": n, "first_answer": dict(first), "final": dict(Counter(outcome.values())),
            "duplicate_broker_orders": sum(v - 1 for v in cids.values() if v > 1),
            "lost_orders": sum(1 for c in ctxs if c.client_order_id not in broker.by_client_id),
            "posts": st["counters"]["post_orders"], "placed": st["counters"]["placed"],
            "duplicate_cid_refused": st["counters"]["duplicate_cid"],
            "injected": st["injected"], "fills": len(fills),
            "duplicate_updates_dropped": ex.counters["duplicate_updates"],
            "backfilled": ex.counters["backfilled_fills"],
            "local_positions": {k: v for k, v in sorted(held.items()) if v},
            "remote_positions": dict(sorted(remote.items())),
            "broker_positions": {k: v["qty"] for k, v in sorted(broker.get_positions().items())}}


def test_fault_run(emulator, executor, tmp_path):
    report = run_fault_run(emulator, executor, N_FAULT_RUN)
    (tmp_path / "fault_run.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert report["duplicate_broker_orders"] == 0
    assert report["lost_orders"] == 0
    assert report["final"] == {"ACCEPTED": N_FAULT_RUN}
    assert report["placed"] == N_FAULT_RUN
    assert report["local_positions"] == report["remote_positions"] == report["broker_positions"]
    assert sum(report["injected"].values()) > N_FAULT_RUN // 10
    assert report["injected"].get("stream:duplicate", 0) > 0
    assert report["first_answer"].get("UNKNOWN", 0) > 0


def test_secret_never_written_or_logged(emulator, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    caplog.set_level(logging.DEBUG)            # every logger, alpaca-py and urllib3 included
    ex = AlpacaExecutor(url_override=emulator.url, timeout_s=0.3, sleep=_sleep)
    try:
        assert ex.wait_stream(5)
        emulator.set_faults(Faults(once=[("submit", "500"), ("read", "429"),
                                         ("submit", "delay_before")], delay_s=0.5))
        out = [ex.submit(ctx("sec-1")), ex.submit(ctx("sec-2", "MSFT"))]
        out += [ex.resolve(ctx("sec-1")), ex.resolve(ctx("sec-2", "MSFT"))]
        out.append(ex.submit(ctx("sec-3", "AAPL", 10_000)))
        emulator.drop_stream()
        emulator.advance(SESSIONS[0])
        fills = _wait_fills(ex, 2)
        records = {"results": [r.model_dump() for r in out],
                   "fills": [f.raw for f in fills], "orders": ex.orders(),
                   "positions": ex.positions(), "account": ex.account(), "health": ex.health(),
                   "updates": ex.updates, "repr": repr(ex), "counters": ex.counters}
        (tmp_path / "records.json").write_text(json.dumps(records, default=str))
        (tmp_path / "log.txt").write_text("\n".join(
            r.getMessage() + " " + str(r.args) + " " + str(r.exc_info) for r in caplog.records))
    finally:
        ex.close()
    assert len(fills) == 2
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written
    for p in written:
        assert SECRET not in p.read_text(errors="replace"), p
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


def test_trade_run_unchanged_over_alpaca(emulator, executor, tmp_path):
    """TradeRun (snapshot -> risk -> executor -> DuckDB, outbox) works with AlpacaExecutor as is;
    nothing it writes contains the secret."""
    from datetime import datetime

    import pandas as pd

    from bridge.execution.orders import OrderStatus
    from bridge.execution.outbox import Outbox, read_events
    from bridge.execution.run import TradeRun
    from bridge.planner.tomorrow import PlanParams
    from bridge.risk import RiskEngine
    from bridge.store.snapshots import build_snapshot, save_snapshot

    db = tmp_path / "alpaca.duckdb"
    snap = build_snapshot("2010-08-02", "2010-08-03", PlanParams(), "h", 10_000.0,
                          pd.DataFrame({"instrument": ["MSFT", "XOM"], "score": [2.0, 1.0]}),
                          pd.DataFrame({"instrument": [], "amount": []}),
                          pd.DataFrame({"instrument": ["MSFT", "XOM"], "price": [25.0, 60.0]}))
    save_snapshot(db, snap, datetime(2010, 8, 2))
    with Outbox(tmp_path / "events") as box:
        run = TradeRun(db, executor, RiskEngine.default(max_weight=1.0), lambda: 1, outbox=box,
                       strategy_id="alp")
        rep = run.submit_snapshot(snap.snapshot_id, 1)
        assert rep.orders and all(o.status == OrderStatus.ACCEPTED for o in rep.orders)
        emulator.advance(SESSIONS[0])
        time.sleep(0.2)
        run.collect(rep)
    assert all(o.status == OrderStatus.FILLED for o in rep.orders)
    held = {o.instrument: o.filled_quantity for o in rep.orders}
    assert {k: v["qty"] for k, v in executor.positions().items()} == held
    assert len(list(read_events(tmp_path / "events"))) > 0
    for p in (x for x in tmp_path.rglob("*") if x.is_file()):
        assert SECRET.encode() not in p.read_bytes(), p
