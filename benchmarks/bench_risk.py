"""Workload: pre-trade risk checks, all rules on, per-check latency and throughput.

``RiskEngine.default()`` (all 11 rules: upstream state, blacklist, max quantity, max notional,
price band, available cash, position weight, gross exposure, PDT, duplicate guard, token-bucket
rate limit) against a realistic account: 50 positions of about 2 % each (USD 1,030,000 equity,
USD 50,000 cash, a margin account above the PDT threshold). Orders are built before timing (the
caller's OrderCtx -> RiskOrder conversion is measured on its own line): they cycle over the 50
held instruments, 10 to 109 shares at +-1 % of the last price, 100 ms apart (one token per order
at 10/s, same instrument every 5 s: outside the 1 s duplicate window), so every check passes and
every rule does its full work. Each check is timed with ``time.perf_counter_ns``.

Cases:
- ``mixed``: half buys, half sells of held names (sells shrink positions: the weight and gross
  rules exit early);
- ``buys``: buys only, the worst pass path (gross exposure sums all 50 positions every check);
- ``denied``: buys denied by the last rule (rate limit: the bucket is empty), the whole rule chain
  plus the denial (sentence formatting, counter, a disabled log call).

Run:  .venv/bin/python benchmarks/bench_risk.py [--n 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time

from bridge.risk import AccountView, RiskEngine, RiskOrder

T0 = 1_700_000_000_000


def make_account(n_positions: int = 50, seed: int = 11) -> AccountView:
    rng = random.Random(seed)
    names = [f"S{i:03d}" for i in range(n_positions)]
    prices = {s: round(rng.uniform(20.0, 400.0), 2) for s in names}
    # ~2 % of 1,000,000 per name at its price
    positions = {s: float(round(19_600.0 / prices[s])) for s in names}
    return AccountView.from_book(50_000.0, positions, prices, day_start_equity=1_030_000.0,
                                 peak_equity=1_040_000.0, day_trades=1, is_margin=True)


def make_orders(account: AccountView, n: int, case: str, seed: int = 7) -> list[RiskOrder]:
    rng = random.Random(seed)
    names = list(account.positions)
    out = []
    for k in range(n):
        inst = names[k % len(names)]
        side = "buy" if case != "mixed" or k % 2 == 0 else "sell"
        last = account.prices[inst]
        out.append(RiskOrder(
            client_order_id=f"bench-{case}-{k}", instrument=inst, side=side,
            quantity=float(10 + k % 100 if side == "buy" else min(10 + k % 100, 50)),
            price=round(last * (1 + rng.uniform(-0.01, 0.01)), 2),
            ts_ms=T0 + 100 * k if case != "denied" else T0,
            strategy_id="momentum_top50", consistency=0.9,
        ))
    return out


def engine_for(case: str) -> RiskEngine:
    if case == "denied":  # an empty bucket that never refills: every order reaches the last rule
        engine = RiskEngine.default(burst=1.0, rate_per_s=1e-9)
        engine.rules[-1].tokens = 0.0
        engine.rules[-1].last_ms = T0
        return engine
    return RiskEngine.default()


def timed_checks(case: str, n: int) -> dict:
    account = make_account()
    orders = make_orders(account, n, case)
    engine = engine_for(case)
    check = engine.check
    clock = time.perf_counter_ns
    lat = [0] * n
    for o in orders[: min(1000, n)]:  # warm-up on a throw-away engine
        engine_for(case).check(o, account)
    gc.collect()
    for k, o in enumerate(orders):
        t = clock()
        check(o, account)
        lat[k] = clock() - t
    allowed = n - sum(engine.denied.values())
    # throughput without the per-check timer, on a fresh engine (same stream)
    engine = engine_for(case)
    check = engine.check
    t = time.perf_counter()
    for o in orders:
        check(o, account)
    wall = time.perf_counter() - t
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(n - 1, int(p * n))] / 1000.0

    return {"case": case, "checks": n, "allowed": allowed, "p50_us": pct(0.50),
            "p95_us": pct(0.95), "p99_us": pct(0.99), "max_us": lat[-1] / 1000.0,
            "mean_us": statistics.fmean(lat) / 1000.0, "checks_per_s": n / wall}


def order_build_us(n: int = 100_000) -> float:
    t = time.perf_counter()
    for k in range(n):
        RiskOrder(f"c-{k}", "S001", "buy", 10.0, 100.0, T0 + k, "s", None, False, 0.9)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.n:,} checks per "
          f"case, RiskEngine.default() (11 rules), account of 50 positions")
    rows = [timed_checks(case, args.n) for case in ("mixed", "buys", "denied")]
    print(f"{'case':<8} {'allowed':>8} {'p50 us':>8} {'p95 us':>8} {'p99 us':>8} {'max us':>9} "
          f"{'checks/s':>10}")
    for r in rows:
        print(f"{r['case']:<8} {r['allowed']:>8,} {r['p50_us']:>8.2f} {r['p95_us']:>8.2f} "
              f"{r['p99_us']:>8.2f} {r['max_us']:>9.1f} {r['checks_per_s']:>10,.0f}")
    build = order_build_us()
    print(f"RiskOrder construction (validated, caller side): {build:.2f} us per order")
    worst = max(r["p95_us"] for r in rows)
    print(f"target p95 < 50 us: {'met' if worst < 50 else 'MISSED'} (worst p95 {worst:.2f} us)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"python": sys.version.split()[0], "cases": rows,
                       "order_build_us": build}, fh, indent=2)


if __name__ == "__main__":
    main()
