"""IBExecutor through the real ib_async client against the TWS emulator on 127.0.0.1.

Every byte goes through ib_async's own encoder (``Client``) and decoder (``Decoder``): the
emulator speaks the TWS API wire protocol over a real socket, backed by the embedded paper broker
on the real bars in data/.
"""

from __future__ import annotations

import json
import time
from datetime import UTC
from types import SimpleNamespace

import pytest

pytest.importorskip("ib_async")

from ib_async import IB, Contract, Order  # noqa: E402
from ib_async.client import Client  # noqa: E402
from ib_async.decoder import Decoder  # noqa: E402

from bridge.brokers import ib_wire as w  # noqa: E402
from bridge.brokers.ib import IBConnectionError, IBExecutor  # noqa: E402
from bridge.brokers.ib_contracts import ContractMap, ContractSpec  # noqa: E402
from bridge.brokers.ib_emulator import Faults, make_ib_emulator  # noqa: E402
from bridge.brokers.ib_faults import run_faults  # noqa: E402
from bridge.errors import ConfigError  # noqa: E402
from bridge.execution.contract import Executor, OrderCtx  # noqa: E402

INSTRUMENTS = ["A", "AAPL", "JPM", "MSFT", "XOM", "BRK.B"]
SESSIONS = ["2010-08-03", "2010-08-04", "2010-08-05", "2010-08-06", "2010-08-09"]
VERSIONS = (157, 166, 170, 176, 177, 178)


@pytest.fixture
def emulator(sample_dir):
    emu = make_ib_emulator(sample_dir, cash=100_000.0, start="2010-08-02", end="2010-08-31",
                           instruments=INSTRUMENTS, seed=7).start()
    yield emu
    emu.stop()


@pytest.fixture
def executor(emulator):
    ex = IBExecutor(port=emulator.port, client_id=11, ack_timeout_s=1.0, connect_timeout_s=2.0)
    yield ex
    ex.close()


def ctx(cid: str, instrument: str = "MSFT", quantity: float = 10, side: str = "buy",
        limit: float | None = None, tif: str = "day") -> OrderCtx:
    return OrderCtx(client_order_id=cid, instrument=instrument, side=side, tick_size=0.01,
                    step_size=1.0, order_type="limit" if limit else "market", quantity=quantity,
                    limit_price=limit, time_in_force=tif, decision_snapshot_id="snap-ib",
                    strategy_id="test", ts_ms=1_280_800_000_000, event_ts_ms=1_280_800_000_000)


# ---- the wire layouts, through ib_async's own codec --------------------------------------
class _Recorder:
    """Stands in for ib_async's Wrapper: records each callback the Decoder makes."""

    defaultTimezone = UTC
    ib = SimpleNamespace(TimezoneTWS="")

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))


def _decode(msg: bytes, version: int) -> list:
    rec = _Recorder()
    fields = msg[4:].decode().split("\0")[:-1]
    assert int.from_bytes(msg[:4], "big") == len(msg) - 4
    Decoder(rec, version).interpret(fields)
    return rec.calls


@pytest.mark.parametrize("version", VERSIONS)
def test_every_layout_decodes_with_ib_async(version):
    c = w.WireContract(265598, "BRK B", primary_exchange="NYSE")
    v = w.OrderView(7, 3, 1_000_001, c, "BUY", 100.0, "LOC", 250.5, "DAY", "DU1", "cid-1",
                    "Filled", 100.0, 250.25, 250.25, "20100803 16:00:00 UTC", "Filled",
                    commission=1.25)
    (name, (oid, contract, order, state)), = _decode(w.open_order(version, v), version)
    assert (name, oid, order.orderRef, order.permId, order.clientId) == \
        ("openOrder", 7, "cid-1", 1_000_001, 3)
    assert (contract.symbol, contract.conId, order.totalQuantity, order.lmtPrice,
            order.orderType, state.status, state.commission) == \
        ("BRK B", 265598, 100.0, 250.5, "LOC", "Filled", 1.25)
    (name, (contract, order, state)), = _decode(w.completed_order(version, v), version)
    assert (order.orderRef, order.permId, order.filledQuantity, state.status,
            state.completedTime, state.completedStatus) == \
        ("cid-1", 1_000_001, 100.0, "Filled", "20100803 16:00:00 UTC", "Filled")
    e = w.ExecView("000f4241.00000001.01.01", 7, 3, 1_000_001, c, "20100803 13:30:00 UTC",
                   "DU1", "BOT", 40.0, 250.1, 40.0, 250.1, "cid-1", 1.0)
    (name, (req, contract, ex)), = _decode(w.exec_details(version, -1, e), version)
    assert (req, ex.execId, ex.shares, ex.price, ex.orderRef, ex.permId, ex.side,
            ex.time.isoformat()) == (-1, e.exec_id, 40.0, 250.1, "cid-1", 1_000_001, "BOT",
                                     "2010-08-03T13:30:00+00:00")
    (name, (report,)), = _decode(w.commission_report(e), version)
    assert (report.execId, report.commission) == (e.exec_id, 1.0)
    (name, args), = _decode(w.order_status(v), version)
    assert args[:7] == (7, "Filled", 100.0, 0.0, 250.25, 1_000_001, 0)
    (name, args), = _decode(w.error(version, 7, 201, "Order rejected - reason:x"), version)
    assert (name, args[:3]) == ("error", (7, 201, "Order rejected - reason:x"))
    (name, args), = _decode(w.position("DU1", c, 40.0, 250.1), version)
    assert (args[0], args[1].symbol, args[2], args[3]) == ("DU1", "BRK B", 40.0, 250.1)
    (name, args), = _decode(w.portfolio_value("DU1", c, 40.0, 251.0, 10040.0, 250.1, 36.0,
                                              0.0), version)
    assert (name, args[1:5]) == ("updatePortfolio", (40.0, 251.0, 10040.0, 250.1))


