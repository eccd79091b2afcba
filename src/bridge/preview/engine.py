"""Run preview instances over a panel of bars, session by session.

Each session t, per instance: the PortfolioEngine turns the scores dated before t and the current
holdings into a target, the OrderPlanner turns the target into orders within lots and cash, and
the orders fill virtually at the session's deal price (close by default) with the market's fees.
At the close every position is marked (last close carried over missing bars) and the account is
settled: cash, total_value, daily_pnl, cum_pnl, peak, drawdown.

A holding whose instrument's bars stop more than ``EXIT_GRACE`` sessions before the end of the data
has left the data's universe (in the S&P 500 sample: removed from the index, acquired or
delisted). It is cashed out at its last close on the first session after its last bar (reason
``universe_exit``, no fee): a position that can never again be priced or traded would otherwise
sit in the book at a stale price and block a top-k slot forever. A bar missing only near the end
of the data is an ordinary gap: the position is kept and marked at its last close.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from bridge.errors import ConfigError
from bridge.market.data import Panel
from bridge.market.rules import US, MarketRules
from bridge.planner.core import plan_orders
from bridge.portfolio.topk import TopkDropout, decide_topk

STRATEGIES = ("topk_dropout", "buy_and_hold")
EXIT_GRACE = 5
DEAL_TIME = {"close": np.timedelta64(16 * 60, "m"), "open": np.timedelta64(9 * 60 + 30, "m")}


@dataclass(frozen=True)
class InstanceSpec:
    """One preview instance.

    Parameters
    ----------
    preview_id : str
        Unique id; re-running the same id replaces its rows.
    strategy : {"topk_dropout", "buy_and_hold"}
        ``buy_and_hold`` buys every tradable instrument of the first session at equal weight and
        never trades again (except delisting cash-outs).
    initial_capital : float
        Starting cash, currency.
    signal : str, optional
        Name of the signal (key of the ``signals`` mapping given to :func:`run_preview`);
        required for ``topk_dropout``.
    topk : TopkDropout
        Parameters of top-k dropout.
    deal_price : {"close", "open"}
        Which price of the session the virtual fills take.
    slippage_bps : float
        Fixed slippage, basis points of the deal price, against the trader: buys fill at
        ``deal * (1 + bps / 1e4)``, sells at ``deal * (1 - bps / 1e4)``.
    cash_buffer : float
        ``buy_and_hold``: share of capital left in cash.
    seed : int
        Seed of the instance's random generator (random sell/buy methods).
    display_name : str
        Label in reports (default: ``preview_id``).
    exit_grace : int or None
        A holding whose bars stop more than this many sessions before the end of the data is
        cashed out at its last close (reason ``universe_exit``), and the instrument is no longer
        a buy candidate. None: never (Qlib's behaviour: the position stays in the book at its
        last close, unsellable; docs/qlib_parity.md).
    """

    preview_id: str
    strategy: str
    initial_capital: float = 1_000_000.0
    signal: str | None = None
    topk: TopkDropout = field(default_factory=TopkDropout)
    deal_price: str = "close"
    slippage_bps: float = 0.0
    cash_buffer: float = 0.01
    seed: int = 0
    display_name: str = ""
    exit_grace: int | None = EXIT_GRACE

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.strategy == "topk_dropout" and not self.signal:
            raise ConfigError(f"instance {self.preview_id!r}: topk_dropout needs a signal")
        if self.deal_price not in DEAL_TIME:
            raise ConfigError(f"deal_price must be 'close' or 'open', got {self.deal_price!r}")
        if not self.initial_capital > 0:
            raise ConfigError(f"initial_capital must be > 0, got {self.initial_capital}")

    def params(self) -> dict:
        out = {"strategy": self.strategy, "signal": self.signal, "deal_price": self.deal_price,
               "slippage_bps": self.slippage_bps, "seed": self.seed}
        if self.strategy == "topk_dropout":
            out["topk"] = self.topk.to_dict()
        else:
            out["cash_buffer"] = self.cash_buffer
        if self.exit_grace != EXIT_GRACE:
            out["exit_grace"] = self.exit_grace
        return out


@dataclass(frozen=True)
class PreviewResult:
    """Frames for the ``preview_*`` tables (polars; column docs in :mod:`bridge.store.schema`)."""

    strategy: pl.DataFrame
    trade: pl.DataFrame
    position: pl.DataFrame
    account: pl.DataFrame
    cut: pl.DataFrame

    def tables(self) -> dict[str, pl.DataFrame]:
        return {"preview_strategy": self.strategy, "preview_trade": self.trade,
                "preview_position": self.position, "preview_account": self.account,
                "preview_cut": self.cut}


class _Book:
    """Growing column lists of one instance's records (concatenated once at the end)."""

    def __init__(self) -> None:
        self.trade: list[tuple] = []
        self.cut: list[tuple] = []
        self.position: list[tuple] = []
        self.account: list[tuple] = []


