"""Oracle: the NumPy implementation of top-k dropout, of the order planner and of the preview
loop before the per-session work moved to Python lists (branch perf-small-universe). Kept
verbatim (docstrings of the public functions dropped) so that tests can check the current code
against it, bit for bit, on random inputs; not used by bridge itself.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from bridge.errors import ConfigError
from bridge.market.data import Panel
from bridge.market.rules import MarketRules
from bridge.planner.core import PlannedOrders, PlanPolicy, align_to_tick
from bridge.portfolio.topk import TopkDropout
from bridge.preview.engine import DEAL_TIME


def _by_score(idx: np.ndarray, score: np.ndarray) -> np.ndarray:
    s = score[idx]
    key = np.where(np.isnan(s), np.inf, -s)
    return idx[np.argsort(key, kind="stable")]


def _member(values: np.ndarray, pool: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[pool] = True
    return mask[values]


def _first_n(idx: np.ndarray, n: int, tradable: np.ndarray | None) -> np.ndarray:
    if tradable is not None:
        idx = idx[tradable[idx]]
    return idx[: max(n, 0)]


def _last_n(idx: np.ndarray, n: int, tradable: np.ndarray | None) -> np.ndarray:
    if tradable is not None:
        idx = idx[tradable[idx]]
    return idx[len(idx) - n:] if n > 0 else idx[:0]


def select_topk_dropout(score: np.ndarray, held: np.ndarray, tradable: np.ndarray,
                        params: TopkDropout, rng: np.random.Generator | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    trad = tradable if params.only_tradable else None
    last = _by_score(np.flatnonzero(held), score)
    scored = np.flatnonzero(~np.isnan(score))
    n_new = params.n_drop + params.topk - len(last)
    if params.method_buy == "top":
        cand = _by_score(scored[~held[scored]], score)
        today = _first_n(cand, n_new, trad)
    else:
        topk_cand = _first_n(_by_score(scored, score), params.topk, trad)
        cand = topk_cand[~held[topk_cand]]
        today = cand if n_new >= len(cand) else _rng(rng).choice(cand, max(n_new, 0), replace=False)
    comb = _by_score(np.concatenate([last, today]), score)
    if params.method_sell == "bottom":
        sell = last[_member(last, _last_n(comb, params.n_drop, trad), len(score))]
    else:
        cand = comb[_member(comb, last, len(score))]
        sell = cand if params.n_drop >= len(cand) else _rng(rng).choice(
            cand, params.n_drop, replace=False)
    buy = today[: len(sell) + params.topk - len(last)]
    return sell, buy


def _rng(rng):
    if rng is None:
        raise ConfigError("random method_sell/method_buy needs a seeded numpy Generator (rng=...)")
    return rng


def size_from_cash(buy: np.ndarray, price: np.ndarray, cash_after_sells: float,
                   risk_degree: float, n: int) -> np.ndarray:
    out = np.zeros(n)
    if len(buy) == 0 or cash_after_sells <= 0:
        return out
    value = cash_after_sells * risk_degree / len(buy)
    p = price[buy]
    ok = np.isfinite(p) & (p > 0)
    out[buy[ok]] = value / p[ok]
    return out


def decide_topk(score: np.ndarray, amount: np.ndarray, days: np.ndarray, price: np.ndarray,
                tradable: np.ndarray, cash: float, params: TopkDropout, rules: MarketRules,
                rng: np.random.Generator | None = None, limit_up: np.ndarray | None = None,
                limit_down: np.ndarray | None = None, mark: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    n = len(score)
    no = np.zeros(n, bool)
    up = no if limit_up is None else limit_up
    down = no if limit_down is None else limit_down
    if params.forbid_all_trade_at_limit:
        up = down = up | down
    held = amount > 0
    sell, buy = select_topk_dropout(score, held, tradable, params, rng)
    sell = sell[days[sell] >= params.hold_thresh]
    can_sell = sell[tradable[sell] & ~down[sell] & (price[sell] > 0)]
    proceeds = amount[can_sell] * price[can_sell]
    fees = rules.fee(proceeds, True)
    target = amount.copy()
    target[sell] = 0.0
    if params.mode == "qlib":
        cash_after = cash + float(np.sum(proceeds - fees))
        return target + size_from_cash(buy, price, cash_after, params.risk_degree, n), buy
    # corrected: fill the slots the executable sells free, from the best tradable candidates
    buyable = tradable & ~up & (price > 0) & ~held & ~np.isnan(score)
    free = params.topk - (int(held.sum()) - len(can_sell))
    if params.method_buy == "top":
        cand = _by_score(np.flatnonzero(buyable), score)
    else:
        cand = buy[buyable[buy]]
    buy = cand[:max(free, 0)]
    target[sell] = np.where(_member(sell, can_sell, n), 0.0, amount[sell])
    mark = price if mark is None else mark
    total = cash + float(np.nansum(amount[held] * mark[held]))
    value = total * params.risk_degree / params.topk
    target[buy] = value / price[buy]
    return target, buy


def _sell_round(qty: float, holding: float, rules: MarketRules) -> float:
    if rules.fractional:
        return max(0.0, qty)
    unit = rules.trade_unit
    lots = math.floor(qty / unit + 1e-9) * unit
    odd = holding % unit
    if odd and qty >= odd - 1e-9:
        return max(lots, odd + math.floor((qty - odd) / unit + 1e-9) * unit)
    return lots


def _flag(arr, i) -> bool:
    return arr is not None and bool(arr[i])


def plan_orders(current: np.ndarray, target: np.ndarray, price: np.ndarray,
                tradable: np.ndarray, cash: float, rules: MarketRules,
                buy_priority: np.ndarray | None = None, *, volume: np.ndarray | None = None,
                limit_up: np.ndarray | None = None, limit_down: np.ndarray | None = None,
                sellable: np.ndarray | None = None, policy: PlanPolicy = PlanPolicy()
                ) -> PlannedOrders:
    delta = target - current
    part = policy.participation
    rows: list[tuple] = []

    def bounded(i, intended, bounds):
        """The smallest applicable bound on ``intended`` and the reason it binds."""
        qty, why = intended, ""
        for limit, reason in bounds:
            if limit is not None and limit < qty - 1e-9:
                qty, why = max(limit, 0.0), reason
        return qty, why

    def add(i, side, qty, intended, reason):
        nonlocal cash
        px = price[i]
        lim, rnd = math.nan, 0.0
        if policy.limit_offset_bps is not None and px > 0:
            lim, rnd = align_to_tick(px * (1 + side * policy.limit_offset_bps / 1e4),
                                     rules.tick_size, side)
        value = float(rules.money(qty * px)) if qty else 0.0
        if qty and value < policy.min_order_value:
            qty, value, reason = 0.0, 0.0, "min_value"
        fee = rules.fee(value, side < 0)
        if side < 0 and cash + value - fee < 0:  # proceeds below a minimum fee cash cannot cover
            qty, value, fee, reason = 0.0, 0.0, 0.0, "cash"
        cash += value - fee if side < 0 else -(value + fee)
        rows.append((i, side, float(qty), intended, px, value, fee, lim, rnd, reason))

    for i in np.flatnonzero((delta < 0) & (current > 0)):
        intended = current[i] if target[i] <= 0 else -delta[i]
        if not tradable[i]:
            add(i, -1, 0.0, intended, "suspended")
            continue
        if not price[i] > 0:
            add(i, -1, 0.0, intended, "no_price")
            continue
        if _flag(limit_down, i):
            add(i, -1, 0.0, intended, "limit")
            continue
        raw, why = bounded(i, intended, [
            (None if sellable is None else sellable[i], "T+1"),
            (None if part is None or volume is None else part * np.nan_to_num(volume[i]),
             "participation")])
        qty = _sell_round(raw, current[i], rules)
        add(i, -1, qty, intended, why or ("lot" if qty == 0 else ""))

    wants = delta > 0
    if buy_priority is not None:
        first = np.asarray(buy_priority, dtype=np.int64)
        first = first[wants[first]]
        rest_mask = wants.copy()
        rest_mask[first] = False
        rest = np.flatnonzero(rest_mask)
        buys = np.concatenate([first, rest])
    else:
        buys = np.flatnonzero(wants)
    for i in buys:
        intended = delta[i]
        if not tradable[i]:
            add(i, 1, 0.0, intended, "suspended")
            continue
        if not price[i] > 0:
            add(i, 1, 0.0, intended, "no_price")
            continue
        if _flag(limit_up, i):
            add(i, 1, 0.0, intended, "limit")
            continue
        raw, why = bounded(i, intended, [
            (None if part is None or volume is None else part * np.nan_to_num(volume[i]),
             "participation")])
        qty = rules.round_quantity(raw)
        why = why or ("lot" if qty == 0 else "")
        if qty > 0:
            afford = rules.max_affordable(cash, price[i])
            if afford < qty:
                qty, why = afford, "cash"
        add(i, 1, qty, intended, why)

    if not rows:
        e = np.array([], dtype=np.float64)
        return PlannedOrders(np.array([], dtype=np.int64), np.array([], dtype=np.int8), e, e, e,
                             e, e, e, e, np.array([], dtype=object), float(cash))
    c = list(zip(*rows, strict=True))
    f64 = [np.array(c[k], dtype=np.float64) for k in range(2, 9)]
    return PlannedOrders(np.array(c[0], dtype=np.int64), np.array(c[1], dtype=np.int8), *f64,
                         reason=np.array(c[9], dtype=object), cash_after=float(cash))


class _Book:
    """Growing column lists of one instance's records (concatenated once at the end)."""

    def __init__(self) -> None:
        self.trade: list[tuple] = []
        self.cut: list[tuple] = []
        self.position: list[tuple] = []
        self.account: list[tuple] = []