@pytest.mark.parametrize("version", VERSIONS)
def test_place_order_parsed_from_ib_async_encoder(version):
    sent = []
    client = Client(SimpleNamespace())
    client._serverVersion = version
    client.connState = Client.CONNECTED
    client.conn = SimpleNamespace(isConnected=lambda: True)
    client.sendMsg = sent.append
    contract = Contract(symbol="BRK B", secType="STK", exchange="SMART", currency="USD")
    order = Order(action="SELL", totalQuantity=30.0, orderType="LMT", lmtPrice=251.37,
                  tif="GTC", orderRef="cid-77", account="DU1")
    client.placeOrder(42, contract, order)
    what_if = Order(action="BUY", totalQuantity=5.0, orderType="MKT", whatIf=True,
                    algoStrategy="Adaptive", algoParams=[])
    client.placeOrder(43, contract, what_if)
    p = w.parse_place_order(sent[0].split("\0")[:-1], version)
    assert (p.order_id, p.symbol, p.sec_type, p.action, p.total_quantity, p.order_type,
            p.lmt_price, p.tif, p.order_ref, p.account, p.what_if) == \
        (42, "BRK B", "STK", "SELL", 30.0, "LMT", 251.37, "GTC", "cid-77", "DU1", False)
    q = w.parse_place_order(sent[1].split("\0")[:-1], version)
    assert (q.order_id, q.order_type, q.lmt_price, q.what_if) == (43, "MKT", None, True)


def test_negotiation():
    assert w.negotiate(157, 178) == 178
    assert w.negotiate(100, 200) == 178
    assert w.negotiate(157, 178, server_max=170) == 170
    assert w.negotiate(179, 190) is None          # client too new for the emulator
    assert w.negotiate(100, 150) is None          # client too old


def test_contract_map_is_data(tmp_path):
    m = ContractMap()
    assert m.contract("BRK.B").symbol == "BRK B" and m.instrument("BRK B") == "BRK.B"
    assert m.contract("MSFT") == ContractSpec("MSFT") and m.instrument("MSFT") == "MSFT"
    f = tmp_path / "map.csv"
    f.write_text("instrument,symbol,sec_type,exchange,primary_exchange,currency,con_id\n"
                 "X.A,X A,STK,SMART,NYSE,USD,123\n")
    assert ContractMap.from_csv(f).contract("X.A").con_id == 123
    f.write_text("instrument,symbol\nA,A\n")
    with pytest.raises(ConfigError, match="missing columns"):
        ContractMap.from_csv(f)


# ---- the executor against the emulator --------------------------------------------------
def test_connect_health_and_protocol(emulator, executor):
    assert isinstance(executor, Executor)
    h = executor.health(probe=True)
    assert h["connection"] == "connected" and h["stream"] == "connected"
    assert h["server_version"] == 178 and h["account"] == "DU0000001"
    assert h["last_heartbeat_ms"] and 2104 in h["farms"]
    assert executor.account()["cash"] == 100_000.0
    assert executor.positions() == {}


def test_lower_server_version_negotiated(sample_dir):
    emu = make_ib_emulator(sample_dir, cash=50_000.0, start="2010-08-02", end="2010-08-31",
                           instruments=INSTRUMENTS, max_server_version=166).start()
    ex = IBExecutor(port=emu.port, client_id=2, connect_timeout_s=2.0)
    try:
        assert ex.health()["server_version"] == 166
        assert ex.submit(ctx("v166-1", "XOM", 10)).status == "ACCEPTED"
        emu.advance(SESSIONS[0])
        fills = ex.flush()
        assert [(f.instrument, f.quantity) for f in fills] == [("XOM", 10.0)]
        assert ex.orders()["v166-1"]["status"] == "filled"
    finally:
        ex.close()
        emu.stop()


