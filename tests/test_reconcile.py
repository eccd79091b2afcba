"""Reconciliation: the pure comparison, and each status from a real divergence on real data.

The real-data tests run the paper loop of tests/test_paper.py (momentum -> plan -> TradeRun ->
PaperBroker on the sample S&P 500 bars), make the two sides diverge the way they do in practice
(a fill stream that was down, an order placed on the broker directly, a hand edit of bridge's book,
a deposit at the broker, a drifted average cost, a broker that does not answer), and check that
each is detected, reported, synced with an audit row per change, and that a second
reconciliation is synced.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from bridge.reconcile import (AUDIT_KIND, BrokerState, LocalState, SyncRefused, Tolerance,
                              fetch_broker_state, reconcile, run_reconciliation, sync)
from bridge.store import read_table

SID = "momentum"


# ---- the pure core ---------------------------------------------------------------------------
def _states():
    local = LocalState(
        positions={"SAME": (100.0, 10.0, 1_000.0), "LOC": (5.0, 20.0, None),
                   "QTY": (10.0, 30.0, None), "COST": (50.0, 40.0, None),
                   "TINY": (50.0, 40.0, None)},
        orders={"o-same": {"status": "FILLED", "filled_quantity": 10.0, "instrument": "QTY",
                           "side": "buy", "quantity": 10.0},
                "o-behind": {"status": "ACCEPTED", "filled_quantity": 0.0, "instrument": "QTY",
                             "side": "buy", "quantity": 5.0},
                "o-lost": {"status": "SUBMITTED", "filled_quantity": 0.0, "instrument": "X",
                           "side": "buy", "quantity": 1.0},
                "o-denied": {"status": "DENIED", "filled_quantity": 0.0, "instrument": "X",
                             "side": "buy", "quantity": 1.0}},
        fills={"f1": {"client_order_id": "o-same", "instrument": "QTY", "side": "buy",
                      "quantity": 10.0, "price": 30.0},
               "f-local": {"client_order_id": "o-same", "instrument": "QTY", "side": "buy",
                           "quantity": 1.0, "price": 30.0},
               "f-bad": {"client_order_id": "o-same", "instrument": "QTY", "side": "buy",
                         "quantity": 2.0, "price": 30.0}},
        cash=1_000.0, strategy_id="s")
    remote = BrokerState(
        positions={"SAME": (100.0, 10.0, 1_000.4), "REM": (7.0, 5.0, 35.0),
                   "QTY": (15.0, 30.0, 450.0), "COST": (50.0, 41.0, 2_050.0),
                   "TINY": (50.0, 40.002, 2_000.0)},
        orders={"o-same": {"status": "FILLED", "filled_quantity": 10.0, "instrument": "QTY",
                           "side": "buy", "quantity": 10.0},
                "o-behind": {"status": "FILLED", "filled_quantity": 5.0, "instrument": "QTY",
                             "side": "buy", "quantity": 5.0},
                "o-ext": {"status": "ACCEPTED", "filled_quantity": 0.0, "instrument": "REM",
                          "side": "buy", "quantity": 7.0}},
        fills={"f1": {"client_order_id": "o-same", "instrument": "QTY", "side": "buy",
                      "quantity": 10.0, "price": 30.0},
               "f-remote": {"client_order_id": "o-behind", "instrument": "QTY", "side": "buy",
                            "quantity": 5.0, "price": 30.0},
               "f-bad": {"client_order_id": "o-same", "instrument": "QTY", "side": "buy",
                         "quantity": 2.0, "price": 30.5}},
        account={"cash": 850.0}, broker="sim", account_id="acct-1")
    return local, remote


def test_every_status_from_hand_made_states():
    local, remote = _states()
    rep = reconcile(local, remote, None, timestamp_ms=1_000)
    pos = {p.instrument: p for p in rep.positions}
    assert {i: p.status for i, p in pos.items()} == {
        "SAME": "synced", "LOC": "local_only", "REM": "remote_only", "QTY": "qty_mismatch",
        "COST": "drifted", "TINY": "synced"}     # 0.2 bps of cost: inside the tolerance
    assert pos["QTY"].qty_diff == 5.0 and pos["LOC"].qty_diff == -5.0
    assert pos["COST"].avg_cost_diff == pytest.approx(1.0)
    assert {o.client_order_id: o.status for o in rep.orders} == {
        "o-behind": "status_mismatch", "o-ext": "unknown_to_bridge", "o-lost": "unknown_to_broker"}
    assert {f.exec_id: f.status for f in rep.fills} == {
        "f-remote": "missing_local", "f-local": "missing_remote", "f-bad": "mismatch"}
    assert rep.account_diffs[0].cash_diff == -150.0
    assert not rep.is_synced and rep.summary["differences"] == 11
    assert rep.summary["syncable"] == 9          # unknown_to_broker, missing_remote: a human
    actions = {d.key: d.action for d in rep.differences()}
    assert actions["fill:f-remote"] == "import missing fill"
    assert actions["position:QTY"] == "adopt broker quantity"
    assert actions["order:o-ext"].startswith("investigate: order placed outside bridge")
    # a tighter tolerance flags the small drift; a looser one accepts the 1.0 cost difference
    tight = reconcile(local, remote, Tolerance(cost_rel=1e-6, cost_abs=1e-6), timestamp_ms=1_000)
    assert {p.instrument: p.status for p in tight.positions}["TINY"] == "drifted"
    loose = reconcile(local, remote, 0.05, timestamp_ms=1_000)
    assert {p.instrument: p.status for p in loose.positions}["COST"] == "synced"


def test_report_id_frames_and_json():
    local, remote = _states()
    a = reconcile(local, remote, None, timestamp_ms=1_000)
    assert a.report_id == reconcile(local, remote, None, timestamp_ms=1_000).report_id
    assert a.report_id != reconcile(local, remote, None, timestamp_ms=2_000).report_id
    assert a.timestamp == "1970-01-01T00:00:01+00:00"
    frames = a.to_frames()
    assert frames["positions"].height == 6 and frames["fills"].height == 3
    assert frames["positions"].schema["qty_diff"] == pl.Float64
    assert a.to_frames("pandas")["orders"].shape[0] == 3
    doc = json.loads(a.to_json())
    assert doc["report_id"] == a.report_id and doc["broker"] == "sim"
    assert doc["account"] == "acct-1" and doc["is_synced"] is False
    assert doc["summary"]["positions_qty_mismatch"] == 1
    # nothing to report: every frame still has its columns
    empty = reconcile(LocalState(), BrokerState(), None, timestamp_ms=0)
    assert empty.is_synced and all(f.height == 0 for f in empty.to_frames().values())
    assert "instrument" in empty.to_frames()["positions"].columns


def test_failed_fetch_is_unknown_not_flat_pure():
    local, _ = _states()
    rep = reconcile(local, BrokerState.failed("ServerError: 500"), None, timestamp_ms=5)
    assert not rep.is_synced and rep.remote_status == "unknown"
    assert {p.status for p in rep.positions} == {"unknown"}     # never local_only ("flat")
    assert len(rep.positions) == len(local.positions) and not rep.orders and not rep.fills
    assert rep.summary["positions_local_only"] == 0
    with pytest.raises(SyncRefused, match="unknown"):
        sync("/nonexistent/never-opened.duckdb", rep)


def test_import_stays_light():
    code = ("import sys, bridge, bridge.reconcile; "
            "print(sorted(m for m in ('polars', 'duckdb', 'pandas', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- real divergences on real data -------------------------------------------------------------
def _session(sample_dir, tmp_path, **kw):
    from bridge.reconcile.demo import paper_session

    return paper_session(sample_dir, tmp_path / "bridge.duckdb", tmp_path / "plan",
                         strategy_id=SID, **kw)


def _reconcile(s, out_dir=None, **kw):
    return run_reconciliation(s.db, s.executor, SID, "paper", out_dir=out_dir, clock=s.clock,
                              marks=s.marks(), **kw)


def _audit(db):
    a = read_table(db, "audit_log")
    return a.filter(pl.col("kind") == AUDIT_KIND)


@pytest.mark.realdata
def test_paper_loop_is_synced_then_a_dropped_fill_is_found_and_imported(sample_dir, tmp_path):
    s = _session(sample_dir, tmp_path)
    rep = _reconcile(s, tmp_path / "reports" / "reconcile")
    assert rep.is_synced, rep.differences()[:5]
    assert rep.summary["positions_synced"] >= 15 and rep.remote_status == "ok"
    assert rep.broker == "sim"
    folder = tmp_path / "reports" / "reconcile" / rep.report_id
    assert json.loads((folder / "report.json").read_text())["is_synced"] is True
    assert pl.read_parquet(folder / "positions.parquet").height == len(rep.positions)
    # the stream drops one fill message: bridge's ledger lacks it (its book already has it)
    fills = read_table(s.db, "exec_fill").sort("exec_id")
    lost = fills.row(3, named=True)
    from bridge.store.duck import connect

    with connect(s.db) as con:
        con.execute("DELETE FROM exec_fill WHERE exec_id = ?", [lost["exec_id"]])
    rep = _reconcile(s)
    assert [(d.key, d.status) for d in rep.differences()] == [
        (f"fill:{lost['exec_id']}", "missing_local")]
    assert rep.fills[0].remote_quantity == lost["quantity"]
    res = sync(s.db, rep, actor="test")
    assert res.applied == [f"fill:{lost['exec_id']}"] and _audit(s.db).height == 1
    back = read_table(s.db, "exec_fill").filter(pl.col("exec_id") == lost["exec_id"]).row(
        0, named=True)
    assert (back["quantity"], back["price"], back["run_id"], back["client_order_id"]) == (
        lost["quantity"], lost["price"], lost["run_id"], lost["client_order_id"])
    assert _reconcile(s).is_synced


@pytest.mark.realdata
def test_fills_missed_while_the_stream_was_down(sample_dir, tmp_path):
    """The broker trades the last session; bridge never collects it."""
    s = _session(sample_dir, tmp_path, collect_last=False)
    missed = s.broker.get_fills(s.executor._fill_seq)
    assert len(missed) >= 3
    rep = _reconcile(s)
    assert not rep.is_synced
    assert sorted(f.exec_id for f in rep.fills if f.status == "missing_local") == \
        sorted(f["exec_id"] for f in missed)
    behind = {o.client_order_id for o in rep.orders if o.status == "status_mismatch"}
    assert behind == {f["client_order_id"] for f in missed}
    assert {o.local_status for o in rep.orders} == {"ACCEPTED"}
    moved = {p.instrument: p for p in rep.positions if p.status != "synced"}
    assert set(moved) == {f["instrument"] for f in missed}
    for f in missed:   # every quantity difference is the missed fill, signed
        sign = 1 if f["side"] == "buy" else -1
        assert moved[f["instrument"]].qty_diff == pytest.approx(sign * f["quantity"])
    assert rep.account_diffs and rep.account_diffs[0].remote_cash == s.broker.get_account()["cash"]
    n = len(rep.differences())
    res = sync(s.db, rep, actor="ops", clock=lambda: s.clock() + 1)
    assert len(res.applied) == n and not res.skipped
    audit = _audit(s.db)
    assert audit.height == n and set(audit["actor"]) == {"ops"}
    assert {json.loads(d)["report_id"] for d in audit["detail"]} == {rep.report_id}
    orders = read_table(s.db, "exec_order").filter(pl.col("client_order_id").is_in(list(behind)))
    assert set(orders["status"]) == {"FILLED"} and orders["avg_fill_price"].is_not_null().all()
    acct = read_table(s.db, "exec_account", order_by="ts_ms, rowid").row(-1, named=True)
    assert acct["cash"] == s.broker.get_account()["cash"]
    again = _reconcile(s)
    assert again.is_synced and again.report_id != rep.report_id


@pytest.mark.realdata
def test_order_placed_outside_bridge(sample_dir, tmp_path):
    from bridge.brokers.sim_executor import advance_session
    from bridge.reconcile.demo import place_outside_bridge

    s = _session(sample_dir, tmp_path)
    rec = place_outside_bridge(s, "manual-0001", 10)
    assert rec["status"] == "accepted"
    rep = _reconcile(s)    # still open at the broker: an unknown order, nothing else
    assert [(d.key, d.status) for d in rep.differences()] == [
        ("order:manual-0001", "unknown_to_bridge")]
    assert rep.orders[0].action == "investigate: order placed outside bridge (sync records it)"
    assert len(rep.to_frames()["orders"]) == 1
    nxt = s.broker.panel.sessions[s.broker._t + 1]
    advance_session(s.executor, str(nxt)[:10])     # it fills at the next open
    rep = _reconcile(s)
    got = {(d.key, d.status) for d in rep.differences()}
    fill = s.broker.get_fills(0)[-1]
    assert fill["client_order_id"] == "manual-0001"
    assert {("order:manual-0001", "unknown_to_bridge"), (f"fill:{fill['exec_id']}",
            "missing_local"), (f"position:{rec['instrument']}", "remote_only"),
            ("account:cash", "cash_mismatch")} <= got
    # the positions other than the new one moved with the marks, not with the quantities
    assert not [p for p in rep.positions if p.status in ("qty_mismatch", "local_only")]
    sync(s.db, rep, actor="ops")
    order = read_table(s.db, "exec_order").filter(pl.col("client_order_id") == "manual-0001")
    assert order.row(0, named=True)["run_id"] == f"reconcile-{rep.report_id}"
    assert order.row(0, named=True)["status"] == "FILLED"
    assert _audit(s.db).height == len(rep.differences())
    assert _reconcile(s).is_synced


@pytest.mark.realdata
def test_manual_position_changes_and_drift(sample_dir, tmp_path):
    from bridge.reconcile.demo import edit_position

    s = _session(sample_dir, tmp_path)
    pos = read_table(s.db, "exec_position").sort("instrument")
    a, b, c = (pos.row(i, named=True) for i in (0, 1, 2))
    edit_position(s.db, SID, a["instrument"], quantity=a["quantity"] + 5)   # bridge's book edited
    edit_position(s.db, SID, b["instrument"], avg_cost=b["avg_cost"] * 1.02)
    s.broker.transfer_in(c["instrument"], 7, c["avg_cost"])              # deposit at the broker
    rep = _reconcile(s)
    by = {p.instrument: p for p in rep.positions}
    assert by[a["instrument"]].status == "qty_mismatch" and by[a["instrument"]].qty_diff == -5
    assert by[b["instrument"]].status == "drifted"
    assert by[b["instrument"]].avg_cost_diff == pytest.approx(-0.02 * b["avg_cost"], rel=1e-9)
    assert by[c["instrument"]].status == "qty_mismatch" and by[c["instrument"]].qty_diff == 7
    assert rep.summary["positions_synced"] == len(rep.positions) - 3
    assert not rep.fills          # no fill explains any of them
    # stale marks (bridge valued at 3% off): market values drift, unless the tolerance allows it
    stale = {i: p * 1.03 for i, p in s.marks().items()}
    mv = run_reconciliation(s.db, s.executor, SID, clock=s.clock, marks=stale)
    assert mv.summary["positions_drifted"] == len(mv.positions) - 2
    assert run_reconciliation(s.db, s.executor, SID, clock=s.clock, marks=stale,
                              tolerance={"mv_rel": 0.05}).summary["positions_drifted"] == 1
    # sync one difference only, then the rest
    one = sync(s.db, rep, select=[f"position:{b['instrument']}"], actor="ops")
    assert one.applied == [f"position:{b['instrument']}"] and len(one.skipped) == 2
    left = _reconcile(s)
    assert {p.instrument for p in left.positions if p.status != "synced"} == {
        a["instrument"], c["instrument"]}
    sync(s.db, left, select="position", actor="ops")
    assert _audit(s.db).height == 3
    assert _reconcile(s).is_synced
    book = read_table(s.db, "exec_position").filter(pl.col("instrument") == c["instrument"])
    assert book["quantity"].item() == c["quantity"] + 7


@pytest.mark.realdata
@pytest.mark.parametrize("query", ["get_positions", "get_account", "get_fills"])
def test_failed_broker_query_is_unknown_never_flat(sample_dir, tmp_path, monkeypatch, query):
    from bridge.brokers.sim import ServerError

    s = _session(sample_dir, tmp_path, days=("2010-08-12",))

    def down(*a, **k):
        raise ServerError("500 internal error")

    monkeypatch.setattr(s.broker, query, down)
    state = fetch_broker_state(s.executor, sleep=lambda _: None)   # 3 tries, all failed
    assert not state.fetched_ok and "500" in state.error and state.positions == {}
    out = tmp_path / "reports"
    rep = _reconcile(s, out, sleep=lambda _: None)
    n_local = read_table(s.db, "exec_position").height
    assert rep.remote_status == "unknown" and not rep.is_synced
    assert [p.status for p in rep.positions] == ["unknown"] * n_local and n_local >= 10
    assert rep.summary["positions_local_only"] == 0 and not rep.orders and not rep.fills
    doc = json.loads((out / rep.report_id / "report.json").read_text())
    assert doc["remote"] == "unknown" and "500" in doc["error"]
    before = read_table(s.db, "audit_log").height
    with pytest.raises(SyncRefused):
        sync(s.db, rep)
    assert read_table(s.db, "audit_log").height == before
    assert read_table(s.db, "exec_position").height == n_local
    monkeypatch.undo()
    assert fetch_broker_state(s.executor).fetched_ok
    # one transient failure is retried (bridge's read policy), not reported as unknown
    calls = []
    real = getattr(s.broker, query)

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise ServerError("503 service unavailable")
        return real(*a, **k)

    monkeypatch.setattr(s.broker, query, flaky)
    assert fetch_broker_state(s.executor, sleep=lambda _: None).fetched_ok and len(calls) == 2
    calls.clear()
    assert not fetch_broker_state(s.executor, retry=False).fetched_ok   # without retries: unknown


def test_fetch_needs_a_reconcilable_executor():
    class NoFills:
        name = "x"

        def positions(self):
            return {}

        def account(self):
            return {}

        def orders(self):
            return {}

    with pytest.raises(TypeError, match="fills"):
        fetch_broker_state(NoFills())
    np.testing.assert_equal(fetch_broker_state(NoFills(), fills=lambda: []).fetched_ok, True)


def test_render_tables_and_figure():
    from rich.console import Console

    from bridge.reconcile.render import differences_figure, rich_tables

    local, remote = _states()
    rep = reconcile(local, remote, None, timestamp_ms=1_000)
    con = Console(record=True, width=200)
    for r in rich_tables(rep):
        con.print(r)
    text = con.export_text()
    assert "11 differences" in text and "import missing fill" in text and "o-ext" in text
    fig = differences_figure(rep)
    assert {t.name for t in fig.data if t.name} == {"local_only", "remote_only", "qty_mismatch",
                                                    "drifted"}
    down = reconcile(local, BrokerState.failed("ServerError: 500"), None, timestamp_ms=1)
    con = Console(record=True, width=200)
    for r in rich_tables(down):
        con.print(r)
    text = con.export_text()
    assert "UNKNOWN" in text and "sync refused" in text
    assert "UNKNOWN" in differences_figure(down).layout.title.text


@pytest.mark.realdata
def test_demo_path_reconciles_real_divergences_then_syncs(sample_dir, tmp_path):
    """What `bridge reconcile` and notebooks/reconciliation.ipynb run."""
    from bridge.reconcile.demo import diverged_session

    s = diverged_session(sample_dir, tmp_path / "reconcile", strategy_id=SID)
    rep = _reconcile(s, tmp_path / "reconcile")
    got = {k for k, v in rep.summary.items() if v and k not in ("differences", "syncable")}
    assert {"positions_synced", "positions_local_only", "positions_remote_only",
            "positions_qty_mismatch", "positions_drifted", "orders_status_mismatch",
            "orders_unknown_to_bridge", "fills_missing_local", "account_cash_mismatch"} == got
    sync(s.db, rep, actor="demo", clock=lambda: s.clock() + 1)
    again = _reconcile(s, tmp_path / "reconcile")
    assert again.is_synced
    assert (tmp_path / "reconcile" / again.report_id / "fills.parquet").exists()


@pytest.mark.realdata
def test_demo_divergences_through_ib_match_the_paper_broker(sample_dir, tmp_path):
    """The same divergences reached through ib_async and the TWS API emulator (socket dropped for
    the last session, the outside order from another API client) give the same report as the
    embedded paper broker, position by position; after the sync both sides agree."""
    pytest.importorskip("ib_async")
    from bridge.reconcile.demo import diverged_session

    reports = {}
    for kind in ("sim", "ib"):
        s = diverged_session(sample_dir, tmp_path / kind, strategy_id=SID, broker=kind)
        try:
            rep = _reconcile(s, tmp_path / kind)
            reports[kind] = rep
            if kind == "ib":
                assert rep.broker == "ib-paper" and rep.fetched_ok
                sync(s.db, rep, actor="test", clock=lambda: s.clock() + 1)
                assert _reconcile(s, tmp_path / kind).is_synced
        finally:
            s.close()
    assert reports["ib"].summary == reports["sim"].summary
    pos = {k: r.to_frames("pandas")["positions"].set_index("instrument").sort_index()
           for k, r in reports.items()}
    cols = ["status", "local_qty", "remote_qty", "remote_avg_cost", "action"]
    assert pos["ib"][cols].equals(pos["sim"][cols])
