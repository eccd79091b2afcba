"""Pre-trade risk rules: small records in, a reason code and a human sentence out.

Every rule follows one protocol (NautilusTrader's risk engine habit: deny with a reason code and a
sentence a person can act on, ``NOTIONAL_EXCEEDS_MAX_PER_ORDER: ...``):

- ``code``: the UPPER_SNAKE reason code of its denials (the label of the denial counters);
- ``check(order, account) -> str | None``: None when the order passes, else the sentence;
- optionally ``on_allowed(order)``: called by :class:`~bridge.risk.engine.RiskEngine` only once
  every rule has passed, so stateful rules (rate limit, duplicate guard) book only orders that are
  really sent: a denied order never consumes a token nor blocks its corrected retry.

A rule that denies under several codes, or that only *throttles* (lets the order through but
flags it), returns an :class:`Outcome`, a ``str`` carrying its own ``code`` and ``allowed`` flag.

The check path is a hot path (target: all rules on, p95 < 50 us in pure Python): plain attribute
access, no validation, no logging, no allocation on pass. Sentences are formatted on denial only.
Validation happens once, when a record or a rule is built (:class:`~bridge.errors.ConfigError`,
:class:`~bridge.errors.ValidationError`). Time is always the order's ``ts_ms`` (injected), never
the wall clock, so a replay gives the same decisions.

Units: quantities in shares, prices in currency per share, values in currency, bands and fee
buffers in basis points (1 bp = 0.01 %), times in milliseconds since the epoch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from bridge.errors import ConfigError, ValidationError

__all__ = [
    "AccountView",
    "AvailableCash",
    "Blacklist",
    "Decision",
    "DuplicateOrder",
    "GrossExposure",
    "MaxOrderNotional",
    "MaxOrderQuantity",
    "MaxPositionWeight",
    "Outcome",
    "PatternDayTrader",
    "PriceBand",
    "RiskOrder",
    "SubmitRate",
    "UpstreamState",
]


# --------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class RiskOrder:
    """The order as the risk engine sees it (built by the caller from the executor's OrderCtx).

    Parameters
    ----------
    client_order_id : str
        Deterministic client order id (the idempotency key, seed 001 section 4).
    instrument : str
        Instrument code as in the bars, e.g. ``"AAPL"``.
    side : {"buy", "sell"}
    quantity : float
        Shares, > 0.
    price : float
        Reference price, currency per share, > 0: the limit price, or the decision/arrival price
        of a market order. Notional and exposure are valued at it.
    ts_ms : int
        Decision time, ms since the epoch; the only clock the rules read.
    strategy_id : str
        Strategy instance; the low-consistency down-sampling counts per strategy.
    guard_reason : str or None
        An upstream guard that is active (seed 001: ``guard_reason``); None or "" when none.
    warmup : bool
        The upstream signal is still warming up (seed 001: ``warmup``).
    consistency : float or None
        Upstream signal consistency in [0, 1] (seed 001: ``consistency``); None when unknown.

    Raises
    ------
    ValidationError
        ``side`` not buy/sell, ``quantity`` or ``price`` not finite and > 0.
    """

    client_order_id: str
    instrument: str
    side: str
    quantity: float
    price: float
    ts_ms: int
    strategy_id: str = ""
    guard_reason: str | None = None
    warmup: bool = False
    consistency: float | None = None

    def __post_init__(self) -> None:
        if self.side != "buy" and self.side != "sell":
            raise ValidationError("side", "invalid_side",
                                  f"order {self.client_order_id!r}: side must be 'buy' or 'sell', "
                                  f"got {self.side!r}")
        if not (self.quantity > 0 and math.isfinite(self.quantity)):
            raise ValidationError("quantity", "non_positive_quantity",
                                  f"order {self.client_order_id!r}: quantity must be a finite "
                                  f"number of shares > 0, got {self.quantity!r}")
        if not (self.price > 0 and math.isfinite(self.price)):
            raise ValidationError("price", "non_positive_price",
                                  f"order {self.client_order_id!r}: reference price must be "
                                  f"finite and > 0, got {self.price!r}")


@dataclass(slots=True)
class AccountView:
    """The account the rules read: the executor's account snapshot, refreshed by the caller.

    Mutable on purpose: the caller updates it in place as fills and account events arrive (and
    lowers ``cash`` as it sends buys of one batch), without rebuilding it per check.

    Parameters
    ----------
    cash : float
        Available cash, currency, as the broker reports it (seed 002 task 5: ``cash_available``
        injected from the account; IB ``AvailableFunds``, Alpaca ``cash``/``buying_power``), net
        of open buy orders.
    positions : dict of str -> float
        Instrument -> shares held (negative: short).
    prices : dict of str -> float
        Instrument -> last price, currency per share. Every held instrument needs one (gross
        exposure), and the price band needs the ordered instrument's.
    equity : float
        Total account value (cash + positions at last prices), currency.
    day_start_equity : float or None
        Equity at the start of the session, currency (daily-loss trip); None: ``equity``.
    peak_equity : float or None
        Running peak of equity, currency (drawdown trip); None: ``equity``.
    day_trades : int
        Day trades counted by the broker over the rolling 5 business days (FINRA 4210; Alpaca
        ``daytrade_count``), including today's round trips.
    is_margin : bool
        Margin account (the pattern-day-trader rule applies only to margin accounts).
    bought_today : set of str
        Instruments bought today: selling one of them completes a day trade.
    sold_today : set of str
        Instruments sold (or sold short) today: buying one of them completes a day trade.
    """

    cash: float
    positions: dict
    prices: dict
    equity: float
    day_start_equity: float | None = None
    peak_equity: float | None = None
    day_trades: int = 0
    is_margin: bool = False
    bought_today: set = field(default_factory=set)
    sold_today: set = field(default_factory=set)

    @classmethod
    def from_book(cls, cash: float, positions: dict, prices: dict, **kwargs) -> AccountView:
        """An account whose equity is ``cash + sum(shares * last price)``, currency.

        Raises
        ------
        ValidationError
            A held instrument has no price (field ``prices``).
        """
        missing = sorted(i for i in positions if i not in prices)
        if missing:
            raise ValidationError("prices", "no_price",
                                  f"no last price for held instruments {missing[:10]}")
        equity = cash + sum(q * prices[i] for i, q in positions.items())
        return cls(cash=cash, positions=positions, prices=prices, equity=equity, **kwargs)


@dataclass(slots=True, frozen=True)
class Decision:
    """The engine's answer for one order.

    Attributes
    ----------
    allowed : bool
        True: send the order. False: the order is DENIED (not REJECTED: no broker saw it) and
        must never emit SUBMITTED.
    reason : str
        Reason code (UPPER_SNAKE) of the denial or of the throttle flag; "" when plainly allowed.
    message : str
        The human sentence (numbers included); "" when plainly allowed.
    throttle : bool
        The order met a throttle (low upstream consistency): allowed-but-flagged, or dropped by
        the down-sampling (then ``allowed`` is False too).
    """

    allowed: bool
    reason: str = ""
    message: str = ""
    throttle: bool = False


class Outcome(str):
    """A rule's sentence that carries its own reason code, and may only flag (throttle).

    A plain ``str`` from ``check`` denies under the rule's ``code``. An ``Outcome`` denies under
    its own ``code`` (``allowed=False``), or lets the order through (``allowed=True``): the
    engine then keeps checking the other rules. ``throttle=True`` marks a throttle decision: the
    engine counts it in ``RiskEngine.throttled[code.lower()]`` and sets ``Decision.throttle``.
    """

    code: str
    allowed: bool
    throttle: bool

    def __new__(cls, message: str, code: str, allowed: bool = False,
                throttle: bool = False) -> Outcome:
        self = super().__new__(cls, message)
        self.code = code
        self.allowed = allowed
        self.throttle = throttle
        return self


# --------------------------------------------------------------------------------------------
# helpers (cold path: building rules)
# --------------------------------------------------------------------------------------------


def _positive(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# size and exposure
# --------------------------------------------------------------------------------------------


class MaxOrderNotional:
    """Order value ``quantity * price`` at most ``max_notional``. Source: NautilusTrader
    ``RiskEngineConfig.max_notional_per_order``; SEC Rule 15c3-5(c)(1) (pre-set credit and size
    thresholds).

    Parameters
    ----------
    max_notional : float
        Currency per order, > 0.
    per_instrument : dict of str -> float, optional
        Overrides for some instruments, currency.
    """

    code = "NOTIONAL_EXCEEDS_MAX_PER_ORDER"
    __slots__ = ("max_notional", "per_instrument")

    def __init__(self, max_notional: float, per_instrument: dict | None = None) -> None:
        self.max_notional = _positive("max_notional", max_notional)
        self.per_instrument = {k: _positive(f"per_instrument[{k!r}]", v)
                               for k, v in (per_instrument or {}).items()}

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        limit = self.per_instrument.get(order.instrument, self.max_notional) \
            if self.per_instrument else self.max_notional
        notional = order.quantity * order.price
        if notional <= limit:
            return None
        return (f"order notional {notional:,.2f} exceeds the maximum per order {limit:,.2f} "
                f"({order.side} {order.quantity:g} {order.instrument} @ {order.price:,.4g})")


class MaxOrderQuantity:
    """Order quantity at most ``max_quantity`` shares (fat-finger guard). Source: NautilusTrader
    ``QUANTITY_EXCEEDS_MAXIMUM``; SEC Rule 15c3-5(c)(1)(ii) (reject orders exceeding size
    parameters).

    Parameters
    ----------
    max_quantity : float
        Shares per order, > 0.
    """

    code = "QUANTITY_EXCEEDS_MAXIMUM"
    __slots__ = ("max_quantity",)

    def __init__(self, max_quantity: float) -> None:
        self.max_quantity = _positive("max_quantity", max_quantity)

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        if order.quantity <= self.max_quantity:
            return None
        return (f"order quantity {order.quantity:g} shares of {order.instrument} exceeds the "
                f"maximum {self.max_quantity:g} shares per order")


class MaxPositionWeight:
    """Position weight after the fill ``|shares_after| * price / equity`` at most ``max_weight``.
    Source: FEATURES.md risk layer; the same cap as the PortfolioEngine's ``max_weight``.

    Orders that shrink the absolute position always pass, so an over-weight book can be cut.

    Parameters
    ----------
    max_weight : float
        Fraction of equity, > 0 (0.10 = 10 %).
    """

    code = "POSITION_WEIGHT_EXCEEDS_MAX"
    __slots__ = ("max_weight",)

    def __init__(self, max_weight: float) -> None:
        self.max_weight = _positive("max_weight", max_weight)

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        before = account.positions.get(order.instrument, 0.0)
        after = before + order.quantity if order.side == "buy" else before - order.quantity
        if abs(after) <= abs(before):
            return None
        equity = account.equity
        value = abs(after) * order.price
        if equity > 0 and value <= self.max_weight * equity:
            return None
        if equity <= 0:
            return (f"account equity {equity:,.2f} is not positive: no position in "
                    f"{order.instrument} may grow")
        return (f"position in {order.instrument} after the fill ({after:g} shares, "
                f"{value:,.2f}) would be {value / equity:.2%} of equity {equity:,.2f}, above "
                f"the maximum weight {self.max_weight:.2%}")


class GrossExposure:
    """Gross exposure after the fill ``sum |shares * price| / equity`` at most ``max_gross``.
    Source: FEATURES.md risk layer (gross exposure); Reg T style gross leverage.

    Held instruments are valued at their last price, the ordered one at the order's reference
    price. Orders that shrink the absolute position always pass. A held instrument without a
    price denies (fail closed: exposure cannot be measured).

    Parameters
    ----------
    max_gross : float
        Multiple of equity, > 0 (1.0 = fully invested, no leverage).
    """

    code = "GROSS_EXPOSURE_EXCEEDS_MAX"
    __slots__ = ("max_gross",)

    def __init__(self, max_gross: float) -> None:
        self.max_gross = _positive("max_gross", max_gross)

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        positions = account.positions
        inst = order.instrument
        before = positions.get(inst, 0.0)
        after = before + order.quantity if order.side == "buy" else before - order.quantity
        if abs(after) <= abs(before):
            return None
        prices = account.prices
        try:
            gross = sum([abs(q * prices[i]) for i, q in positions.items()])
        except KeyError:
            missing = sorted(i for i in positions if i not in prices)
            return f"no last price for held {missing[:5]}: gross exposure cannot be measured"
        # the ordered instrument: out at its last price, back in at the order's price
        gross += abs(after) * order.price - (abs(before) * prices[inst] if before else 0.0)
        equity = account.equity
        if equity > 0 and gross <= self.max_gross * equity:
            return None
        if equity <= 0:
            return f"account equity {equity:,.2f} is not positive: gross exposure may not grow"
        return (f"gross exposure after the fill {gross:,.2f} would be {gross / equity:.2f}x "
                f"equity {equity:,.2f}, above the maximum {self.max_gross:.2f}x "
                f"({order.side} {order.quantity:g} {inst} @ {order.price:,.4g})")


class AvailableCash:
    """Buys: ``quantity * price * (1 + fee_buffer_bps / 1e4) <= cash``. Source: seed 002 task 5
    (available cash injected from the broker account); NautilusTrader
    ``NOTIONAL_EXCEEDS_FREE_BALANCE``.

    Sells pass (short-sale permission is the broker's: a margin check is out of scope). The
    account's ``cash`` must be the broker's available cash net of open buys; the caller lowers it
    as it sends the buys of one batch.

    Parameters
    ----------
    fee_buffer_bps : float
        Head-room for commission and slippage, bps of the order value, >= 0.
    """

    code = "NOTIONAL_EXCEEDS_FREE_BALANCE"
    __slots__ = ("fee_buffer_bps", "_factor")

    def __init__(self, fee_buffer_bps: float = 10.0) -> None:
        self.fee_buffer_bps = _positive("fee_buffer_bps", fee_buffer_bps, allow_zero=True)
        self._factor = 1.0 + self.fee_buffer_bps / 1e4

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        if order.side != "buy":
            return None
        need = order.quantity * order.price * self._factor
        if need <= account.cash:
            return None
        return (f"buy of {order.quantity:g} {order.instrument} @ {order.price:,.4g} needs "
                f"{need:,.2f} (value + {self.fee_buffer_bps:g} bps fee buffer) but only "
                f"{account.cash:,.2f} cash is available")


class Blacklist:
    """No order that opens or grows a position in a listed instrument. Source: FEATURES.md
    (blacklist; restricted list), the PortfolioEngine's ``blacklist`` constraint.

    Parameters
    ----------
    instruments : iterable of str
        The restricted instruments.
    allow_reducing : bool
        True (default): orders that shrink an existing position pass, so a name that joins the
        list can still be exited. False: every order in a listed instrument is denied.
    """

    code = "INSTRUMENT_BLACKLISTED"
    __slots__ = ("instruments", "allow_reducing")

    def __init__(self, instruments=(), allow_reducing: bool = True) -> None:
        if isinstance(instruments, str):
            raise ConfigError("instruments must be an iterable of instrument codes, not a str")
        self.instruments = frozenset(instruments)
        self.allow_reducing = bool(allow_reducing)

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        if order.instrument not in self.instruments:
            return None
        if self.allow_reducing:
            before = account.positions.get(order.instrument, 0.0)
            after = before + order.quantity if order.side == "buy" else before - order.quantity
            if abs(after) <= abs(before) and after * before >= 0:
                return None
        return f"{order.instrument} is blacklisted: {order.side} {order.quantity:g} refused"


# --------------------------------------------------------------------------------------------
# flow control
# --------------------------------------------------------------------------------------------


class SubmitRate:
    """Token bucket: at most ``burst`` orders at once, refilled at ``rate_per_s`` per second.
    Source: NautilusTrader ``RiskEngineConfig.max_order_submit_rate`` (its throttler denies with
    ``RATE_LIMIT_EXCEEDED``); token bucket (Turner, 1986).

    Time is the order's ``ts_ms`` (injected): the same order stream gives the same decisions in
    a backtest, a replay and live. A token is taken only when the engine allows the order
    (``on_allowed``); an order denied by any rule costs nothing. Time going backwards refills
    nothing.

    Parameters
    ----------
    rate_per_s : float
        Tokens added per second, > 0.
    burst : float
        Bucket size (orders that may go at the same ms), >= 1.
    """

    code = "RATE_LIMIT_EXCEEDED"
    __slots__ = ("rate_per_s", "burst", "tokens", "last_ms", "_per_ms")

    def __init__(self, rate_per_s: float = 10.0, burst: float = 20.0) -> None:
        self.rate_per_s = _positive("rate_per_s", rate_per_s)
        self.burst = _positive("burst", burst)
        if self.burst < 1:
            raise ConfigError(f"burst must be >= 1 (one order needs one token), got {burst!r}")
        self._per_ms = self.rate_per_s / 1000.0
        self.tokens = self.burst
        self.last_ms: int | None = None

    def _refill(self, ts_ms: int) -> None:
        last = self.last_ms
        if last is None:
            self.last_ms = ts_ms
        elif ts_ms > last:
            tokens = self.tokens + (ts_ms - last) * self._per_ms
            self.tokens = tokens if tokens < self.burst else self.burst
            self.last_ms = ts_ms

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        self._refill(order.ts_ms)  # idempotent for one ts_ms: safe on every check
        if self.tokens >= 1.0:
            return None
        wait = (1.0 - self.tokens) / self._per_ms
        return (f"order rate above {self.rate_per_s:g}/s (burst {self.burst:g}): next slot in "
                f"{math.ceil(wait):d} ms")

    def on_allowed(self, order: RiskOrder) -> None:
        self.tokens -= 1.0


class DuplicateOrder:
    """No client_order_id twice; no same (instrument, side, quantity) within ``window_ms``.
    Source: seed 001 section 4 (deterministic client_order_id as the idempotency key; a repeated
    submit must not place a second order).

    Only orders the engine allows are remembered, so a denied order can be corrected and
    re-sent. The id set grows for the life of the engine (one per order sent: a trading day of
    orders is small); build a new rule per session.

    Parameters
    ----------
    window_ms : int
        Ms within which an identical (instrument, side, quantity) counts as a duplicate, >= 0
        (0: only the id is checked).
    """

    code = "DUPLICATE_ORDER"
    __slots__ = ("window_ms", "seen_ids", "recent")

    def __init__(self, window_ms: int = 1_000) -> None:
        self.window_ms = _positive("window_ms", window_ms, allow_zero=True)
        self.seen_ids: set = set()
        self.recent: dict = {}

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        if order.client_order_id in self.seen_ids:
            return f"client_order_id {order.client_order_id!r} was already sent"
        if self.window_ms:
            last = self.recent.get((order.instrument, order.side, order.quantity))
            if last is not None and abs(order.ts_ms - last) < self.window_ms:
                return (f"same order ({order.side} {order.quantity:g} {order.instrument}) sent "
                        f"{abs(order.ts_ms - last)} ms ago, within the {self.window_ms:g} ms "
                        f"duplicate window")
        return None

    def on_allowed(self, order: RiskOrder) -> None:
        self.seen_ids.add(order.client_order_id)
        if self.window_ms:
            self.recent[(order.instrument, order.side, order.quantity)] = order.ts_ms


class PriceBand:
    """Reference price within +-``band_bps`` of the last price. Source: SEC Rule
    15c3-5(c)(1)(ii) (reject orders exceeding price parameters); exchange price collars.

    An instrument without a last price denies (fail closed: the band cannot be checked).

    Parameters
    ----------
    band_bps : float
        Half-width of the band, bps of the last price, > 0 (500 = +-5 %).
    """

    code = "PRICE_OUTSIDE_BAND"
    __slots__ = ("band_bps", "_band")

    def __init__(self, band_bps: float = 500.0) -> None:
        self.band_bps = _positive("band_bps", band_bps)
        self._band = self.band_bps / 1e4

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        last = account.prices.get(order.instrument)
        if last is not None and last > 0 and abs(order.price - last) <= self._band * last:
            return None
        if last is None or not last > 0:
            return f"no last price for {order.instrument}: the price band cannot be checked"
        dev = (order.price / last - 1.0) * 1e4
        return (f"price {order.price:,.4g} is {dev:+,.0f} bps from the last price {last:,.4g} of "
                f"{order.instrument}, outside the +-{self.band_bps:g} bps band")


class PatternDayTrader:
    """FINRA Rule 4210(f)(8)(B): a margin account under 25,000 USD equity may not make a 4th day
    trade in 5 business days.

    An order makes a day trade when it closes a round trip opened the same day: a sell of an
    instrument bought today, or a buy of one sold today (``AccountView.bought_today`` /
    ``sold_today``). It is denied when the account is a margin account, its equity is below
    ``min_equity`` and ``day_trades`` (broker's rolling 5-business-day count) is already
    ``max_day_trades`` or more. Cash accounts are not subject to the rule.

    Parameters
    ----------
    min_equity : float
        Minimum equity of a pattern day trader, currency (FINRA: 25,000 USD).
    max_day_trades : int
        Day trades allowed in 5 business days below ``min_equity`` (FINRA: 3; the 4th makes a
        pattern day trader).
    """

    code = "PATTERN_DAY_TRADER"
    __slots__ = ("min_equity", "max_day_trades")

    def __init__(self, min_equity: float = 25_000.0, max_day_trades: int = 3) -> None:
        self.min_equity = _positive("min_equity", min_equity, allow_zero=True)
        if not isinstance(max_day_trades, int) or max_day_trades < 0:
            raise ConfigError(f"max_day_trades must be an int >= 0, got {max_day_trades!r}")
        self.max_day_trades = max_day_trades

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        if not account.is_margin or account.equity >= self.min_equity \
                or account.day_trades < self.max_day_trades:
            return None
        if order.side == "sell":
            if order.instrument not in account.bought_today:
                return None
        elif order.instrument not in account.sold_today:
            return None
        return (f"{order.side} of {order.instrument} would be day trade "
                f"#{account.day_trades + 1} in 5 business days in a margin account with equity "
                f"{account.equity:,.2f} < {self.min_equity:,.0f} (FINRA 4210 pattern day trader)")


_GUARD_CODE = re.compile(r"[^A-Z0-9]+")


class UpstreamState:
    """Upstream signal state: warmup or an active guard denies; low consistency throttles.
    Source: seed 001 section 2 (warmup / guard_reason -> deny, counted as
    ``executor_pre_deny_total{reason}``; consistency below threshold ->
    ``executor_throttle_total{reason="low_consistency"}`` and down-sampled execution).

    - ``warmup`` -> deny ``WARMUP``;
    - ``guard_reason`` (non-empty) -> deny ``GUARD_<REASON>`` (upper-cased, non-alphanumerics
      to ``_``: ``"stale feed"`` -> ``GUARD_STALE_FEED``);
    - ``consistency < min_consistency`` -> throttle ``LOW_CONSISTENCY``: deterministic "one in
      N" down-sampling. The low-consistency orders of each ``strategy_id`` are numbered 1, 2,
      3, ...; order k is let through (allowed, flagged ``throttle``) when ``(k - 1) % every_n ==
      0`` (the 1st, the N+1th, ...), the others are denied under ``LOW_CONSISTENCY`` (also
      flagged). No randomness, no clock: a replay takes the same orders. ``every_n=1`` lets every
      order through, flagged. The count runs over the orders this rule sees, whatever the later
      rules decide; an order with known consistency at or above the threshold does not reset it.

    Parameters
    ----------
    min_consistency : float
        Threshold in [0, 1]; None consistency is never throttled.
    every_n : int
        N of the down-sampling, >= 1.
    """

    code = "UPSTREAM_STATE"
    __slots__ = ("min_consistency", "every_n", "low_seen", "_guard_codes")

    def __init__(self, min_consistency: float = 0.5, every_n: int = 4) -> None:
        self.min_consistency = _positive("min_consistency", min_consistency, allow_zero=True)
        if not isinstance(every_n, int) or every_n < 1:
            raise ConfigError(f"every_n must be an int >= 1, got {every_n!r}")
        self.every_n = every_n
        self.low_seen: dict = {}
        self._guard_codes: dict = {}

    def guard_code(self, guard_reason: str) -> str:
        """``GUARD_<REASON>`` for a guard reason (cached)."""
        code = self._guard_codes.get(guard_reason)
        if code is None:
            tag = _GUARD_CODE.sub("_", guard_reason.upper()).strip("_") or "UNKNOWN"
            code = self._guard_codes[guard_reason] = f"GUARD_{tag}"
        return code

    def check(self, order: RiskOrder, account: AccountView) -> str | None:
        if order.warmup:
            return Outcome(f"upstream signal of {order.strategy_id or 'the strategy'} is warming "
                           f"up: no order for {order.instrument}", "WARMUP")
        if order.guard_reason:
            return Outcome(f"upstream guard {order.guard_reason!r} is active: no order for "
                           f"{order.instrument}", self.guard_code(order.guard_reason))
        c = order.consistency
        if c is None or c >= self.min_consistency:
            return None
        k = self.low_seen.get(order.strategy_id, 0) + 1
        self.low_seen[order.strategy_id] = k
        n = self.every_n
        if (k - 1) % n == 0:
            return Outcome(f"consistency {c:.3f} < {self.min_consistency:.3f}: low-consistency "
                           f"order #{k} let through (1 in {n})", "LOW_CONSISTENCY", allowed=True,
                           throttle=True)
        return Outcome(f"consistency {c:.3f} < {self.min_consistency:.3f}: low-consistency order "
                       f"#{k} dropped by down-sampling (1 in {n} goes through)", "LOW_CONSISTENCY",
                       throttle=True)