def test_submit_fill_positions_account(emulator, executor):
    for i, inst in enumerate(["MSFT", "XOM", "BRK.B"]):
        r = executor.submit(ctx(f"b-{i}", inst, 20))
        assert r.status == "ACCEPTED" and r.broker_order_id and r.raw["ib_order_id"]
    emulator.advance(SESSIONS[0])
    fills = executor.flush()
    venue = {f["exec_id"].split("-")[-1]: f for f in emulator.broker.fills}
    assert len(fills) == 3 == len(venue)
    for f in fills:
        assert f.client_order_id.startswith("b-") and f.raw["execution"]["orderRef"]
        assert f.commission == emulator.broker.rules.fee(f.quantity * f.price, False)
        assert f.ts_ms == int(emulator.broker.fills[0]["ts_ms"])  # session time, not wall time
    pos = executor.positions()
    assert {k: v["qty"] for k, v in pos.items()} == {"MSFT": 20.0, "XOM": 20.0, "BRK.B": 20.0}
    assert {k: v["qty"] for k, v in emulator.broker.get_positions().items()} == \
        {k: v["qty"] for k, v in pos.items()}
    acct = executor.account()
    assert acct["cash"] == emulator.broker.get_account()["cash"]          # to the cent
    orders = executor.orders()
    assert {k: v["status"] for k, v in orders.items()} == {f"b-{i}": "filled" for i in range(3)}
    assert executor.flush() == []                                          # nothing twice
    hist = executor.fills()
    assert sorted(r["exec_id"] for r in hist) == sorted(f.exec_id for f in fills)


def test_rejects_carry_ib_error_codes(emulator, executor):
    r = executor.submit(ctx("r-1", "ZZZZ", 10))
    assert r.status == "REJECTED" and r.reject_reason.startswith("201 ")
    assert "no security definition" in r.reject_reason
    r = executor.submit(ctx("r-2", "AAPL", 100_000))
    assert r.status == "REJECTED" and "insufficient buying power" in r.reject_reason
    r = executor.submit(ctx("r-3", "MSFT", 10, side="sell"))
    assert r.status == "REJECTED" and "insufficient qty" in r.reject_reason
    assert executor.orders()["r-2"]["status"] == "rejected"


def test_amend_and_cancel(emulator, executor):
    assert executor.submit(ctx("c-1", "MSFT", 30, limit=10.0, tif="gtc")).status == "ACCEPTED"
    a = executor.amend("c-1", quantity=40, limit_price=11.0)
    assert a.status == "DONE"
    venue = emulator.broker.orders[emulator.broker.by_client_id["ib-1000001"]]
    assert (venue.quantity, venue.limit_price) == (40.0, 11.0)
    c = executor.cancel("c-1")
    assert c.status == "DONE" and venue.status == "canceled"
    assert executor.cancel("c-1").reason == "too_late"
    assert executor.cancel("never-sent").reason == "not_found"
    assert executor.orders()["c-1"]["status"] == "canceled"


@pytest.mark.parametrize("fault,first,resent", [("drop_after_place", "UNKNOWN", 0),
                                                ("drop_before_place", "UNKNOWN", 1),
                                                ("delay_status", "UNKNOWN", 0),
                                                ("missing_status", "ACCEPTED", 0)])
def test_unknown_submits_resolved_never_duplicated(emulator, fault, first, resent):
    ex = IBExecutor(port=emulator.port, client_id=12, ack_timeout_s=0.3, connect_timeout_s=2.0)
    try:
        emulator.set_faults(Faults(once=[fault], delay_s=0.6))
        c = ctx(f"u-{fault}", "JPM", 10)
        r = ex.submit(c)
        assert r.status == first
        if r.status == "UNKNOWN":
            r = ex.resolve(c)
        assert r.status == "ACCEPTED" and ex.counters["resent"] == resent
        time.sleep(0.7)                                  # a held acceptance arrives meanwhile
        assert emulator.state()["orders_per_ref"] == {c.client_order_id: 1}
        emulator.advance(SESSIONS[0])
        assert [f.quantity for f in ex.flush()] == [10.0]
    finally:
        ex.close()