def _run_instance(panel: Panel, spec: InstanceSpec, grid: np.ndarray | None, rules: MarketRules,
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


def run_preview(panel: Panel, instances: list[InstanceSpec], signals: dict | None = None,
                rules: MarketRules = US, market: str = "US", data_hash: str = "",
                created_at=None, progress=None) -> PreviewResult:
    """Run every instance over every session of ``panel``.

    Parameters
    ----------
    panel : Panel
        Bars on a session grid (T sessions x N instruments).
    instances : list of InstanceSpec
        Ids must be unique.
    signals : dict of str -> (grid, counts)
        Output of :func:`bridge.preview.signal_grid` per signal name.
    rules : MarketRules
    market : str
        Market name stored with each instance.
    data_hash : str
        Version of the bars (stored with each instance).
    created_at : datetime, optional
        Timestamp stored on ``preview_strategy`` (inject a clock for reproducible tables).
    progress : callable, optional
        Called with each finished ``preview_id``.

    Returns
    -------
    PreviewResult

    Raises
    ------
    ConfigError
        Duplicate ids, or a signal name not in ``signals``.
    """
    ids = [s.preview_id for s in instances]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"duplicate preview_id in {ids}")
    signals = signals or {}
    tradable, mark, last_bar = panel.tradable(), panel.last_close(), panel.last_bar_index()
    parts: dict[str, list[pl.DataFrame]] = {k: [] for k in ("trade", "cut", "position", "account")}
    for spec in instances:
        grid = None
        if spec.strategy == "topk_dropout":
            if spec.signal not in signals:
                raise ConfigError(f"instance {spec.preview_id!r}: unknown signal {spec.signal!r}; "
                                  f"have {sorted(signals)}")
            grid = signals[spec.signal][0]
        book = _run_instance(panel, spec, grid, rules, tradable, mark, last_bar)
        for key, frame in _frames(panel, spec, book).items():
            parts[key].append(frame)
        if progress:
            progress(spec.preview_id)
    strategy = pl.DataFrame({
        "preview_id": ids,
        "display_name": [s.display_name or s.preview_id for s in instances],
        "strategy": [s.strategy for s in instances],
        "signal": [s.signal for s in instances],
        "params": [json.dumps(s.params(), sort_keys=True) for s in instances],
        "initial_capital": [float(s.initial_capital) for s in instances],
        "deal_price": [s.deal_price for s in instances],
        "market": market,
        "status": "finished",
        "data_hash": data_hash,
        "start_date": pl.Series(np.repeat(panel.sessions[:1], len(ids))).cast(pl.Date),
        "end_date": pl.Series(np.repeat(panel.sessions[-1:], len(ids))).cast(pl.Date),
        "created_at": pl.Series([created_at] * len(ids), dtype=pl.Datetime("us")),
    })
    return PreviewResult(strategy=strategy, **{k: pl.concat(v) for k, v in parts.items()})


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


def _frames(panel: Panel, spec: InstanceSpec, book: _Book) -> dict[str, pl.DataFrame]:
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
