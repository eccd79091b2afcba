"""The embedded paper broker: a venue with its own account, matching orders against real bars.

It is deliberately a separate world from bridge's local state (its own cash, positions, orders and
fills, reached only through a venue-like API: place, cancel, query by client order id, account,
positions, fills), so that reconciliation has two real sides to compare.

Matching, per session ``t`` of the panel (:meth:`PaperBroker.run_session`):

- market orders fill at the session's open (``fill_at="open"``, for orders placed before the
  open, e.g. the next bar's open after a decision at the previous close) or its close
  (``fill_at="close"``);
- limit orders fill when the bar trades through the limit (buy: low <= limit; sell: high >=
  limit), at the limit, or at the open when the bar opens through it;
- each fill is capped by ``participation`` of the bar's volume, shared by every order of the
  instrument that session; the rest stays open (``gtc``) or expires at the session's end
  (``day``, ``opg``, ``cls``, ``ioc``);
- buys are checked against the broker's cash at placement (rejected: insufficient buying power)
  and sells against its position (rejected: insufficient quantity; no short selling);
- prices move against the trader by the slippage model; fees come from the market rules.

Time comes from an injected clock and randomness from a seeded generator (fault injection only):
the same inputs give bit-identical orders and fills.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from bridge.brokers.slippage import FixedBps
from bridge.market.data import Panel
from bridge.market.rules import US, MarketRules

SESSION_END_MS = 16 * 3_600_000
SESSION_OPEN_MS = 9 * 3_600_000 + 30 * 60_000


class BrokerError(Exception):
    """A venue-side failure (the adapter maps these onto its transport's errors)."""


class SubmitTimeout(BrokerError, TimeoutError):
    """The request timed out: whether the order reached the venue is unknown."""


class ServerError(BrokerError):
    """A 5xx-like failure: the venue may or may not have processed the request."""


@dataclass
class FaultPlan:
    """Faults injected into the submit path, each with a probability (seeded RNG).

    ``timeout_before`` / ``error_before``: the request never reaches the venue.
    ``timeout_after`` / ``error_after``: the venue places the order, the answer is lost.
    """

    timeout_before: float = 0.0
    timeout_after: float = 0.0
    error_before: float = 0.0
    error_after: float = 0.0
    query_error: float = 0.0


@dataclass
class VenueOrder:
    broker_order_id: str
    client_order_id: str
    instrument: str
    side: str
    quantity: float
    order_type: str
    limit_price: float | None
    time_in_force: str
    status: str = "accepted"          # accepted, partially_filled, filled, canceled, expired, rejected
    filled_quantity: float = 0.0
    reject_reason: str = ""
    created_ts_ms: int = 0
    updated_ts_ms: int = 0
    reserve_price: float = 0.0        # price buying power was reserved at (buys)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class VenueAccount:
    cash: float
    positions: dict = field(default_factory=dict)   # instrument -> shares
    cost: dict = field(default_factory=dict)        # instrument -> total cost (for avg price)


class PaperBroker:
    """The venue.

    Parameters
    ----------
    panel : Panel
        Real bars the orders match against.
    cash : float
        Starting cash of the broker account, currency.
    rules : MarketRules
        Fees and trade unit.
    fill_at : {"open", "close"}
        Price market orders take in :meth:`run_session`.
    participation : float
        Share of a bar's volume the broker lets this account trade per instrument and session.
    slippage : object with ``price(ref, side, quantity, bar_volume)``
        :class:`~bridge.brokers.slippage.FixedBps` (default 0 bps) or
        :class:`~bridge.brokers.slippage.VolumeShareImpact`.
    clock : callable returning int ms
        Injected time (simulated or wall clock).
    seed : int
        Seed of the fault-injection generator.
    faults : FaultPlan, optional
    """

    def __init__(self, panel: Panel, cash: float, rules: MarketRules = US, fill_at: str = "open",
                 participation: float = 0.1, slippage=None, clock=None, seed: int = 0,
                 faults: FaultPlan | None = None) -> None:
        self.panel = panel
        self.rules = rules
        self.fill_at = fill_at
        self.participation = participation
        self.slippage = slippage or FixedBps(0.0)
        self.clock = clock or (lambda: 0)
        self.rng = np.random.default_rng(seed)
        self.faults = faults or FaultPlan()
        self.account = VenueAccount(cash=float(cash))
        self.orders: dict[str, VenueOrder] = {}          # broker_order_id -> order
        self.by_client_id: dict[str, str] = {}
        self.fills: list[dict] = []
        self._ids = itertools.count(1)
        self._exec = itertools.count(1)
        self._col = {name: i for i, name in enumerate(panel.instruments)}
        self._marks = panel.last_close()
        self._mark, self._mark_t = self._marks[0], 0
        self.calls = {"place": 0, "placed": 0}
        # open interest kept incrementally: placement checks are O(1), not a scan of all orders
        self._reserved_cash = 0.0                        # open buy notional at reserve prices
        self._open_sell: dict[str, float] = {}           # instrument -> open sell shares

    # ---- persistence: the venue outlives the process, like a real broker's account -------
    STATE_VERSION = 1

    def save(self, path) -> None:
        """Write the venue's state (account, orders, fills, id counters) as JSON, atomically.

        The bars are not stored (they are the data); fault settings are not stored either.
        """
        import json
        import os
        from pathlib import Path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "version": self.STATE_VERSION, "t": getattr(self, "_t", 0),
            "config": {"fill_at": self.fill_at, "participation": self.participation},
            "account": {"cash": self.account.cash, "positions": self.account.positions,
                        "cost": self.account.cost},
            "orders": [o.to_dict() for o in self.orders.values()], "fills": self.fills,
            "next_order": next(self._ids), "next_exec": next(self._exec),
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._ids = itertools.count(state["next_order"])
        self._exec = itertools.count(state["next_exec"])

    @classmethod
    def load(cls, path, panel: Panel, rules: MarketRules = US, **kwargs) -> PaperBroker:
        """Re-open a venue saved with :meth:`save` over the same bars."""
        import json

        state = json.loads(open(path).read())
        if state.get("version") != cls.STATE_VERSION:
            raise BrokerError(f"unsupported paper broker state version {state.get('version')}")
        cfg = {**state["config"], **kwargs}
        b = cls(panel, state["account"]["cash"], rules, **cfg)
        b.account.positions = {k: float(v) for k, v in state["account"]["positions"].items()}
        b.account.cost = {k: float(v) for k, v in state["account"]["cost"].items()}
        for rec in state["orders"]:
            o = VenueOrder(**rec)
            b.orders[o.broker_order_id] = o
            b.by_client_id[o.client_order_id] = o.broker_order_id
            if o.status in ("accepted", "partially_filled"):
                b._open_interest(o, o.quantity - o.filled_quantity)
        b.fills = list(state["fills"])
        b._ids = itertools.count(state["next_order"])
        b._exec = itertools.count(state["next_exec"])
        b._t = state["t"]
        return b

    def transfer_in(self, instrument: str, quantity: float, avg_cost: float) -> None:
        """Deposit shares into the account (an opening balance, e.g. a book moved from
        elsewhere): not a trade, no fill, no fee."""
        if instrument not in self._col:
            raise BrokerError(f"unknown instrument {instrument}")
        held = self.account.positions.get(instrument, 0.0)
        self.account.positions[instrument] = held + float(quantity)
        self.account.cost[instrument] = self.account.cost.get(instrument, 0.0) + quantity * avg_cost

    # ---- venue API -----------------------------------------------------------------------
    def _fault(self, name: str) -> bool:
        p = getattr(self.faults, name)
        return bool(p) and self.rng.random() < p

    def place_order(self, client_order_id: str, instrument: str, side: str, quantity: float,
                    order_type: str = "market", limit_price: float | None = None,
                    time_in_force: str = "day") -> dict:
        """Place an order; returns the venue's order record (``status`` accepted or rejected).

        Raises
        ------
        SubmitTimeout, ServerError
            Injected faults; with the ``*_after`` kinds the order WAS placed.
        """
        self.calls["place"] += 1
        if self._fault("timeout_before"):
            raise SubmitTimeout("timeout before the venue received the order")
        if self._fault("error_before"):
            raise ServerError("503 service unavailable")
        rec = self._place(client_order_id, instrument, side, quantity, order_type, limit_price,
                          time_in_force)
        if self._fault("timeout_after"):
            raise SubmitTimeout("timeout after the venue received the order")
        if self._fault("error_after"):
            raise ServerError("504 gateway timeout")
        return rec

    def _place(self, cid, instrument, side, quantity, order_type, limit_price, tif) -> dict:
        now = self.clock()
        if cid in self.by_client_id:  # like Alpaca: a client order id is never reused
            return {"status": "rejected", "client_order_id": cid,
                    "reject_reason": "client_order_id must be unique",
                    "broker_order_id": None}
        oid = f"sim-{next(self._ids):08d}"
        o = VenueOrder(oid, cid, instrument, side, float(quantity), order_type, limit_price, tif,
                       created_ts_ms=now, updated_ts_ms=now)
        reason = self._precheck(o)
        if reason:
            o.status, o.reject_reason = "rejected", reason
        else:
            self.calls["placed"] += 1
            o.reserve_price = self._reserve_price(o) if o.side == "buy" else 0.0
            self._open_interest(o, o.quantity)
        self.orders[oid] = o
        self.by_client_id[cid] = oid
        return o.to_dict()

    def _precheck(self, o: VenueOrder) -> str:
        if o.instrument not in self._col:
            return f"unknown instrument {o.instrument}"
        if o.quantity <= 0:
            return "quantity must be > 0"
        if o.order_type == "limit" and not (o.limit_price and o.limit_price > 0):
            return "limit order without a limit price"
        if o.side == "sell":
            open_sells = self._open_sell.get(o.instrument, 0.0)
            if o.quantity + open_sells > self.account.positions.get(o.instrument, 0.0) + 1e-9:
                return "insufficient qty available for order"
        else:
            px = o.limit_price or self._last_price(o.instrument)
            if not np.isfinite(px):
                return "no price for the instrument"
            value = o.quantity * px
            if value + self.rules.fee(value, False) > self._buying_power() + 1e-9:
                return "insufficient buying power"
        return ""

    def _last_price(self, instrument: str) -> float:
        """Last close up to the current session (carried over missing bars), NaN before any."""
        t = getattr(self, "_t", 0)
        if self._mark_t != t:
            self._mark, self._mark_t = self._marks[t], t
        return float(self._mark[self._col[instrument]])

    def _buying_power(self) -> float:
        return self.account.cash - self._reserved_cash

    def _reserve_price(self, o: VenueOrder) -> float:
        return o.limit_price or self._last_price(o.instrument)

    def _open_interest(self, o: VenueOrder, qty: float) -> None:
        """Add (qty > 0) or release (qty < 0) an order's open quantity."""
        if o.side == "buy":
            self._reserved_cash += qty * o.reserve_price
        else:
            self._open_sell[o.instrument] = self._open_sell.get(o.instrument, 0.0) + qty

    def _close(self, o: VenueOrder, status: str, ts: int) -> None:
        self._open_interest(o, -(o.quantity - o.filled_quantity))
        o.status, o.updated_ts_ms = status, ts

    def cancel_order(self, client_order_id: str) -> dict:
        """Cancel an open order; a filled or already closed order cannot be canceled."""
        oid = self.by_client_id.get(client_order_id)
        if oid is None:
            return {"status": "not_found", "client_order_id": client_order_id}
        o = self.orders[oid]
        if o.status in ("accepted", "partially_filled"):
            self._close(o, "canceled", self.clock())
        return o.to_dict()

    def amend_order(self, client_order_id: str, quantity: float | None = None,
                    limit_price: float | None = None) -> dict:
        """Change an open order's quantity (shares, total, above what has filled) and/or limit
        price (currency/share), with the same checks as a new order on what remains.

        Returns
        -------
        dict
            The order's record; ``amend_reject`` (str) is set and nothing changed when refused
            (not found, not open, quantity not above the filled quantity, buying power or
            position short of the new remainder).
        """
        oid = self.by_client_id.get(client_order_id)
        if oid is None:
            return {"status": "not_found", "client_order_id": client_order_id,
                    "amend_reject": "order not found"}
        o = self.orders[oid]
        if o.status not in ("accepted", "partially_filled"):
            return {**o.to_dict(), "amend_reject": f"order is {o.status}"}
        new_q = o.quantity if quantity is None else float(quantity)
        new_lim = o.limit_price if limit_price is None else float(limit_price)
        if new_q <= o.filled_quantity + 1e-9:
            return {**o.to_dict(), "amend_reject": "quantity not above the filled quantity"}
        self._open_interest(o, -(o.quantity - o.filled_quantity))
        trial = VenueOrder(o.broker_order_id, o.client_order_id, o.instrument, o.side,
                           new_q - o.filled_quantity, o.order_type, new_lim, o.time_in_force)
        reason = self._precheck(trial)
        if reason:
            self._open_interest(o, o.quantity - o.filled_quantity)
            return {**o.to_dict(), "amend_reject": reason}
        o.quantity, o.limit_price = new_q, new_lim
        if o.side == "buy":
            o.reserve_price = self._reserve_price(o)
        self._open_interest(o, o.quantity - o.filled_quantity)
        o.updated_ts_ms = self.clock()
        return o.to_dict()

    def get_order_by_client_id(self, client_order_id: str) -> dict | None:
        """The venue's record of an order, or None if it never arrived.

        Raises
        ------
        ServerError
            Injected ``query_error`` (a read: the caller may retry it).
        """
        if self._fault("query_error"):
            raise ServerError("500 internal error")
        oid = self.by_client_id.get(client_order_id)
        return None if oid is None else self.orders[oid].to_dict()

    def get_account(self) -> dict:
        """cash, equity (cash + positions at last close), buying_power; currency."""
        equity = self.account.cash + sum(q * self._last_price(i)
                                         for i, q in self.account.positions.items() if q)
        return {"cash": self.account.cash, "equity": equity, "buying_power": self._buying_power()}

    def get_positions(self) -> dict:
        """instrument -> {qty (shares), avg_entry_price, market_value} for non-zero holdings."""
        out = {}
        for inst, q in sorted(self.account.positions.items()):
            if q:
                px = self._last_price(inst)
                out[inst] = {"qty": q, "avg_entry_price": self.account.cost[inst] / q,
                             "market_value": q * px}
        return out

    def get_fills(self, after: int = 0) -> list[dict]:
        """Fills with ``seq > after``, in order (each has a unique exec_id)."""
        return self.fills[after:]

    # ---- matching ------------------------------------------------------------------------
    def run_session(self, t: int, phase: str = "all") -> list[dict]:
        """Match open orders against session ``t``'s bar.

        Parameters
        ----------
        t : int
            Session index in the panel.
        phase : {"all", "open", "close"}
            ``open``: the opening auction: orders other than ``cls`` match (market orders at the
            open when ``fill_at="open"``); unfilled ``opg`` and ``ioc`` orders expire.
            ``close``: the closing auction: ``cls`` orders (and market orders when
            ``fill_at="close"``) match at the close; then every non-``gtc`` order expires.
            ``all``: both, as one step. Orders placed between the two phases (e.g. buys funded
            by sells filled at the open) trade at the close. Participation is counted over the
            whole session.

        Returns
        -------
        list of dict
            The fills (exec_id, client_order_id, broker_order_id, instrument, side, quantity,
            price, commission, ts_ms, seq).
        """
        if phase not in ("all", "open", "close"):
            raise BrokerError(f"phase must be all, open or close, got {phase!r}")
        self._t = t
        p = self.panel
        day_ms = int(p.sessions[t].astype("datetime64[ms]").astype(np.int64))
        if getattr(self, "_used_t", None) != t:
            self._used_t, self._used = t, {}
        new: list[dict] = []
        for o in sorted(self.orders.values(), key=lambda x: x.broker_order_id):
            if o.status not in ("accepted", "partially_filled"):
                continue
            at_close = o.time_in_force == "cls" or (o.order_type == "market"
                                                    and self.fill_at == "close")
            if (phase == "open" and at_close) or (phase == "close" and not at_close
                                                   and o.order_type == "market"):
                continue
            col = self._col[o.instrument]
            bar = (p.open[t, col], p.high[t, col], p.low[t, col], p.close[t, col], p.volume[t, col])
            if np.isfinite(bar[3]) and bar[4] > 0:
                fill = self._match(o, bar, self._used, day_ms, at_close or phase == "close")
                if fill:
                    new.append(fill)
            if o.status in ("accepted", "partially_filled"):
                ends = (o.time_in_force in ("opg", "ioc") if phase == "open"
                        else o.time_in_force != "gtc")
                if ends:
                    self._close(o, "expired", day_ms + (SESSION_OPEN_MS if phase == "open"
                                                        else SESSION_END_MS))
        return new

    def _match(self, o: VenueOrder, bar, used: dict, day_ms: int, at_close: bool) -> dict | None:
        op, hi, lo, cl, vol = bar
        side = 1 if o.side == "buy" else -1
        ref = cl if at_close else op
        if o.order_type == "limit":
            lim = o.limit_price
            through = lo <= lim if side > 0 else hi >= lim
            if not through:
                return None
            ref = min(op, lim) if side > 0 else max(op, lim)
        cap = self.participation * vol - used.get(o.instrument, 0.0)
        qty = self.rules.round_quantity(min(o.quantity - o.filled_quantity, cap))
        if qty <= 0:
            return None
        price = float(self.slippage.price(float(ref), side, qty, float(vol)))
        if o.order_type == "limit":  # slippage never crosses the limit
            price = min(price, o.limit_price) if side > 0 else max(price, o.limit_price)
        value = float(self.rules.money(qty * price))
        fee = self.rules.fee(value, side < 0)
        acct = self.account
        if side > 0 and value + fee > acct.cash + 1e-9:
            qty = self.rules.max_affordable(acct.cash, price)
            if qty <= 0:
                return None
            value = float(self.rules.money(qty * price))
            fee = self.rules.fee(value, False)
        held = acct.positions.get(o.instrument, 0.0)
        # cash stays on the cent grid (round_cents): a statement balance, not a float drift
        if side > 0:
            acct.cash = float(self.rules.money(acct.cash - value - fee))
            acct.cost[o.instrument] = acct.cost.get(o.instrument, 0.0) + value
        else:
            acct.cash = float(self.rules.money(acct.cash + value - fee))
            acct.cost[o.instrument] = acct.cost.get(o.instrument, 0.0) * (held - qty) / held
        acct.positions[o.instrument] = held + side * qty
        used[o.instrument] = used.get(o.instrument, 0.0) + qty
        o.filled_quantity += qty
        self._open_interest(o, -qty)
        ts = day_ms + (SESSION_END_MS if at_close else SESSION_OPEN_MS)
        o.status = "filled" if o.filled_quantity >= o.quantity - 1e-9 else "partially_filled"
        o.updated_ts_ms = ts
        fill = {"seq": len(self.fills) + 1, "exec_id": f"simx-{next(self._exec):010d}",
                "client_order_id": o.client_order_id, "broker_order_id": o.broker_order_id,
                "instrument": o.instrument, "side": o.side, "quantity": qty, "price": price,
                "commission": fee, "ts_ms": ts, "order_status": o.status}
        self.fills.append(fill)
        return fill