def test_disconnect_during_partial_fills(sample_dir):
    """The socket drops halfway through a session's fills; after the reconnect bridge's fills
    and IB's executions, and the positions on both sides, are equal."""
    emu = make_ib_emulator(sample_dir, cash=20_000_000.0, start="2010-08-02", end="2010-08-31",
                           instruments=INSTRUMENTS, participation=0.0002).start()
    ex = IBExecutor(port=emu.port, client_id=13, connect_timeout_s=2.0)
    try:
        for i, inst in enumerate(INSTRUMENTS):   # 20,000 shares: several sessions of fills
            assert ex.submit(ctx(f"p-{i}", inst, 20_000, tif="gtc")).status == "ACCEPTED"
        got = []
        for day in SESSIONS[:3]:
            emu.set_faults(Faults(once=["drop_mid_fill"]))
            n = emu.advance(day)
            assert n >= 2
            assert not emu.state()["connections"]          # dropped mid-fill
            got += ex.flush()                                # reconnects, re-requests executions
        assert ex.health()["connects"] == 4
        assert sorted(f.exec_id for f in got) == sorted(e.exec_id for e in emu.execs)
        local = {}
        for f in got:
            local[f.instrument] = local.get(f.instrument, 0.0) + f.quantity
        assert sum(0 < q < 20_000 for q in local.values()) >= 4  # orders still partially filled
        assert {k: v["qty"] for k, v in ex.positions().items()} == local
        assert {k: v["qty"] for k, v in emu.broker.get_positions().items()} == local
        assert {k: v["filled_quantity"] for k, v in ex.orders().items()} == \
            {f"p-{i}": local.get(inst, 0.0) for i, inst in enumerate(INSTRUMENTS)}
    finally:
        ex.close()
        emu.stop()


def test_duplicated_and_corrected_executions_counted_once(emulator, executor):
    emulator.set_faults(Faults(p={"duplicate_exec": 1.0, "correction": 1.0}))
    for i, inst in enumerate(["MSFT", "XOM"]):
        executor.submit(ctx(f"d-{i}", inst, 10))
    emulator.advance(SESSIONS[0])
    fills = executor.flush()
    assert sorted(f.instrument for f in fills) == ["MSFT", "XOM"]
    st = emulator.state()["counters"]
    assert st["exec_messages"] == 3 * st["executions"] == 6    # each sent twice + a correction
    assert executor.counters["corrections_same"] == 2
    assert len(executor.fills()) == 2 and executor.corrections == []


def test_lost_connectivity_is_reported_and_orders_go_through(emulator, executor):
    emulator.set_faults(Faults(once=["connectivity_lost"], outage_s=0.2))
    r = executor.submit(ctx("l-1", "A", 10))
    assert r.status == "ACCEPTED"
    h = executor.health()
    assert h["connectivity_losses"] == 1 and h["connectivity"] == "ok"   # 1100 then 1102


def test_what_if_margin_check(emulator):
    ex = IBExecutor(port=emulator.port, client_id=14, what_if_check=True, connect_timeout_s=2.0)
    try:
        m = ex.what_if(ctx("w-0", "MSFT", 100))
        assert m["init_margin_change"] > 0 and m["equity_with_loan_after"] == 100_000.0
        assert ex.submit(ctx("w-1", "MSFT", 100)).status == "ACCEPTED"
        big = ex.submit(ctx("w-2", "AAPL", 1_000))
        assert big.status == "DENIED" and big.reject_reason.startswith("what_if")
        assert "w-2" not in emulator.state()["orders_per_ref"]          # never sent
    finally:
        ex.close()


def test_client_id_in_use_is_refused(emulator, executor):
    with pytest.raises(IBConnectionError):
        IBExecutor(port=emulator.port, client_id=11, connect_tries=1, connect_timeout_s=1.0)


def test_fault_run_all_kinds_accounted(sample_dir, tmp_path):
    emu = make_ib_emulator(sample_dir, cash=10_000_000.0, start="2010-08-02", end="2010-08-31",
                           instruments=INSTRUMENTS, seed=3).start()
    ex = IBExecutor(port=emu.port, client_id=15, ack_timeout_s=0.1, connect_timeout_s=2.0)
    try:
        faults = Faults(p={"drop_before_place": 0.05, "drop_after_place": 0.05,
                           "delay_status": 0.05, "missing_status": 0.05, "reject": 0.05,
                           "duplicate_exec": 0.1, "correction": 0.1, "connectivity_lost": 0.03,
                           "drop_mid_fill": 1.0}, delay_s=0.15, outage_s=0.05)
        rep = run_faults(emu, ex, "all", faults, 150, batch=50)
    finally:
        ex.close()
        emu.stop()
    (tmp_path / "ib_fault_run.json").write_text(json.dumps(rep, indent=2))
    assert rep["duplicate_orders"] == 0 and rep["lost_orders"] == 0
    assert "UNKNOWN" not in rep["final"] and rep["final"]["ACCEPTED"] > 100
    assert rep["fills_equal"] and rep["positions_equal"]
    assert rep["injected"]["drop_mid_fill"] == 3 and sum(rep["injected"].values()) > 20
    assert rep["first_answer"].get("UNKNOWN", 0) > 0 and rep["reconnects"] > 0
