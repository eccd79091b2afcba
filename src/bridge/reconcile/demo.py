"""A reconciliation demo on real data: a short paper loop, real divergences, the report.

The embedded paper broker lives in memory: there is no paper account to reconnect to after the
process that traded it has ended, so reconciling an old DuckDB file against a freshly built
PaperBroker would only show that the new broker is empty. The honest demo therefore trades a short
paper loop in this process (momentum scores -> plan -> TradeRun -> broker, on the sample S&P 500
bars), into a scratch DuckDB file, and then makes the two sides diverge the way they do in
practice:

- the fill stream is down: the broker trades the last session and bridge never collects it
  (missing fills, order statuses behind, positions and cash behind);
- an order is placed directly on the broker, outside bridge;
- a position is changed by hand in bridge's book (``exec_position``);
- an average cost drifts (edited in ``exec_position``).

``broker="sim"`` trades on the embedded paper broker through :class:`SimExecutor`;
``broker="ib"`` trades on the same paper broker behind the TWS API emulator, through the real
ib_async client (:class:`~bridge.brokers.ib.IBExecutor`): there the fill stream is down because
the API socket is dropped before the last session, and the outside order is placed by another
API client (client id 99, as a TWS user or another program would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEMO_DAYS = ("2010-08-12", "2010-08-13")
START_MS = 1_281_643_200_000  # 2010-08-12 20:00 UTC: after the close of the first signal date


@dataclass
class PaperSession:
    """A paper loop's live objects: the broker (in memory), its executor, the TradeRun, the DB."""

    db: Path
    data_dir: Path
    panel: object
    broker: object
    executor: object
    run: object
    strategy_id: str
    now: list = field(default_factory=lambda: [START_MS])
    reports: list = field(default_factory=list)
    emulator: object = None          # the TWS emulator when broker="ib"
    collected_fills: int = 0         # broker fills bridge has collected (the rest it missed)

    def clock(self) -> int:
        return self.now[0]

    def marks(self) -> dict[str, float]:
        """The data's last close at the broker's current session (bridge's own valuation)."""
        import numpy as np

        t = getattr(self.broker, "_t", 0)
        row = self.panel.last_close()[t]
        return {i: float(row[j]) for j, i in enumerate(self.panel.instruments)
                if np.isfinite(row[j])}

    def advance(self, day) -> None:
        """The broker trades session ``day`` (pushing the fills to a connected client)."""
        if self.emulator is not None:
            self.emulator.advance(str(day)[:10])
        else:
            from bridge.brokers.sim_executor import advance_session

            advance_session(self.executor, day)

    def close(self) -> None:
        """Disconnect and stop the emulator (broker="ib"); nothing to do for the sim broker."""
        if self.emulator is not None:
            self.executor.close()
            self.emulator.stop()


def _venue(kind: str, panel, cash: float, clock, seed: int):
    """(paper broker, executor, emulator or None) for ``kind`` sim or ib."""
    from bridge.brokers.sim import PaperBroker
    from bridge.brokers.sim_executor import SimExecutor

    broker = PaperBroker(panel, cash, fill_at="open", clock=clock, seed=seed)
    if kind == "sim":
        return broker, SimExecutor(broker), None
    if kind != "ib":
        raise ValueError(f"broker must be 'sim' or 'ib', got {kind!r}")
    from bridge.brokers.ib import IBExecutor
    from bridge.brokers.ib_emulator import TWSEmulator

    emu = TWSEmulator(broker, clock=clock, seed=seed).start()
    return broker, IBExecutor(port=emu.port, client_id=1), emu


