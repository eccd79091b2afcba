"""Workloads: the IB paper path, the real ib_async client against the TWS API emulator.

1. ``loop``: one rebalance of the real momentum book (the ``momentum_top50`` preview instance on
   2010-08-12) to the reversal_5 signal, top-k 50 with ``n_drop`` 27: 25 sells at the open, 25
   buys at the close = 50 orders. Plan (DecisionSnapshot) -> risk -> IBExecutor -> emulator ->
   fills -> bridge's book in DuckDB -> reconciliation against IB. Timed from the executor's connect to the
   reconciliation report; the emulator's start (bars loaded, book transferred) is reported apart.
   Needs ``bridge preview run`` first (``make demo`` or ``make test`` do it).
2. ``faults``: per fault kind (:func:`bridge.brokers.ib_faults.kinds`), ``--orders`` submits
   (default 1,000) with the fault injected at ``--rate``; every order accounted for (no
   duplicates, none lost, fills and positions equal on both sides).

Run:  .venv/bin/python benchmarks/bench_ib.py [--repeat 5] [--orders 1000] [--rate 0.1]
      [--only loop|faults]
Writes benchmarks/results/ib_loop.json and benchmarks/results/ib_faults.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bridge.brokers.ib import IBExecutor
from bridge.brokers.ib_emulator import make_ib_emulator
from bridge.brokers.ib_faults import INSTRUMENTS, kinds, run_faults

ROOT = Path(__file__).resolve().parents[1]
DATA, DB = ROOT / "data", ROOT / "data" / "bridge.duckdb"
DAY = pd.Timestamp("2010-08-12")


def one_loop(panel, preds, book, cash) -> dict:
    from bridge.execution.run import TradeRun
    from bridge.planner.job import plan_tomorrow
    from bridge.planner.tomorrow import PlanParams
    from bridge.portfolio import TopkDropout
    from bridge.reconcile import run_reconciliation
    from bridge.risk import RiskEngine

    clock = lambda: int((DAY + pd.Timedelta(hours=20)).value // 10**6)  # noqa: E731
    t0 = time.perf_counter()
    emu = make_ib_emulator(DATA, cash=cash, start=str(DAY.date()), end="2010-08-20",
                           clock=clock).start()
    for r in book.itertuples():
        emu.broker.transfer_in(r.instrument, r.amount, r.avg_cost)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ib.duckdb"
        ex = IBExecutor(port=emu.port, client_id=1)
        try:
            out = plan_tomorrow(preds, book[["instrument", "amount"]], cash,
                                PlanParams(topk=TopkDropout(topk=50, n_drop=27)), DATA, db,
                                Path(tmp) / "plan", created_at=datetime(2000, 1, 1))
            snap = out.snapshot
            run = TradeRun(db, ex, RiskEngine.default(rate_per_s=1_000, burst=1_000,
                                                      max_weight=0.1), clock,
                           strategy_id="bench_ib")
            sells, buys = run.execute_sells_first(snap.snapshot_id, clock(),
                                                  snap.trade_date.date(),
                                                  lambda d, ph: emu.advance(str(d), ph))
            rec = run_reconciliation(db, ex, "bench_ib", "paper", 1e-4, Path(tmp) / "rec",
                                     clock=clock)
            t2 = time.perf_counter()
        finally:
            ex.close()
            emu.stop()
    sent = sells.orders + buys.orders
    return {"orders": len(sent), "filled": sum(str(o.status) == "FILLED" for o in sent),
            "synced": bool(rec.is_synced), "emulator_start_s": t1 - t0, "loop_s": t2 - t1}


def bench_loop(repeat: int) -> dict:
    from bridge.market.data import Panel, load_bars
    from bridge.research import reversal
    from bridge.store import read_table

    panel = Panel.from_bars(load_bars(DATA))
    preds = reversal(panel, 5)   # a different signal than the book's: n_drop names turn over
    preds = preds[preds["datetime"] <= DAY]
    pos = read_table(DB, "preview_position", ["momentum_top50"]).to_pandas()
    acc = read_table(DB, "preview_account", ["momentum_top50"]).to_pandas()
    book = pos[pd.to_datetime(pos["trading_day"]) == DAY][["instrument", "amount", "avg_cost"]]
    cash = float(acc.loc[pd.to_datetime(acc["trading_day"]) == DAY, "cash"].iloc[0])
    runs = [one_loop(panel, preds, book, cash) for _ in range(repeat)]
    for r in runs:
        print(json.dumps(r), flush=True)
    loop = [r["loop_s"] for r in runs]
    return {"workload": "one rebalance of momentum_top50 (2010-08-12) to reversal_5, top-k 50 / "
                        "n_drop 27",
            "orders": runs[0]["orders"], "filled": runs[0]["filled"],
            "synced": all(r["synced"] for r in runs), "repeat": repeat,
            "loop_s_median": round(statistics.median(loop), 3),
            "loop_s_min": round(min(loop), 3), "loop_s_max": round(max(loop), 3),
            "emulator_start_s_median": round(statistics.median(
                r["emulator_start_s"] for r in runs), 3)}


def bench_faults(n: int, rate: float) -> list[dict]:
    out = []
    for i, (name, f) in enumerate(kinds(rate).items()):
        emu = make_ib_emulator(DATA, cash=50_000_000.0, start="2010-08-02", end="2010-08-31",
                               instruments=list(INSTRUMENTS), seed=100 + i).start()
        ex = IBExecutor(port=emu.port, client_id=3, ack_timeout_s=0.1, connect_timeout_s=2.0)
        try:
            r = run_faults(emu, ex, name, f, n)
        finally:
            ex.close()
            emu.stop()
        out.append(r)
        print(json.dumps(r), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--only", choices=("loop", "faults"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)   # ib_async logs every injected fault
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    np.seterr(all="ignore")
    if a.only in (None, "loop"):
        loop = bench_loop(a.repeat)
        (res / "ib_loop.json").write_text(json.dumps(loop, indent=2) + "\n")
        print(json.dumps(loop), flush=True)
    if a.only in (None, "faults"):
        out = bench_faults(a.orders, a.rate)
        (res / "ib_faults.json").write_text(json.dumps(out, indent=2) + "\n")
        ok = all(r["duplicate_orders"] == 0 and r["lost_orders"] == 0 and r["fills_equal"]
                 and r["positions_equal"] and "UNKNOWN" not in r["final"] for r in out)
        print("ALL ACCOUNTED FOR" if ok else "MISMATCH", flush=True)


if __name__ == "__main__":
    main()
