"""Workload: durable execution events per second through the outbox, with fsync batching.

100,000 events (an ORDER_FILLED with a five-field payload, ~300 bytes per JSON line) are appended
to a fresh outbox with ``batch_size=500, max_batch_ms=50`` and closed, so every event is fsync'ed
and published to ``ready/`` before the clock stops. Then the same with a smaller batch and with
one fsync per event (``batch_size=1``, on fewer events) to show what batching buys, and a read-back
of the 100,000 events with ``read_events``.

Figures: events per second (appends until the last event is durable), fsyncs per second (file
and directory fsyncs, two per published segment), and per-event cost in microseconds. Event
construction (``ExecutionEvent.new``) is done before the clock starts: it is the caller's cost.

Run:  .venv/bin/python benchmarks/bench_outbox.py [--events 100000] [--repeat 3] [--dir /tmp]
                                                 [--json benchmarks/results/outbox.json]
``--dir`` must be on the disk you want to measure (default: the system temp folder); on a tmpfs
fsync is free and the figures mean nothing. ``--json`` also writes the figures to a file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bridge.execution.events import EventType, ExecutionEvent
from bridge.execution.outbox import Outbox, read_events


def make_events(n: int) -> list[ExecutionEvent]:
    return [ExecutionEvent.new(EventType.ORDER_FILLED, ts_ms=1_282_334_400_000 + i,
                               client_order_id=f"c-{i // 4}", instrument=f"R{i % 5000:05d}",
                               strategy_id="momentum_top50",
                               payload={"exec_id": f"x-{i}", "quantity": 100 * (i % 9 + 1),
                                        "price": 25.0 + (i % 1000) / 100, "commission": 1.0,
                                        "side": "BUY" if i % 2 else "SELL"})
            for i in range(n)]


def run_once(events: list[ExecutionEvent], batch_size: int, max_batch_ms: float,
             base: str | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_outbox_", dir=base))
    try:
        t = time.perf_counter()
        with Outbox(tmp / "ob", batch_size=batch_size, max_batch_ms=max_batch_ms) as ob:
            for ev in events:
                ob.append(ev)
        wall = time.perf_counter() - t  # close() has flushed: everything is durable
        assert ob.acked_seq == len(events)
        t = time.perf_counter()
        n_read = sum(1 for _ in read_events(tmp / "ob"))
        read_wall = time.perf_counter() - t
        assert n_read == len(events)
        return {"wall_s": wall, "fsyncs": ob.stats.fsyncs, "segments": ob.stats.flushes,
                "read_s": read_wall}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(events, batch_size, max_batch_ms, repeat, base) -> dict:
    runs = [run_once(events, batch_size, max_batch_ms, base) for _ in range(repeat)]
    wall = statistics.median(r["wall_s"] for r in runs)
    n = len(events)
    return {"events": n, "batch_size": batch_size, "max_batch_ms": max_batch_ms,
            "repeat": repeat, "wall_s": round(wall, 4),
            "events_per_s": round(n / wall), "us_per_event": round(wall / n * 1e6, 2),
            "segments": runs[0]["segments"], "fsyncs": runs[0]["fsyncs"],
            "fsyncs_per_s": round(runs[0]["fsyncs"] / wall),
            "read_events_per_s": round(n / statistics.median(r["read_s"] for r in runs))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="parent folder of the temporary outboxes")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args()

    events = make_events(args.events)
    cases = [
        measure(events, 500, 50.0, args.repeat, args.dir),
        measure(events, 50, 50.0, args.repeat, args.dir),
        # one fsync per event: the cost batching avoids (fewer events, it is slow)
        measure(events[: min(2_000, args.events)], 1, 50.0, args.repeat, args.dir),
    ]
    print(f"{'batch':>6} {'events':>8} {'wall s':>8} {'events/s':>10} {'us/event':>9} "
          f"{'segments':>9} {'fsyncs/s':>9} {'read ev/s':>10}")
    for c in cases:
        print(f"{c['batch_size']:>6} {c['events']:>8,} {c['wall_s']:>8.3f} "
              f"{c['events_per_s']:>10,} {c['us_per_event']:>9.2f} {c['segments']:>9,} "
              f"{c['fsyncs_per_s']:>9,} {c['read_events_per_s']:>10,}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": cases}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
