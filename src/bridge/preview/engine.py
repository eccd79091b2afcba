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

from bridge._npsum import np_sum
from bridge.errors import ConfigError
from bridge.market.data import Panel
from bridge.market.rules import US, MarketRules
from bridge.planner.core import plan_rows
from bridge.portfolio.topk import TopkDropout, decide_session, rank_scores

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


class _Columns:
    """Records of one table, one list per field.

    No object per record: ints, floats and strings are not tracked by the cyclic garbage
    collector, so a long run does not keep tens of thousands of tuples alive for it to walk.
    """

    def __init__(self, dtypes: list) -> None:
        self.dtypes = dtypes
        self.cols: list[list] = [[] for _ in dtypes]

    def add(self, *values) -> None:
        for col, v in zip(self.cols, values, strict=True):
            col.append(v)

    def arrays(self) -> list:
        """The fields as NumPy arrays of their dtypes (``str``: a polars String Series)."""
        return [pl.Series(c, dtype=pl.String) if d is str else np.array(c, dtype=d)
                for c, d in zip(self.cols, self.dtypes, strict=True)]


class _Book:
    """One instance's records, turned into frames once at the end."""

    def __init__(self) -> None:
        i64, f64 = np.int64, np.float64
        # t, instrument, side, quantity, deal_price, value, fee, reason, market_price
        self.trade = _Columns([i64, i64, np.int8, f64, f64, f64, f64, str, f64])
        # t, instrument, side, intended, quantity, reason
        self.cut = _Columns([i64, i64, np.int8, f64, f64, str])
        # per session: t, number of positions; per position: instrument, amount, avg_cost
        self.sessions = _Columns([i64, i64])
        self.position = _Columns([i64, f64, f64])
        # t, cash, market_value, total_value, daily_pnl, cum_pnl, peak, drawdown, turnover,
        # cost, n_trades
        self.account = _Columns([i64] + [f64] * 9 + [i64])


class _Holdings:
    """An instance's book during the run, as Python lists.

    Each session touches the held names and the orders only: plain Python on them costs less
    than NumPy calls over the whole universe. Sums go through :func:`bridge._npsum.np_sum`
    (NumPy's order), so the figures are those of array code, bit for bit.
    """

    def __init__(self, n: int, cash: float) -> None:
        self.amount = [0.0] * n
        self.avg_cost = [0.0] * n
        self.days = [0] * n  # sessions held, for hold_thresh
        self.held: list[int] = []  # instruments with amount > 0, ascending
        self.cash = float(cash)
        self._touched: list[int] = []

    def exit_universe(self, t: int, left: np.ndarray, mark: list[float], book: _Book
                      ) -> tuple[float, int]:
        """Cash out the holdings that left the universe at their last close; returns (value,
        trades)."""
        gone = [i for i in self.held if left[i]]
        if not gone:
            return 0.0, 0
        values = np.round(np.array([self.amount[i] * mark[i] for i in gone]), 2).tolist()
        total = np_sum(values)
        self.cash += total
        for i, v in zip(gone, values, strict=True):
            book.trade.add(t, i, -1, self.amount[i], mark[i], v, 0.0, "universe_exit", mark[i])
            self.amount[i] = 0.0
            self.avg_cost[i] = 0.0
        self.held = [i for i in self.held if self.amount[i] > 0]
        self._touched += gone
        return total, len(gone)

    def fill(self, t: int, rows: list[tuple], market: list[float], book: _Book
             ) -> tuple[float, float, int]:
        """Apply the planned orders at their prices; returns (traded value, fees, trades)."""
        signed, values, fees = [], [], []
        for i, side, qty, intended, px, value, fee, _, _, reason in rows:
            if reason:
                book.cut.add(t, i, side, intended, qty, reason)
            if not qty > 0:
                continue
            before = self.amount[i]
            new = before + side * qty
            self.avg_cost[i] = (0.0 if new <= 0 else
                                (self.avg_cost[i] * before + value) / new if side > 0
                                else self.avg_cost[i])
            self.amount[i] = new
            self._touched.append(i)
            signed.append(-value if side > 0 else value)
            values.append(value)
            fees.append(fee)
            book.trade.add(t, i, side, qty, px, value, fee, "", market[i])
        fee_sum = np_sum(fees)
        self.cash += np_sum(signed) - fee_sum
        return np_sum(values), fee_sum, len(values)

    def close(self, t: int, mark: list[float], book: _Book) -> float:
        """Count the sessions held, record the positions; returns their market value."""
        amount, days = self.amount, self.days
        if self._touched:
            for i in self._touched:
                if not amount[i] > 0:
                    days[i] = 0
            self.held = sorted({i for i in self.held + self._touched if amount[i] > 0})
            self._touched = []
        pos = self.held
        for i in pos:
            days[i] += 1
        book.sessions.add(t, len(pos))
        inst, amt, cost = book.position.cols
        inst.extend(pos)
        amt.extend([amount[i] for i in pos])
        cost.extend([self.avg_cost[i] for i in pos])
        return np_sum([amount[i] * mark[i] for i in pos])


