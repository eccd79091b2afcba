"""RiskEngine: the trading-state gate, then the rules in order; the first failure denies.

Shape taken from NautilusTrader's ``risk/engine.pyx``: a trading state ACTIVE / REDUCING /
HALTED in front of the pre-trade checks, every denial a reason code plus a human sentence, and a
denied order never reaching the venue (the caller marks it DENIED, never SUBMITTED). The engine
is a pure function of its inputs and its own small state (token bucket, duplicate ids,
down-sampling counters, trading state): no I/O, no clock (times are the orders' and the caller's
``ts_ms``), so a replay of the same orders and accounts gives the same decisions.

Cancels are never checked: they pass in every state (a HALTED engine must still let the book's
open orders be cancelled).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from enum import StrEnum

from bridge.errors import ConfigError
from bridge.risk.rules import (
    AccountView,
    AvailableCash,
    Blacklist,
    Decision,
    DuplicateOrder,
    GrossExposure,
    MaxOrderNotional,
    MaxOrderQuantity,
    MaxPositionWeight,
    Outcome,
    PatternDayTrader,
    PriceBand,
    RiskOrder,
    SubmitRate,
    UpstreamState,
)

__all__ = ["RiskEngine", "TradingState", "ALLOWED"]

_log = logging.getLogger("bridge.risk")

_EPS = 1e-9  # shares: float fuzz of fractional quantities in the reduce-only test


class TradingState(StrEnum):
    """Trading state of a RiskEngine (NautilusTrader's ``TradingState``).

    ACTIVE: every order is checked by the rules. REDUCING: only orders that shrink a position
    without flipping it (sells of a long position up to its size, buys covering a short up to its
    size) are checked; every other order is denied ``TRADING_STATE_REDUCING``. HALTED: no new
    order (``TRADING_HALTED``); cancels only.
    """

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


ALLOWED = Decision(True)
"""The Decision of a plainly allowed order (one shared instance: nothing allocated on pass)."""

_ACTIVE = TradingState.ACTIVE
_REDUCING = TradingState.REDUCING
_HALTED = TradingState.HALTED


class RiskEngine:
    """Pre-trade risk: trading-state gate, then the rules in order.

    Parameters
    ----------
    rules : list of rule
        Objects with ``code`` (str) and ``check(order, account) -> str | None``, optionally
        ``on_allowed(order)`` (see :mod:`bridge.risk.rules`). Checked in this order; put cheap,
        frequent refusals first.
    state : TradingState
        Initial trading state.
    max_drawdown : float or None
        Drawdown from the running peak, fraction (0.20 = 20 %), beyond which
        :meth:`update_account` trips to HALTED. None: no trip.
    max_daily_loss : float or None
        Loss since the session start, fraction of ``day_start_equity``, beyond which
        :meth:`update_account` trips an ACTIVE engine to REDUCING. None: no trip.
    on_audit : callable or None
        Called with each audit record (dict ``ts_ms``, ``from``, ``to``, ``reason``, ``actor``)
        after the state changed and the record was appended to ``audit``; an exception it raises
        propagates (the state change stands: the kill switch never waits on a sink).

    Attributes
    ----------
    state : TradingState
    rules : tuple of rule
    audit : list of dict
        Every state change, oldest first.
    denied : collections.Counter
        Denials per reason code (``risk denials by reason``; ``executor_pre_deny_total{reason}``).
    throttled : collections.Counter
        Throttle decisions per lower-case reason (``executor_throttle_total{reason}``, e.g.
        ``throttled["low_consistency"]``): the let-through and the dropped orders alike; the
        dropped ones are in ``denied`` too.

    Notes
    -----
    Why daily loss -> REDUCING but drawdown -> HALTED: a daily loss limit stops adding risk for
    the day, yet the book must stay manageable, so positions may still be cut (REDUCING). A
    drawdown beyond the limit from the running peak says the strategy or the system is failing:
    stop all new orders and call a human (HALTED). When both are breached HALTED wins. Trips are
    sticky: the engine never returns to ACTIVE by itself; a person calls :meth:`set_state` (after
    review, e.g. at the next session), which is audited like a trip.
    """

    def __init__(self, rules: list, state: TradingState = TradingState.ACTIVE, *,
                 max_drawdown: float | None = None, max_daily_loss: float | None = None,
                 on_audit: Callable[[dict], object] | None = None) -> None:
        for rule in rules:
            if not isinstance(getattr(rule, "code", None), str) or not callable(
                    getattr(rule, "check", None)):
                raise ConfigError(f"rule {rule!r} needs a str `code` and a `check(order, "
                                  f"account)` method")
        for name, value in (("max_drawdown", max_drawdown), ("max_daily_loss", max_daily_loss)):
            if value is not None and not (isinstance(value, int | float) and 0 < value <= 1):
                raise ConfigError(f"{name} must be a fraction in (0, 1] or None, got {value!r}")
        if on_audit is not None and not callable(on_audit):
            raise ConfigError(f"on_audit must be callable or None, got {on_audit!r}")
        self.rules = tuple(rules)
        self._hooks = tuple(r.on_allowed for r in self.rules if hasattr(r, "on_allowed"))
        self.state = TradingState(state)
        self.max_drawdown = max_drawdown
        self.max_daily_loss = max_daily_loss
        self.on_audit = on_audit
        self.audit: list[dict] = []
        self.denied: Counter = Counter()
        self.throttled: Counter = Counter()

    # ---------------------------------------------------------------------------- building

    @classmethod
    def default(cls, *, max_notional: float = 100_000.0, max_quantity: float = 10_000.0,
                max_weight: float = 0.10, max_gross: float = 1.0, fee_buffer_bps: float = 10.0,
                blacklist=(), rate_per_s: float = 10.0, burst: float = 20.0,
                duplicate_window_ms: int = 1_000, band_bps: float = 500.0,
                pdt_min_equity: float = 25_000.0, pdt_max_day_trades: int = 3,
                min_consistency: float = 0.5, throttle_every_n: int = 4,
                state: TradingState = TradingState.ACTIVE, max_drawdown: float | None = 0.20,
                max_daily_loss: float | None = 0.05,
                on_audit: Callable[[dict], object] | None = None) -> RiskEngine:
        """An engine with every rule on, in a sensible order, with conservative defaults.

        Order: UpstreamState (the signal itself says no), Blacklist, MaxOrderQuantity,
        MaxOrderNotional, PriceBand, AvailableCash, MaxPositionWeight, GrossExposure,
        PatternDayTrader, DuplicateOrder, SubmitRate (the two stateful guards last: they book an
        order only once it is allowed anyway).

        Parameters
        ----------
        max_notional : float
            100,000 currency per order: a retail/small-fund fat-finger cap; raise it with the
            book.
        max_quantity : float
            10,000 shares per order.
        max_weight : float
            0.10: no position above 10 % of equity after the fill (top-k 50 books hold ~2 %).
        max_gross : float
            1.0: gross exposure at most equity (no leverage).
        fee_buffer_bps : float
            10 bps above the order value kept for commission (US default 5 bps) and slippage.
        blacklist : iterable of str
            Restricted instruments (none by default).
        rate_per_s, burst : float
            10 orders/s sustained, 20 at once (broker API limits: Alpaca allows 200 requests a
            minute, IB ~50 messages a second).
        duplicate_window_ms : int
            1,000 ms: the same (instrument, side, quantity) twice within a second is a repeat.
        band_bps : float
            500 bps: a reference price more than +-5 % from the last price is an error.
        pdt_min_equity, pdt_max_day_trades
            FINRA 4210: 25,000 USD and 3 day trades in 5 business days.
        min_consistency : float
            0.5: below it the upstream signal is throttled.
        throttle_every_n : int
            4: one low-consistency order in 4 goes through.
        state, max_drawdown, max_daily_loss, on_audit
            As in the constructor; trips at 20 % drawdown (HALTED) and 5 % daily loss
            (REDUCING).
        """
        rules = [
            UpstreamState(min_consistency, throttle_every_n),
            Blacklist(blacklist),
            MaxOrderQuantity(max_quantity),
            MaxOrderNotional(max_notional),
            PriceBand(band_bps),
            AvailableCash(fee_buffer_bps),
            MaxPositionWeight(max_weight),
            GrossExposure(max_gross),
            PatternDayTrader(pdt_min_equity, pdt_max_day_trades),
            DuplicateOrder(duplicate_window_ms),
            SubmitRate(rate_per_s, burst),
        ]
        return cls(rules, state, max_drawdown=max_drawdown, max_daily_loss=max_daily_loss,
                   on_audit=on_audit)

    # ---------------------------------------------------------------------------- hot path

    def check(self, order: RiskOrder, account: AccountView) -> Decision:
        """Check one new order.

        Parameters
        ----------
        order : RiskOrder
        account : AccountView
            The account as of now (the caller keeps it current).

        Returns
        -------
        Decision
            ``ALLOWED`` when everything passes; a throttle-flagged allowed Decision when a rule
            let the order through under a throttle; else the first failure's reason code and
            sentence (``allowed=False``), counted in ``denied``.
        """
        state = self.state
        if state is not _ACTIVE:
            msg = self._gate(state, order, account)
            if msg is not None:
                return self._deny(order, msg.code, msg, False)
        flagged = None
        for rule in self.rules:
            msg = rule.check(order, account)
            if msg is None:
                continue
            if msg.__class__ is Outcome:
                if msg.throttle:
                    self.throttled[msg.code.lower()] += 1
                if msg.allowed:
                    flagged = msg
                    continue
                return self._deny(order, msg.code, str(msg), msg.throttle)
            return self._deny(order, rule.code, msg, flagged is not None)
        for hook in self._hooks:
            hook(order)
        if flagged is None:
            return ALLOWED
        return Decision(True, flagged.code, str(flagged), flagged.throttle)

    @staticmethod
    def _gate(state: TradingState, order: RiskOrder, account: AccountView) -> Outcome | None:
        if state is _HALTED:
            return Outcome(f"trading is HALTED: {order.side} {order.quantity:g} "
                           f"{order.instrument} refused (cancels only)", "TRADING_HALTED")
        pos = account.positions.get(order.instrument, 0.0)
        if order.side == "sell":
            if pos > 0 and order.quantity <= pos + _EPS:
                return None
            what = (f"sell {order.quantity:g} exceeds the long position {pos:g}" if pos > 0
                    else f"sell with no long position ({pos:g} shares) opens or grows a short")
        else:
            if pos < 0 and order.quantity <= -pos + _EPS:
                return None
            what = (f"buy {order.quantity:g} exceeds the short position {-pos:g}" if pos < 0
                    else f"buy with no short position ({pos:g} shares) adds exposure")
        return Outcome(f"trading is REDUCING, only orders that reduce a position pass: {what} in "
                       f"{order.instrument}", "TRADING_STATE_REDUCING")

    def _deny(self, order: RiskOrder, code: str, message: str, throttle: bool) -> Decision:
        self.denied[code] += 1
        _log.info("risk denied %s %s %s %g: %s: %s", order.client_order_id, order.instrument,
                  order.side, order.quantity, code, message)
        return Decision(False, code, str(message), throttle)

    # ---------------------------------------------------------------------------- state

    def set_state(self, new: TradingState | str, reason: str, actor: str,
                  ts_ms: int) -> dict | None:
        """Change the trading state by hand (the kill switch), audited.

        Parameters
        ----------
        new : TradingState or str
            ``"ACTIVE"``, ``"REDUCING"`` or ``"HALTED"``.
        reason : str
            Why, in words (kept in the audit record).
        actor : str
            Who: a user name, or a component for automatic trips.
        ts_ms : int
            When, ms since the epoch (injected time).

        Returns
        -------
        dict or None
            The audit record, or None when the engine was already in ``new`` (nothing changes,
            nothing is recorded).

        Raises
        ------
        ConfigError
            Unknown state, empty reason or actor, non-int ``ts_ms``.
        """
        try:
            target = TradingState(new)
        except ValueError:
            raise ConfigError(f"unknown trading state {new!r}; expected one of "
                              f"{[s.value for s in TradingState]}") from None
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError("set_state needs a reason (non-empty str)")
        if not isinstance(actor, str) or not actor.strip():
            raise ConfigError("set_state needs an actor (non-empty str)")
        if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
            raise ConfigError(f"ts_ms must be an int (ms since the epoch), got {ts_ms!r}")
        if target is self.state:
            return None
        record = {"ts_ms": ts_ms, "from": self.state.value, "to": target.value,
                  "reason": reason, "actor": actor}
        self.state = target
        self.audit.append(record)
        _log.warning("trading state %s -> %s by %s: %s", record["from"], record["to"], actor,
                     reason)
        if self.on_audit is not None:
            self.on_audit(record)
        return record

    def update_account(self, account: AccountView, ts_ms: int) -> TradingState:
        """Trip the trading state from an account update (automatic kill switch).

        Drawdown ``1 - equity / peak`` (peak: ``max(peak_equity, equity)``) above
        ``max_drawdown`` -> HALTED; else daily loss ``1 - equity / day_start_equity`` above
        ``max_daily_loss`` -> REDUCING (from ACTIVE only: never loosens HALTED). Each trip is
        audited with actor ``"risk_engine"`` and a reason starting ``MAX_DRAWDOWN:`` or
        ``MAX_DAILY_LOSS:``. Nothing un-trips here (see the class notes).

        Parameters
        ----------
        account : AccountView
            ``equity``, ``peak_equity`` and ``day_start_equity`` are read (None: ``equity``).
        ts_ms : int
            Time of the account snapshot, ms since the epoch.

        Returns
        -------
        TradingState
            The state after the update.
        """
        equity = account.equity
        if self.max_drawdown is not None and self.state is not _HALTED:
            peak = account.peak_equity if account.peak_equity is not None else equity
            peak = max(peak, equity)
            # compared in currency (peak - equity vs limit * peak): exactly at the limit is not
            # beyond it, without 1 - x / y rounding up by an ulp
            if peak > 0 and peak - equity > self.max_drawdown * peak:
                dd = 1.0 - equity / peak
                self.set_state(_HALTED, f"MAX_DRAWDOWN: drawdown {dd:.2%} from the peak "
                               f"{peak:,.2f} to equity {equity:,.2f} is beyond the limit "
                               f"{self.max_drawdown:.2%}", "risk_engine", ts_ms)
        if self.max_daily_loss is not None and self.state is _ACTIVE:
            start = account.day_start_equity if account.day_start_equity is not None else equity
            if start > 0 and start - equity > self.max_daily_loss * start:
                loss = 1.0 - equity / start
                self.set_state(_REDUCING, f"MAX_DAILY_LOSS: loss {loss:.2%} since the session "
                               f"start ({start:,.2f} -> {equity:,.2f}) is beyond the limit "
                               f"{self.max_daily_loss:.2%}", "risk_engine", ts_ms)
        return self.state
