"""Top-k dropout on dense arrays (one session, instruments aligned on a universe of size N).

Qlib 0.9.7 ``TopkDropoutStrategy.generate_trade_decision`` (qlib/contrib/strategy/
signal_strategy.py) mixes choosing, sizing and tradability in one method; here the steps are split
so each can be tested alone: :func:`select_topk_dropout` chooses names, :func:`size_from_cash`
sizes the buys, and the order planner rounds, checks tradability and cash.

The rules are written once, on Python lists (:func:`choose_topk`, :func:`decide_session`): a
session touches only the held names and the first few candidates, so after one NumPy argsort
(:func:`rank_scores`, done for every session at once by the preview) plain Python is cheaper than
a dozen NumPy calls on arrays of a few dozen instruments. The NumPy functions convert and call them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import islice

import numpy as np

from bridge._npsum import np_sum
from bridge.errors import ConfigError
from bridge.market.rules import MarketRules


@dataclass(frozen=True)
class TopkDropout:
    """Parameters of top-k dropout, with Qlib's names and defaults.

    Parameters
    ----------
    topk : int
        Number of instruments to hold.
    n_drop : int
        Instruments replaced per session at most.
    method_sell : {"bottom", "random"}
        Which held names to drop: the lowest scored of held + candidates, or random held ones.
    method_buy : {"top", "random"}
        Which candidates to buy: the best scored, or random among the top-k.
    hold_thresh : int
        Minimum sessions an instrument is held before it may be sold.
    risk_degree : float
        Share of the available cash spent on buys (Qlib sizes buys from cash only).
    only_tradable : bool
        Choose only among instruments tradable this session (Qlib's ``only_tradable``).
    forbid_all_trade_at_limit : bool
        Qlib's flag: when True, an instrument at its daily limit is not traded at all; when
        False, limit-up still allows sells and limit-down still allows buys.
    mode : {"corrected", "qlib"}
        ``qlib`` reproduces Qlib 0.9.7's TopkDropoutStrategy decisions, known drifts included:
        buys sized from cash only, and a planned sell that cannot execute still lets its
        replacement be bought, so holdings exceed topk (Qlib issues #612, #809, #2276).
        ``corrected`` (default) sizes buys from total value (``total * risk_degree / topk`` each)
        and buys only as many names as there are free slots after the sells that can execute,
        so holdings stay at topk.
    """

    topk: int = 50
    n_drop: int = 5
    method_sell: str = "bottom"
    method_buy: str = "top"
    hold_thresh: int = 1
    risk_degree: float = 0.95
    only_tradable: bool = False
    forbid_all_trade_at_limit: bool = True
    mode: str = "corrected"

    def __post_init__(self) -> None:
        if self.mode not in ("corrected", "qlib"):
            raise ConfigError(f"mode must be 'corrected' or 'qlib', got {self.mode!r}")
        if self.topk < 1:
            raise ConfigError(f"topk must be >= 1, got {self.topk}")
        if not 0 <= self.n_drop <= self.topk:
            raise ConfigError(f"n_drop must be in [0, topk={self.topk}], got {self.n_drop}")
        if self.method_sell not in ("bottom", "random"):
            raise ConfigError(f"method_sell must be 'bottom' or 'random', got {self.method_sell!r}")
        if self.method_buy not in ("top", "random"):
            raise ConfigError(f"method_buy must be 'top' or 'random', got {self.method_buy!r}")
        if self.hold_thresh < 0:
            raise ConfigError(f"hold_thresh must be >= 0, got {self.hold_thresh}")
        if not 0 < self.risk_degree <= 1:
            raise ConfigError(f"risk_degree must be in (0, 1], got {self.risk_degree}")

    def to_dict(self) -> dict:
        return asdict(self)


def rank_scores(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instruments by score, best first, along the last axis (one session or a grid of them).

    Parameters
    ----------
    score : ndarray of float64, shape (N,) or (T, N)
        NaN where an instrument has no score.

    Returns
    -------
    key : ndarray of float64
        Ascending sort key per instrument: ``-score``, ``inf`` for NaN.
    order : ndarray of int
        ``argsort(key)``, stable: descending score, NaN last, ties in index order.
    scored : ndarray of bool
        Aligned with ``order``: the instrument at that rank has a score, so
        ``order[scored]`` (per row) lists the scored instruments best first.
    """
    key = np.where(np.isnan(score), np.inf, -score)
    order = np.argsort(key, axis=-1, kind="stable")
    return key, order, ~np.isnan(np.take_along_axis(score, order, axis=-1))


def _first_n(idx: Iterable[int], n: int, tradable: list | None) -> list[int]:
    """The first ``n`` of ``idx`` (tradable ones only, when ``tradable`` is given)."""
    if tradable is not None:
        idx = (i for i in idx if tradable[i])
    return list(islice(idx, max(n, 0)))


def _last_n(idx: list[int], n: int, tradable: list | None) -> list[int]:
    if tradable is not None:
        idx = [i for i in idx if tradable[i]]
    return idx[len(idx) - n:] if n > 0 else []


def _draw(rng: np.random.Generator | None, cand: list[int], k: int) -> list[int]:
    if rng is None:
        raise ConfigError("random method_sell/method_buy needs a seeded numpy Generator (rng=...)")
    return rng.choice(np.array(cand, dtype=np.intp), k, replace=False).tolist()


def choose_topk(key: list[float], ranked: list[int], held: list[int], tradable: list | None,
                params: TopkDropout, rng: np.random.Generator | None = None
                ) -> tuple[list[int], list[int]]:
    """:func:`select_topk_dropout` on Python lists (the per-session loops' form; same rule).

    Parameters
    ----------
    key : list of float
        Sort key per instrument (:func:`rank_scores`).
    ranked : list of int
        The scored instruments, best first (``order[scored]`` of :func:`rank_scores`).
    held : list of int
        The held instruments, ascending.
    tradable : list of bool or None
        Filter candidates and drops by tradability (``params.only_tradable``); None: no filter.
    params : TopkDropout
    rng : numpy.random.Generator, optional

    Returns
    -------
    sell, buy : list of int
    """
    by_key = key.__getitem__
    was_held = set(held)
    last = sorted(held, key=by_key)  # stable: ties in index order
    n_new = params.n_drop + params.topk - len(last)
    if params.method_buy == "top":
        today = _first_n((i for i in ranked if i not in was_held), n_new, tradable)
    else:
        cand = [i for i in _first_n(ranked, params.topk, tradable) if i not in was_held]
        today = cand if n_new >= len(cand) else _draw(rng, cand, max(n_new, 0))
    comb = sorted(last + today, key=by_key)  # stable: on a tie, held names rank first
    if params.method_sell == "bottom":
        out = set(_last_n(comb, params.n_drop, tradable))
        sell = [i for i in last if i in out]
    else:
        cand = [i for i in comb if i in was_held]
        sell = cand if params.n_drop >= len(cand) else _draw(rng, cand, params.n_drop)
    return sell, today[: len(sell) + params.topk - len(last)]


def select_topk_dropout(score: np.ndarray, held: np.ndarray, tradable: np.ndarray,
                        params: TopkDropout, rng: np.random.Generator | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Choose which held instruments to sell and which to buy (Qlib's rule).

    Parameters
    ----------
    score : ndarray of float64, shape (N,)
        Scores dated the previous session; NaN where the instrument has none.
    held : ndarray of bool, shape (N,)
        Currently held.
    tradable : ndarray of bool, shape (N,)
        Tradable this session (used only when ``params.only_tradable``).
    params : TopkDropout
    rng : numpy.random.Generator, optional
        Needed for the random methods (seeded by the caller: same seed, same choice).

    Returns
    -------
    sell, buy : ndarray of int
        Instrument indices, sell in held-score order, buy in descending score.
    """
    key, order, scored = rank_scores(score)
    sell, buy = choose_topk(key.tolist(), order[scored].tolist(), np.flatnonzero(held).tolist(),
                            tradable.tolist() if params.only_tradable else None, params, rng)
    return np.array(sell, dtype=np.intp), np.array(buy, dtype=np.intp)


def _cash_sizes(buy: list[int], price, cash_after_sells: float, risk_degree: float
                ) -> list[tuple[int, float]]:
    """(instrument, shares) of :func:`size_from_cash`, for the buys with a valid price."""
    if len(buy) == 0 or cash_after_sells <= 0:
        return []
    value = cash_after_sells * risk_degree / len(buy)
    return [(i, value / price[i]) for i in buy if math.isfinite(price[i]) and price[i] > 0]


def size_from_cash(buy: np.ndarray, price: np.ndarray, cash_after_sells: float,
                   risk_degree: float, n: int) -> np.ndarray:
    """Target shares for the buys, Qlib's way: ``cash * risk_degree / len(buy) / price``.

    Every name in ``buy`` gets the same value, even one that turns out untradable (its share of
    cash then stays idle, as in Qlib). Shares are not rounded here (the planner rounds to lots).

    Returns
    -------
    ndarray of float64, shape (n,)
        Target shares to add per instrument (0 outside ``buy``).
    """
    out = np.zeros(n)
    for i, shares in _cash_sizes(np.asarray(buy).tolist(), price, cash_after_sells, risk_degree):
        out[i] = shares
    return out


def _at_limit(up: list | None, down: list | None, forbid_all: bool):
    """(no buy, no sell) flags per instrument, None for none."""
    if not forbid_all:
        return up, down
    if up is None or down is None:
        both = down if up is None else up
    else:
        both = [u or d for u, d in zip(up, down, strict=True)]
    return both, both


def decide_session(key: list[float], ranked: list[int], amount: list[float], held: list[int],
                   days: list[int], price: list[float], tradable: list[bool], cash: float,
                   params: TopkDropout, rules: MarketRules,
                   rng: np.random.Generator | None = None, limit_up: list | None = None,
                   limit_down: list | None = None, mark: list[float] | None = None
                   ) -> tuple[dict[int, float], list[int]]:
    """:func:`decide_topk` on Python lists (the per-session loops' form; same rule).

    ``key`` and ``ranked`` come from :func:`rank_scores`; ``held`` lists the instruments with
    ``amount > 0``, ascending; the other arguments are those of :func:`decide_topk`, as lists.
    Only the held names, the first candidates and the orders are visited, never the whole
    universe.

    Returns
    -------
    target : dict of int -> float
        Target shares of the instruments whose target is not their held amount.
    buy_priority : list of int
    """
    up, down = _at_limit(limit_up, limit_down, params.forbid_all_trade_at_limit)
    sell, buy = choose_topk(key, ranked, held, tradable if params.only_tradable else None,
                            params, rng)
    sell = [i for i in sell if days[i] >= params.hold_thresh]
    can_sell = [i for i in sell if tradable[i] and not (down is not None and down[i])
                and price[i] > 0]
    if params.mode == "qlib":
        proceeds = [amount[i] * price[i] for i in can_sell]
        cash_after = cash + np_sum([p - rules.fee(p, True) for p in proceeds])
        target = dict.fromkeys(sell, 0.0)
        for i, shares in _cash_sizes(buy, price, cash_after, params.risk_degree):
            target[i] = amount[i] + shares
        return target, buy
    # corrected: fill the slots the executable sells free, from the best tradable candidates
    target = dict.fromkeys(can_sell, 0.0)
    buy = _corrected_buys(ranked, buy, set(held), price, tradable, up,
                          params.topk - (len(held) - len(can_sell)), params)
    mark = price if mark is None else mark
    total = cash + np_sum([_nan0(amount[i] * mark[i]) for i in held])
    value = total * params.risk_degree / params.topk
    for i in buy:
        target[i] = value / price[i]
    return target, buy


def _corrected_buys(ranked, buy, held, price, tradable, up, free, params) -> list[int]:
    """``corrected`` mode: the first ``free`` buyable names (tradable, not at the limit, priced,
    not in the set ``held``), the best scored or those drawn among the top-k."""
    def buyable(i):
        return tradable[i] and not (up is not None and up[i]) and price[i] > 0 and i not in held

    if params.method_buy == "top":
        return _first_n((i for i in ranked if buyable(i)), free, None)
    return [i for i in buy if buyable(i)][:max(free, 0)]


def _nan0(x: float) -> float:
    return x if x == x else 0.0


def decide_topk(score: np.ndarray, amount: np.ndarray, days: np.ndarray, price: np.ndarray,
                tradable: np.ndarray, cash: float, params: TopkDropout, rules: MarketRules,
                rng: np.random.Generator | None = None, limit_up: np.ndarray | None = None,
                limit_down: np.ndarray | None = None, mark: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Target shares for one session and the buy priority, in ``params.mode``.

    Parameters
    ----------
    score : ndarray of float64, shape (N,)
        Scores dated the previous session (NaN: none).
    amount : ndarray of float64, shape (N,)
        Held shares.
    days : ndarray of int, shape (N,)
        Sessions each holding has been held (for ``hold_thresh``).
    price : ndarray of float64, shape (N,)
        This session's deal price, currency/share.
    tradable : ndarray of bool, shape (N,)
    cash : float
        Cash before trading, currency.
    params : TopkDropout
    rules : MarketRules
        Fees of the sells whose proceeds fund the buys.
    rng : numpy.random.Generator, optional
    limit_up, limit_down : ndarray of bool, shape (N,), optional
        At the daily limit this session (no buys / no sells).
    mark : ndarray of float64, shape (N,), optional
        Prices that value the book in ``corrected`` mode (default ``price``; pass the last close
        so that a holding without a bar today still counts).

    Returns
    -------
    target : ndarray of float64, shape (N,)
        Target shares (unrounded: the planner rounds to lots and checks cash).
    buy_priority : ndarray of int
        Instruments to buy, best first.
    """
    key, order, scored = rank_scores(score)
    changes, buy = decide_session(
        key.tolist(), order[scored].tolist(), amount.tolist(), np.flatnonzero(amount > 0).tolist(),
        days.tolist(), price.tolist(), tradable.tolist(), cash, params, rules, rng,
        _as_list(limit_up), _as_list(limit_down), _as_list(mark))
    target = np.array(amount, dtype=np.float64)
    if params.mode == "qlib":
        target += 0.0  # Qlib's sizing adds a zero-filled array to the whole target: -0.0 -> 0.0
    target[list(changes)] = list(changes.values())
    return target, np.array(buy, dtype=np.intp)


def _as_list(arr: np.ndarray | None) -> list | None:
    return None if arr is None else np.asarray(arr).tolist()