def _run_instance(panel: Panel, spec: InstanceSpec, grid: np.ndarray | None, rules: MarketRules,
                  tradable: np.ndarray, mark: np.ndarray, last_bar: np.ndarray) -> _Book:
    T, N = panel.shape
    deal = panel.close if spec.deal_price == "close" else panel.open
    rng = np.random.default_rng(spec.seed)
    slip = spec.slippage_bps / 1e4
    book = _Book()
    hold = _Holdings(N, spec.initial_capital)
    peak = prev_total = hold.cash
    invested = False
    # per-session masks and score ranks computed once for the whole run (the loop is the hot path)
    exit_after = (np.full(N, T) if spec.exit_grace is None
                  else np.where(last_bar < T - 1 - spec.exit_grace, last_bar, T))
    left_all = np.arange(T)[:, None] > exit_after[None, :]
    any_left = left_all.any(axis=1)
    if grid is not None:
        grid = np.where(left_all, np.nan, grid)  # left the universe: never a buy candidate
        has_score = np.isfinite(grid).any(axis=1)
        key, order, scored = rank_scores(grid)
    for t in range(T):
        price, tr, mk = deal[t].tolist(), tradable[t].tolist(), mark[t].tolist()
        traded = fees = 0.0
        n_trades = 0
        if any_left[t]:
            traded, n_trades = hold.exit_universe(t, left_all[t], mk, book)
        rows = None
        if spec.strategy == "topk_dropout":
            if has_score[t]:
                target, buy = decide_session(key[t].tolist(), order[t][scored[t]].tolist(),
                                             hold.amount, hold.held, hold.days, price, tr,
                                             hold.cash, spec.topk, rules, rng, mark=mk)
                rows, _ = plan_rows(hold.amount, target, _slipped(price, target, hold.amount, slip),
                                    tr, hold.cash, rules, buy_priority=buy)
        elif not invested:
            names = np.flatnonzero(tradable[t] & np.isfinite(deal[t]))
            if len(names):
                target = _equal_weight(names, deal[t], hold, spec.cash_buffer)
                rows, _ = plan_rows(hold.amount, target, _slipped(price, target, hold.amount, slip),
                                    tr, hold.cash, rules)
                invested = True
        if rows:
            value, fee, n = hold.fill(t, rows, price, book)
            traded += value
            fees += fee
            n_trades += n
        market_value = hold.close(t, mk, book)
        total = hold.cash + market_value
        peak = max(peak, total)
        book.account.add(t, hold.cash, market_value, total, total - prev_total,
                         total - spec.initial_capital, peak, total / peak - 1.0,
                         traded / prev_total, fees, n_trades)
        prev_total = total
    return book


def _equal_weight(names: np.ndarray, price: np.ndarray, hold: _Holdings, cash_buffer: float
                  ) -> dict[int, float]:
    """buy_and_hold's target: the cash (less the buffer) split equally over ``names``, as the
    instruments whose target differs from the holding."""
    target = np.zeros(len(price))
    target[names] = hold.cash * (1 - cash_buffer) / len(names) / price[names]
    changed = np.flatnonzero(target != np.array(hold.amount))
    return dict(zip(changed.tolist(), target[changed].tolist(), strict=True))


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
        for key, frame in _frames(panel, spec, book, mark).items():
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


def _slipped(price: list[float], target: dict[int, float], amount: list[float], slip: float):
    """Expected fill prices of the instruments in ``target``: the deal price moved against the
    trader by ``slip`` (fraction)."""
    if not slip:
        return price
    return {i: price[i] * (1 - slip) if tg < amount[i] else price[i] * (1 + slip)
            for i, tg in target.items()}


def _frames(panel: Panel, spec: InstanceSpec, book: _Book, mark: np.ndarray
            ) -> dict[str, pl.DataFrame]:
    day = panel.sessions
    # string columns gathered from their few distinct values (a NumPy unicode array per row
    # costs ~10x more to hand to polars)
    names = pl.Series(panel.instruments, dtype=pl.String)
    sides = pl.Series(["sell", "buy"], dtype=pl.String)

    def base(t, i, n_time=True):
        cols = {"preview_id": pl.Series([spec.preview_id] * len(t), dtype=pl.String),
                "trading_day": pl.Series(day[t]).cast(pl.Date)}
        if n_time:
            stamp = day[t].astype("datetime64[us]") + DEAL_TIME[spec.deal_price]
            cols["datetime"] = pl.Series(stamp.astype("datetime64[us]"))
        cols["instrument"] = names.gather(i)
        return cols

    def side(s):
        return sides.gather((s > 0).astype(np.int64))

    t, i, s, q, px, v, f, why, mkt = book.trade.arrays()
    trade = pl.DataFrame({**base(t, i), "side": side(s), "quantity": q, "deal_price": px,
                          "market_price": mkt, "trade_value": v, "fee": f, "reason": why})
    t, i, s, want, q, why = book.cut.arrays()
    cut = pl.DataFrame({**base(t, i, n_time=False), "side": side(s), "intended_quantity": want,
                        "quantity": q, "reason": why})
    t = np.repeat(*book.sessions.arrays())
    i, amount, avg_cost = book.position.arrays()
    last_price = mark[t, i]
    position = pl.DataFrame({**base(t, i, n_time=False), "amount": amount, "avg_cost": avg_cost,
                             "last_price": last_price, "market_value": amount * last_price})
    acc = book.account.arrays()
    account = pl.DataFrame({
        "preview_id": [spec.preview_id] * len(acc[0]),
        "trading_day": pl.Series(day[acc[0]]).cast(pl.Date),
        **dict(zip(["cash", "market_value", "total_value", "daily_pnl", "cum_pnl", "peak",
                    "drawdown", "turnover", "cost", "n_trades"], acc[1:], strict=True)),
    })
    return {"trade": trade, "cut": cut, "position": position, "account": account}
