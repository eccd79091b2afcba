"""Fault runs of the IB path: the real ib_async client (through :class:`IBExecutor`) against the
TWS emulator with one fault kind injected, every order accounted for.

Used by ``tests/test_ib.py`` (small runs) and ``benchmarks/bench_ib_faults.py`` (1,000 submits per
kind). A run submits ``n`` market buys (gtc, 1-3 shares, round-robin over the instruments); an
UNKNOWN answer is settled by :meth:`IBExecutor.resolve` (search by orderRef; re-sent only when IB
never got it, with the same order id). Every ``batch`` submits the emulator trades the next session
and bridge flushes its fills. At the end, with the faults off:

- duplicate orders: orders at the emulator sharing an orderRef, beyond the first;
- lost orders: an order bridge holds ACCEPTED that the emulator does not have, or one the
  emulator placed that bridge holds as anything but ACCEPTED, or an answer still UNKNOWN;
- fills: bridge's (deduplicated) against the emulator's executions, by execId and shares;
- positions: bridge's fills summed, IB's reqPositions, the paper broker's book.
"""

from __future__ import annotations

import time
from collections import Counter

from bridge.brokers.ib import IBExecutor
from bridge.brokers.ib_emulator import Faults, TWSEmulator
from bridge.execution.contract import OrderCtx

INSTRUMENTS = ("A", "AAPL", "JPM", "MSFT", "XOM", "BRK.B")
SESSIONS = ("2010-08-03", "2010-08-04", "2010-08-05", "2010-08-06", "2010-08-09",
            "2010-08-10", "2010-08-11", "2010-08-12", "2010-08-13", "2010-08-16", "2010-08-17")


def kinds(rate: float = 0.1) -> dict[str, Faults]:
    """One :class:`Faults` per fault kind (``rate``: probability per submit or per fill), plus
    ``all`` at once. Acceptances are held 0.15 s (past a 0.1 s ack timeout); outages 0.05 s."""
    one = lambda k, p=rate: Faults(p={k: p}, delay_s=0.15, outage_s=0.05)  # noqa: E731
    out = {k: one(k) for k in ("drop_before_place", "drop_after_place", "delay_status",
                               "missing_status", "duplicate_exec", "correction", "reject",
                               "connectivity_lost")}
    out["drop_mid_fill"] = one("drop_mid_fill", 1.0)   # every session's fills cut halfway
    out["all"] = Faults(p={k: rate / 4 for k in out if k != "drop_mid_fill"}
                        | {"drop_mid_fill": 0.5}, delay_s=0.15, outage_s=0.05)
    return out


def _ctx(i: int, instruments) -> OrderCtx:
    return OrderCtx(client_order_id=f"f-{i:06d}", instrument=instruments[i % len(instruments)],
                    side="buy", tick_size=0.01, step_size=1.0, order_type="market",
                    quantity=1 + i % 3, time_in_force="gtc", decision_snapshot_id="fault-run",
                    strategy_id="fault-run", ts_ms=0, event_ts_ms=0)


def run_faults(emu: TWSEmulator, ex: IBExecutor, name: str, faults: Faults, n: int,
               batch: int = 100, instruments=INSTRUMENTS, sessions=SESSIONS) -> dict:
    """Run ``n`` submits under ``faults``; returns the accounting (see the module docstring)."""
    t0 = time.perf_counter()
    emu.set_faults(faults)
    first, final, answer = Counter(), Counter(), {}
    fills, days = [], iter(sessions)
    for i in range(n):
        c = _ctx(i, instruments)
        r = ex.submit(c)
        first[r.status] += 1
        for _ in range(10):
            if r.status != "UNKNOWN":
                break
            r = ex.resolve(c)
        final[r.status] += 1
        answer[c.client_order_id] = r.status
        if (i + 1) % batch == 0 or i == n - 1:
            emu.advance(next(days))
            fills += ex.flush()
    emu.set_faults(Faults())
    time.sleep(faults.delay_s + 0.05)            # acceptances still held back arrive
    fills += ex.flush()
    st = emu.state()
    refs = st["orders_per_ref"]
    at_broker = {o.ref: emu._ib_status(o) for o in emu.orders.values()}
    placed = {cid for cid, st in at_broker.items() if st != "Inactive"}
    lost = [cid for cid, a in answer.items()
            if a == "UNKNOWN" or (a == "ACCEPTED") != (cid in placed)]
    local = Counter()
    for f in fills:
        local[f.instrument] += f.quantity
    broker_execs = {e.exec_id.rsplit(".", 1)[0]: e.shares for e in emu.execs}
    local_execs = {f.exec_id.rsplit(".", 1)[0]: f.quantity for f in fills}
    remote = {k: v["qty"] for k, v in ex.positions().items()}
    book = {k: v["qty"] for k, v in emu.broker.get_positions().items()}
    return {"kind": name, "submits": n, "injected": st["injected"],
            "first_answer": dict(first), "final": dict(final),
            "place_order_messages": st["counters"]["place_order"],
            "orders_at_broker": len(emu.orders),
            "duplicate_orders": sum(v - 1 for v in refs.values() if v > 1),
            "lost_orders": len(lost), "resent": ex.counters["resent"],
            "reconnects": ex.counters["reconnects"],
            "fills": len(fills), "broker_executions": len(broker_execs),
            "fills_equal": local_execs == broker_execs,
            "repeated_exec_dropped": ex.counters["repeated_exec"],
            "corrections_dropped": ex.counters["corrections_same"],
            "positions_equal": dict(local) == remote == book,
            "wall_s": round(time.perf_counter() - t0, 2)}