def _run_instance(panel: Panel, spec, grid: np.ndarray | None, rules: MarketRules,
                  tradable: np.ndarray, mark: np.ndarray, last_bar: np.ndarray) -> _Book:
    T, N = panel.shape
    deal = panel.close if spec.deal_price == "close" else panel.open
    rng = np.random.default_rng(spec.seed)
    slip = spec.slippage_bps / 1e4
    amount = np.zeros(N)
    avg_cost = np.zeros(N)
    days = np.zeros(N, dtype=np.int64)
    cash = float(spec.initial_capital)
    peak = prev_total = cash
    book = _Book()
    invested = False
    # per-session masks computed once for the whole run (the loop is the hot path)
    exit_after = (np.full(N, T) if spec.exit_grace is None
                  else np.where(last_bar < T - 1 - spec.exit_grace, last_bar, T))
    left_all = np.arange(T)[:, None] > exit_after[None, :]
    if grid is not None:
        grid = np.where(left_all, np.nan, grid)  # left the universe: never a buy candidate
        has_score = np.isfinite(grid).any(axis=1)
    for t in range(T):
        price, tr = deal[t], tradable[t]
        traded = fees = 0.0
        n_trades = 0
        left = left_all[t]
        gone = np.flatnonzero((amount > 0) & left)
        if len(gone):
            value = np.round(amount[gone] * mark[t, gone], 2)
            n_trades += len(gone)
            cash += float(value.sum())
            traded += float(value.sum())
            book.trade.append((t, gone, np.full(len(gone), -1, np.int8), amount[gone].copy(),
                               mark[t, gone], value, np.zeros(len(gone)), "universe_exit",
                               mark[t, gone]))
            amount[gone] = 0.0
            avg_cost[gone] = 0.0
        plan = None
        if spec.strategy == "topk_dropout":
            if has_score[t]:
                target, buy = decide_topk(grid[t], amount, days, price, tr, cash, spec.topk,
                                          rules, rng, mark=mark[t])
                if len(buy) or (target != amount).any():  # nothing to change: no planning
                    plan = plan_orders(amount, target, _slipped(price, target < amount, slip),
                                       tr, cash, rules, buy_priority=buy)
        elif not invested:
            names = np.flatnonzero(tr & np.isfinite(price))
            if len(names):
                target = np.zeros(N)
                target[names] = cash * (1 - spec.cash_buffer) / len(names) / price[names]
                plan = plan_orders(amount, target, _slipped(price, target < amount, slip), tr,
                                   cash, rules)
                invested = True
        if plan is not None and len(plan):
            done = plan.quantity > 0
            i, s, q = plan.instrument[done], plan.side[done], plan.quantity[done]
            v, f = plan.value[done], plan.fee[done]
            buys = s > 0
            new_amt = amount[i] + s * q
            safe = np.where(new_amt > 0, new_amt, 1.0)
            avg_cost[i] = np.where(new_amt <= 0, 0.0,
                                   np.where(buys, (avg_cost[i] * amount[i] + v) / safe, avg_cost[i]))
            amount[i] = new_amt
            cash += float(np.sum(np.where(buys, -v, v)) - f.sum())
            traded += float(v.sum())
            fees += float(f.sum())
            n_trades += len(i)
            book.trade.append((t, i, s, q, plan.price[done], v, f, "", price[i]))
            if (plan.reason != "").any():
                c = plan.reason != ""
                book.cut.append((t, plan.instrument[c], plan.side[c], plan.intended[c],
                                 plan.quantity[c], plan.reason[c]))
        held = amount > 0
        days = np.where(held, days + 1, 0)
        pos = np.flatnonzero(held)
        mv = amount[pos] * mark[t, pos]
        market_value = float(mv.sum())
        total = cash + market_value
        peak = max(peak, total)
        book.position.append((t, pos, amount[pos].copy(), avg_cost[pos].copy(), mark[t, pos], mv))
        book.account.append((t, cash, market_value, total, total - prev_total,
                             total - spec.initial_capital, peak, total / peak - 1.0,
                             traded / prev_total, fees, n_trades))
        prev_total = total
    return book


