"""Workload: one reconciliation report over 5,000 positions and 50,000 fills (target: < 1 s).

States are resampled from the real sample data (S&P 500 bars, ``bridge data install-samples``):
each of the 5,000 positions is a real instrument (sampled with replacement, labelled
``<ticker>#<k>`` so the names stay distinct: SYNTHETIC books, real prices), its average cost a
real close of a random session, its mark the last real close; 50,000 fills of 20,000 orders
(2.5 fills per order on average) take real closes of their instrument and quantities of a small
share of real session volumes. The broker's side is that book; bridge's side is a copy with
seeded divergences of every kind (rates below), so the comparison does its full work:

- fills: 1 % missing locally (the stream was down), 0.1 % missing at the broker, 0.1 % with a
  different price;
- orders: 1 % with a status behind the broker, 0.2 % placed outside bridge, 0.1 % the broker
  never saw;
- positions: 2 % quantity mismatch, 1 % average cost drift (2 %), 1 % market value off (stale
  mark, 1 %), 0.5 % local only, 0.5 % remote only.

Timed (``time.perf_counter``, median of ``--repeat`` runs after one warm-up): ``reconcile``
(comparison + report id), ``to_frames`` (polars), ``to_json``. States are built before timing.

Run:  .venv/bin/python benchmarks/bench_reconcile.py [--positions 5000] [--fills 50000]
      [--repeat 7] [--seed 5] [--data data] [--json benchmarks/results/reconcile.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bridge.reconcile import BrokerState, LocalState, reconcile

TARGET_S = 1.0


def real_prices(data_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Instruments with a full history: names, closes (T, N), last close (N,), volumes (T, N)."""
    from bridge.market.data import Panel, load_bars

    panel = Panel.from_bars(load_bars(data_dir))
    ok = np.isfinite(panel.close).all(axis=0) & (panel.volume > 0).all(axis=0)
    names = [i for i, k in zip(panel.instruments, ok, strict=True) if k]
    return names, panel.close[:, ok], panel.close[-1, ok], panel.volume[:, ok]


