"""Workload: 10,000 orders through risk + paper broker + outbox + DuckDB (the paper path).

A universe of 10,000 instruments is built by resampling the real bars of two sample sessions
(2010-08-19 and 2010-08-20; instrument i copies a real instrument, seeded). A DecisionSnapshot
with one buy per instrument (equal weight of USD 100M, planned by the OrderPlanner) is stored,
then a TradeRun persists the 10,000 orders (INITIALIZED, before any send), checks each against
the default risk rules, submits to the embedded paper broker, publishes every event through the
outbox (fsync batched: 500 events or 50 ms per fsync, so every acknowledged event is durable),
lets the broker trade the session, applies the fills, and writes orders, fills, book, audit.

Run:  .venv/bin/python benchmarks/bench_paper.py [--orders 10000]
Reported: wall time and orders/s of submit (persist + risk + send + events) and of the whole path
(+ matching, fills, book, DuckDB), and the risk check's p50/p95/p99 in microseconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from bridge.brokers.sim import PaperBroker
from bridge.brokers.sim_executor import SimExecutor, advance_session
from bridge.execution.outbox import Outbox
from bridge.execution.run import TradeRun
from bridge.market.data import Panel, load_bars
from bridge.planner.tomorrow import PlanParams
from bridge.risk import RiskEngine
from bridge.store.snapshots import Snapshot, save_snapshot

ROOT = Path(__file__).resolve().parents[1]


def big_panel(n: int) -> Panel:
    bars = load_bars(ROOT / "data", start="2010-08-19", end="2010-08-20")
    names = bars.filter(pl.col("datetime") == pl.date(2010, 8, 20))["instrument"].unique().sort()
    both = bars.filter(pl.col("instrument").is_in(names.implode()))
    pick = np.random.default_rng(5).choice(len(names), n)
    src = pl.DataFrame({"instrument": names.to_numpy()[pick],
                        "new": [f"R{i:05d}" for i in range(n)]})
    big = both.join(src, on="instrument").drop("instrument").rename({"new": "instrument"})
    return Panel.from_bars(big)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=10_000)
    n = ap.parse_args().orders
    panel = big_panel(n)
    t_sig = int(np.searchsorted(panel.sessions, np.datetime64("2010-08-19")))
    close = panel.close[t_sig]
    ok = np.isfinite(close)
    names = panel.instruments[ok]
    qty = np.floor(1e8 / ok.sum() / close[ok])
    orders = pd.DataFrame({"instrument": names, "side": "buy", "quantity": qty,
                           "intended_quantity": qty, "order_type": "market", "price": close[ok],
                           "limit_price": np.nan, "tick_rounding": 0.0, "value": qty * close[ok],
                           "fee": 0.0, "reason": ""})
    market = pd.DataFrame({"instrument": names, "price": close[ok], "tradable": True,
                           "volume": panel.volume[t_sig, ok], "limit_up": False, "limit_down": False})
    snap = Snapshot("ds-bench", pd.Timestamp("2010-08-19"), pd.Timestamp("2010-08-20"), PlanParams(),
                    "bench", 1e9, pd.DataFrame({"instrument": names, "score": 1.0}),
                    pd.DataFrame({"instrument": pd.Series([], dtype=str), "amount": [],
                                  "sellable": [], "days_held": pd.Series([], dtype="int64")}),
                    market, pd.DataFrame({"instrument": names, "target_amount": qty,
                                          "action": "buy", "score": 1.0}), orders)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "b.duckdb"
        save_snapshot(db, snap, datetime(2010, 8, 19))
        now = [int(pd.Timestamp("2010-08-19 20:00").value // 10**6)]
        broker = PaperBroker(panel, 1e9, fill_at="open", participation=0.1, clock=lambda: now[0])
        broker._t = t_sig
        risk = RiskEngine.default(rate_per_s=1e6, burst=1e6, max_notional=1e6, max_weight=0.01,
                                  max_quantity=1e7)
        lat = []
        check = risk.check

        def timed_check(order, account):
            t = time.perf_counter_ns()
            d = check(order, account)
            lat.append(time.perf_counter_ns() - t)
            return d

        risk.check = timed_check
        with Outbox(Path(tmp) / "events", batch_size=500, max_batch_ms=50.0) as box:
            run = TradeRun(db, SimExecutor(broker), risk, lambda: now[0], outbox=box)
            t0 = time.perf_counter()
            rep = run.submit_snapshot("ds-bench", now[0])
            t1 = time.perf_counter()
            advance_session(run.executor, "2010-08-20")
            run.collect(rep)
            t2 = time.perf_counter()
            stats = box.stats
        lat_us = np.array(lat) / 1e3
        out = {
            "orders": len(rep.orders), "filled": int(sum(o.status == "FILLED" for o in rep.orders)),
            "partially_filled_or_expired": int(sum(o.status in ("EXPIRED", "PARTIALLY_FILLED")
                                                   for o in rep.orders)),
            "submit_s": t1 - t0, "submit_orders_per_s": len(rep.orders) / (t1 - t0),
            "total_s": t2 - t0, "total_orders_per_s": len(rep.orders) / (t2 - t0),
            "risk_p50_us": float(np.percentile(lat_us, 50)),
            "risk_p95_us": float(np.percentile(lat_us, 95)),
            "risk_p99_us": float(np.percentile(lat_us, 99)),
            "outbox": None if stats is None else str(stats),
        }
    print(json.dumps(out, indent=2))
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "paper.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