def paper_session(data_dir: Path | str, db: Path | str, out_dir: Path | str,
                  days=DEMO_DAYS, strategy_id: str = "momentum", collect_last: bool = True,
                  on_last_submit=None, cash: float = 1_000_000.0, seed: int = 3,
                  broker: str = "sim") -> PaperSession:
    """Plan and trade ``days`` (signal dates) through TradeRun and a paper broker.

    Parameters
    ----------
    data_dir : folder of the sample data (``bridge data install-samples``)
    db : DuckDB file (should be new: the broker starts with a fresh account)
    out_dir : folder for the plan files
    days : signal dates; each is traded in the following session
    collect_last : bool
        False: the last session is traded by the broker but never collected by bridge (the fill
        stream was down; with ``broker="ib"`` the API socket is dropped first).
    on_last_submit : callable(PaperSession), optional
        Called after the last submit, before the broker trades the session (e.g. to place an
        order outside bridge).
    broker : {"sim", "ib"}
        The embedded paper broker directly, or behind the TWS API emulator through ib_async
        (call :meth:`PaperSession.close` when done).
    """
    from datetime import datetime

    import numpy as np
    import pandas as pd

    from bridge.execution.run import TradeRun
    from bridge.market.data import Panel, load_bars
    from bridge.planner.job import plan_tomorrow, read_positions
    from bridge.planner.tomorrow import PlanParams
    from bridge.portfolio import TopkDropout
    from bridge.research import momentum
    from bridge.risk import RiskEngine

    data_dir, db, out_dir = Path(data_dir), Path(db), Path(out_dir)
    panel = Panel.from_bars(load_bars(data_dir))
    preds = momentum(panel, 20)
    s = PaperSession(db, data_dir, panel, None, None, None, strategy_id)
    s.broker, s.executor, s.emulator = _venue(broker, panel, cash, s.clock, seed)
    s.run = TradeRun(db, s.executor, RiskEngine.default(rate_per_s=1e4, burst=1e4, max_weight=0.2,
                                                        max_notional=1e6),
                     s.clock, strategy_id=strategy_id)
    book = read_positions(None)
    for k, day in enumerate(days):
        last = k == len(days) - 1
        s.broker._t = int(np.searchsorted(panel.sessions, np.datetime64(day)))
        out = plan_tomorrow(preds[preds["datetime"] <= day], book,
                            s.broker.get_account()["cash"],
                            PlanParams(topk=TopkDropout(topk=20, n_drop=4)), data_dir, db,
                            out_dir, created_at=datetime(2010, 8, 18))
        rep = s.run.submit_snapshot(out.snapshot.snapshot_id, s.clock())
        s.reports.append(rep)
        if last and on_last_submit is not None:
            on_last_submit(s)
        missed = last and not collect_last
        if missed and s.emulator is not None:
            s.emulator.drop_connections()            # the API socket is down for the session
        s.advance(out.snapshot.trade_date.date())
        if not missed:
            s.run.collect(rep)
            s.collected_fills = len(s.broker.fills)
        book = pd.DataFrame([{"instrument": i, "amount": p["qty"]}
                             for i, p in s.broker.get_positions().items()])
        s.now[0] += 86_400_000
    return s


def place_outside_bridge(session: PaperSession, client_order_id: str = "manual-0001",
                         quantity: float = 10.0) -> dict:
    """Place a market buy directly on the broker (an order bridge never sent); with the TWS
    emulator, through a second API client (client id 99). Returns the venue's order record."""
    held = session.broker.get_positions()
    marks = session.marks()
    inst = str(next(i for i in sorted(marks) if i not in held))
    if session.emulator is None:
        return session.broker.place_order(client_order_id, inst, "buy", quantity, "market",
                                          time_in_force="day")
    from bridge.brokers.ib import IBExecutor
    from bridge.execution.contract import OrderCtx

    other = IBExecutor(port=session.emulator.port, client_id=99)
    try:
        other.submit(OrderCtx(client_order_id=client_order_id, instrument=inst, side="buy",
                              tick_size=0.01, step_size=1.0, order_type="market",
                              quantity=quantity, time_in_force="day",
                              decision_snapshot_id="manual", strategy_id="manual",
                              ts_ms=session.clock(), event_ts_ms=session.clock()))
    finally:
        other.close()
    perm = next(p for p, o in session.emulator.orders.items() if o.ref == client_order_id)
    return session.broker.get_order_by_client_id(session.emulator.orders[perm].sim_cid)


def edit_position(db: Path | str, strategy_id: str, instrument: str, quantity: float | None = None,
                  avg_cost: float | None = None, mode: str = "paper") -> None:
    """Change bridge's book by hand (what a manual correction or a bad import does)."""
    from bridge.store.duck import connect

    with connect(db) as con:
        if quantity is not None:
            con.execute("UPDATE exec_position SET quantity = ? WHERE strategy_id = ? AND mode = ? "
                        "AND instrument = ?", [quantity, strategy_id, mode, instrument])
        if avg_cost is not None:
            con.execute("UPDATE exec_position SET avg_cost = ? WHERE strategy_id = ? AND mode = ? "
                        "AND instrument = ?", [avg_cost, strategy_id, mode, instrument])


def diverged_session(data_dir: Path | str, work_dir: Path | str,
                     strategy_id: str = "momentum", broker: str = "sim") -> PaperSession:
    """The demo's paper loop with every kind of real divergence (see the module docstring)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "demo.duckdb"
    for p in (db, db.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    s = paper_session(data_dir, db, work_dir / "plan", strategy_id=strategy_id,
                      collect_last=False, on_last_submit=place_outside_bridge, broker=broker)
    from bridge.store.duck import connect

    with connect(db, read_only=True) as con:
        rows = con.execute("SELECT instrument, quantity, avg_cost FROM exec_position WHERE "
                           "strategy_id = ? ORDER BY instrument", [strategy_id]).fetchall()
    # positions the uncollected session did not touch, so each divergence stays distinct
    uncollected = {f["instrument"] for f in s.broker.get_fills(s.collected_fills)}
    stable = [r for r in rows if r[0] not in uncollected] or rows
    manual, drift = stable[0], stable[-1]
    edit_position(db, strategy_id, manual[0], quantity=manual[1] + 5)      # manual change
    edit_position(db, strategy_id, drift[0], avg_cost=drift[2] * 1.02)     # 2% cost drift
    return s