def build_states(n_positions: int, n_fills: int, seed: int, data_dir: Path):
    """(local, remote, divergences injected by kind): bridge's side and the broker's."""
    rng = np.random.default_rng(seed)
    names, close, last, volume = real_prices(data_dir)
    T, N = close.shape
    pick = rng.integers(0, N, n_positions)
    insts = [f"{names[j]}#{k}" for k, j in enumerate(pick)]
    qty = np.maximum(1, np.round(volume[rng.integers(0, T, n_positions), pick] * 1e-4))
    cost = close[rng.integers(0, T, n_positions), pick]
    mark = last[pick]
    remote_pos = {i: (float(q), float(c), float(q * m))
                  for i, q, c, m in zip(insts, qty, cost, mark, strict=True)}
    n_orders = max(1, int(n_fills / 2.5))
    o_pos = rng.integers(0, n_positions, n_orders)
    orders = {}
    for k in range(n_orders):
        orders[f"b-{k:08d}"] = {"status": "FILLED", "filled_quantity": 0.0,
                                "instrument": insts[o_pos[k]], "side": "buy" if k % 3 else "sell",
                                "quantity": 0.0, "broker_order_id": f"sim-{k:08d}",
                                "created_ts_ms": 1_280_000_000_000 + k}
    f_order = np.concatenate([np.arange(n_orders), rng.integers(0, n_orders, n_fills - n_orders)])
    f_t = rng.integers(0, T, n_fills)
    fills = {}
    for k in range(n_fills):
        cid = f"b-{f_order[k]:08d}"
        o = orders[cid]
        j = pick[o_pos[f_order[k]]]
        q = float(max(1, round(volume[f_t[k], j] * 1e-5)))
        o["filled_quantity"] += q
        o["quantity"] += q
        fills[f"simx-{k:010d}"] = {"client_order_id": cid, "instrument": o["instrument"],
                                   "side": o["side"], "quantity": q,
                                   "price": float(close[f_t[k], j]),
                                   "ts_ms": 1_280_000_000_000 + int(f_t[k]) * 86_400_000}
    remote = BrokerState(positions=remote_pos, orders=orders, fills=fills,
                         account={"cash": 1_000_000.0}, broker="sim", account_id="bench")
    local = LocalState(positions={i: (q, c, v) for i, (q, c, v) in remote_pos.items()},
                       orders=copy.deepcopy(orders), fills=copy.deepcopy(fills), cash=1_000_000.0,
                       strategy_id="bench")
    injected = {}

    def sample(keys, rate):
        keys = sorted(keys)
        n = int(round(rate * len(keys)))
        return [keys[i] for i in rng.choice(len(keys), n, replace=False)]

    fill_ids = list(fills)
    miss_local = sample(fill_ids, 0.01)
    rest = sorted(set(fill_ids) - set(miss_local))
    miss_remote = sample(rest, 0.001)
    bad = sample(sorted(set(rest) - set(miss_remote)), 0.001)
    for e in miss_local:
        del local.fills[e]
    for e in miss_remote:
        del remote.fills[e]
    for e in bad:
        local.fills[e] = {**local.fills[e], "price": local.fills[e]["price"] + 0.01}
    injected |= {"fills_missing_local": len(miss_local), "fills_missing_remote": len(miss_remote),
                 "fills_mismatch": len(bad)}
    oids = list(orders)
    behind = sample(oids, 0.01)
    for c in behind:
        local.orders[c] = {**local.orders[c], "status": "ACCEPTED", "filled_quantity": 0.0}
    outside = sample(sorted(set(oids) - set(behind)), 0.002)
    for c in outside:
        del local.orders[c]
    never = [f"b-lost-{k}" for k in range(int(0.001 * n_orders))]
    for c in never:
        local.orders[c] = {"status": "SUBMITTED", "filled_quantity": 0.0, "instrument": insts[0],
                           "side": "buy", "quantity": 1.0}
    injected |= {"orders_status_mismatch": len(behind), "orders_unknown_to_bridge": len(outside),
                 "orders_unknown_to_broker": len(never)}
    pos = list(remote_pos)
    chosen = sample(pos, 0.05)
    cuts = np.cumsum([0, int(0.02 * n_positions), int(0.01 * n_positions),
                      int(0.01 * n_positions), int(0.005 * n_positions), int(0.005 * n_positions)])
    qm, dr, mv, lo, ro = (chosen[cuts[i]:cuts[i + 1]] for i in range(5))
    for i in qm:
        q, c, v = local.positions[i]
        local.positions[i] = (q + 10, c, v)
    for i in dr:
        q, c, v = local.positions[i]
        local.positions[i] = (q, c * 1.02, v)
    for i in mv:
        q, c, v = local.positions[i]
        local.positions[i] = (q, c, v * 1.01)
    for i in lo:
        del remote.positions[i]
    for i in ro:
        del local.positions[i]
    injected |= {"positions_qty_mismatch": len(qm), "positions_drifted": len(dr) + len(mv),
                 "positions_local_only": len(lo), "positions_remote_only": len(ro)}
    return local, remote, injected


def timed(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=5_000)
    ap.add_argument("--fills", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--data", type=Path, default=None, help="sample data folder [<root>/data]")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from bridge import paths

    data_dir = args.data or paths.data_dir()
    t0 = time.perf_counter()
    local, remote, injected = build_states(args.positions, args.fills, args.seed, data_dir)
    build_s = time.perf_counter() - t0
    t_rec, rep = timed(lambda: reconcile(local, remote, None, timestamp_ms=1_700_000_000_000),
                       args.repeat)
    t_frames, frames = timed(rep.to_frames, args.repeat)
    t_json, doc = timed(rep.to_json, args.repeat)
    found = {k: rep.summary[k] for k in injected}
    assert found == injected, (found, injected)     # every injected divergence found, no more
    total = t_rec + t_frames
    out = {"workload": "reconcile", "positions": args.positions, "fills": args.fills,
           "orders": len(remote.orders), "seed": args.seed, "repeat": args.repeat,
           "data": "real S&P 500 sample closes/volumes, instruments resampled (synthetic books)",
           "injected": injected, "differences": rep.summary["differences"],
           "build_states_s": round(build_s, 3), "reconcile_s": round(t_rec, 4),
           "to_frames_s": round(t_frames, 4), "to_json_s": round(t_json, 4),
           "reconcile_plus_frames_s": round(total, 4), "target_s": TARGET_S,
           "meets_target": total < TARGET_S, "json_bytes": len(doc),
           "frame_rows": {k: v.height for k, v in frames.items()},
           "python": sys.version.split()[0], "machine": platform.machine(),
           "processor": platform.processor() or platform.platform()}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