def _slipped(price: np.ndarray, selling: np.ndarray, slip: float) -> np.ndarray:
    """Expected fill prices: the deal price moved against the trader by ``slip`` (fraction)."""
    if not slip:
        return price
    return np.where(selling, price * (1 - slip), price * (1 + slip))


def _cat(records: list[tuple], j: int, dtype=None) -> np.ndarray:
    """Field ``j`` of every record, flattened: arrays are concatenated, a scalar is repeated
    once per instrument of its record (``len(r[1])``)."""
    if not records:
        return np.array([], dtype=dtype)
    lens = np.fromiter((len(r[1]) for r in records), np.int64, len(records))
    if np.ndim(records[0][j]) == 0:  # a field is a scalar in every record or in none
        vals = np.array([r[j] for r in records], dtype=object if dtype is object else None)
        return np.repeat(vals, lens).astype(dtype)
    parts = [np.asarray(r[j]) if np.ndim(r[j]) else np.full(n, r[j], dtype=object)
             for r, n in zip(records, lens, strict=True)]
    return np.concatenate(parts).astype(dtype)


def _frames(panel: Panel, spec, book: _Book) -> dict[str, pl.DataFrame]:
    day = panel.sessions
    inst = panel.instruments

    def base(records, n_time=True):
        t = _cat(records, 0, np.int64)
        cols = {"preview_id": pl.Series([spec.preview_id] * len(t), dtype=pl.String),
                "trading_day": pl.Series(day[t]).cast(pl.Date)}
        if n_time:
            stamp = day[t].astype("datetime64[us]") + DEAL_TIME[spec.deal_price]
            cols["datetime"] = pl.Series(stamp.astype("datetime64[us]"))
        cols["instrument"] = pl.Series(inst[_cat(records, 1, np.int64)], dtype=pl.String)
        return cols

    side = _cat(book.trade, 2, np.int8)
    trade = pl.DataFrame({
        **base(book.trade),
        "side": pl.Series(np.where(side > 0, "buy", "sell"), dtype=pl.String),
        "quantity": _cat(book.trade, 3, np.float64), "deal_price": _cat(book.trade, 4, np.float64),
        "market_price": _cat(book.trade, 8, np.float64),
        "trade_value": _cat(book.trade, 5, np.float64), "fee": _cat(book.trade, 6, np.float64),
        "reason": pl.Series(_cat(book.trade, 7, object).astype(str), dtype=pl.String),
    })
    cside = _cat(book.cut, 2, np.int8)
    cut = pl.DataFrame({
        **base(book.cut, n_time=False),
        "side": pl.Series(np.where(cside > 0, "buy", "sell"), dtype=pl.String),
        "intended_quantity": _cat(book.cut, 3, np.float64),
        "quantity": _cat(book.cut, 4, np.float64),
        "reason": pl.Series(_cat(book.cut, 5, object).astype(str), dtype=pl.String),
    })
    position = pl.DataFrame({
        **base(book.position, n_time=False),
        "amount": _cat(book.position, 2, np.float64), "avg_cost": _cat(book.position, 3, np.float64),
        "last_price": _cat(book.position, 4, np.float64),
        "market_value": _cat(book.position, 5, np.float64),
    })
    acc = list(zip(*book.account, strict=True))
    account = pl.DataFrame({
        "preview_id": [spec.preview_id] * len(acc[0]),
        "trading_day": pl.Series(day[np.array(acc[0])]).cast(pl.Date),
        **{name: np.array(acc[k], dtype=np.float64) for k, name in enumerate(
            ["cash", "market_value", "total_value", "daily_pnl", "cum_pnl", "peak", "drawdown",
             "turnover", "cost"], start=1)},
        "n_trades": np.array(acc[10], dtype=np.int64),
    })
    return {"trade": trade, "cut": cut, "position": position, "account": account}


def run_instance(panel: Panel, spec, grid, rules: MarketRules) -> dict[str, pl.DataFrame]:
    """The old engine's trade, cut, position and account frames of one instance."""
    book = _run_instance(panel, spec, grid, rules, panel.tradable(), panel.last_close(),
                         panel.last_bar_index())
    return _frames(panel, spec, book)
