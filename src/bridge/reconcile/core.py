"""Reconciliation core: compare bridge's local state with a broker's snapshot (pure functions).

Nothing here does I/O: :func:`reconcile` takes two in-memory states and an injected timestamp and
returns a :class:`ReconciliationReport`; reading DuckDB, querying the broker and writing files are
the edges (:mod:`bridge.reconcile.local`, :mod:`bridge.reconcile.broker`,
:mod:`bridge.reconcile.run`).

Statuses
--------
Positions (one row per instrument held on either side):

- ``synced``: same quantity, average cost and market value within the tolerance;
- ``local_only``: bridge holds it, the broker does not;
- ``remote_only``: the broker holds it, bridge does not;
- ``qty_mismatch``: both hold it, the quantities differ (``qty_diff = remote - local``);
- ``drifted``: same quantity, average cost or market value beyond the tolerance;
- ``unknown``: the broker could not be queried (never read as flat).

Orders (by client order id): ``status_mismatch`` (status or filled quantity differ),
``unknown_to_bridge`` (the broker has an order bridge did not send), ``unknown_to_broker`` (bridge
sent it, the broker has no record). Fills (by exec_id): ``missing_local`` (the broker reports it,
bridge never recorded it), ``missing_remote`` (bridge recorded it, the broker does not report it),
``mismatch`` (same exec_id, different quantity, price or instrument). Account: ``cash_mismatch``.

Units: quantities in shares, prices currency/share, values and cash in the account currency,
times in epoch milliseconds (UTC).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

# order statuses bridge keeps locally that never reach a broker, or whose absence there is normal
_NEVER_SENT = frozenset({"DENIED"})
_ABSENT_OK = frozenset({"DENIED", "REJECTED"})  # a venue may refuse without keeping a record

POSITION_STATUSES = ("synced", "local_only", "remote_only", "qty_mismatch", "drifted", "unknown")
ORDER_STATUSES = ("status_mismatch", "unknown_to_bridge", "unknown_to_broker")
FILL_STATUSES = ("missing_local", "missing_remote", "mismatch")

ACTIONS = {
    ("position", "local_only"): "adopt broker quantity (0): close the local position",
    ("position", "remote_only"): "adopt broker position: open it locally",
    ("position", "qty_mismatch"): "adopt broker quantity",
    ("position", "drifted"): "adopt broker average cost",
    ("position", "unknown"): "retry: broker state unknown, nothing can be concluded",
    ("order", "status_mismatch"): "update order status from the broker",
    ("order", "unknown_to_bridge"): "investigate: order placed outside bridge (sync records it)",
    ("order", "unknown_to_broker"): "investigate: the broker never saw this order "
                                    "(close it as REJECTED not_found if it was never sent)",
    ("fill", "missing_local"): "import missing fill",
    ("fill", "missing_remote"): "investigate: bridge has a fill the broker does not report",
    ("fill", "mismatch"): "adopt broker fill",
    ("account", "cash_mismatch"): "adopt broker cash",
}
# what sync(broker -> local) can apply; the rest needs a human
SYNCABLE = frozenset({("position", "local_only"), ("position", "remote_only"),
                      ("position", "qty_mismatch"), ("position", "drifted"),
                      ("order", "status_mismatch"), ("order", "unknown_to_bridge"),
                      ("fill", "missing_local"), ("fill", "mismatch"),
                      ("account", "cash_mismatch")})


@dataclass(frozen=True)
class Tolerance:
    """When two numbers count as equal: ``|a - b| <= max(abs, rel * |reference|)``.

    Parameters
    ----------
    qty_abs : float
        Quantity, shares (fractional shares are compared to this absolute tolerance).
    cost_rel, cost_abs : float
        Average cost: relative (fraction) and absolute (currency/share).
    mv_rel, mv_abs : float
        Market value: relative and absolute (currency).
    cash_abs : float
        Cash, currency.
    price_abs : float
        Fill price, currency/share.
    """

    qty_abs: float = 1e-6
    cost_rel: float = 1e-4
    cost_abs: float = 0.005
    mv_rel: float = 1e-3
    mv_abs: float = 1.0
    cash_abs: float = 0.01
    price_abs: float = 1e-6

    @classmethod
    def of(cls, value: Tolerance | float | dict | None) -> Tolerance:
        """A Tolerance from itself, None (defaults), a dict of fields, or one relative number."""
        if value is None:
            return cls()
        if isinstance(value, Tolerance):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(cost_rel=float(value), mv_rel=float(value))


def _close(a: float | None, b: float | None, rel: float, abs_: float) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or \
            (isinstance(b, float) and math.isnan(b)):
        return True  # nothing to compare against: not evidence of drift
    return abs(a - b) <= max(abs_, rel * abs(b))


@dataclass
class LocalState:
    """bridge's side, as recorded in DuckDB.

    Parameters
    ----------
    positions : dict
        instrument -> (quantity, avg_cost, market_value or None). bridge stores no prices: the
        market value is quantity x a mark given by the caller (e.g. the data's last close), or
        None, in which case market values are not compared.
    orders : dict
        client_order_id -> record with at least ``status`` (bridge's upper-case OrderStatus),
        ``filled_quantity``, ``instrument``, ``side``, ``quantity``.
    fills : dict
        exec_id -> record with ``client_order_id``, ``instrument``, ``side``, ``quantity``,
        ``price``.
    cash : float or None
        Last recorded cash (None: never recorded).
    """

    positions: dict[str, tuple[float, float | None, float | None]] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)
    fills: dict[str, dict] = field(default_factory=dict)
    cash: float | None = None
    strategy_id: str | None = None
    mode: str = "paper"


@dataclass
class BrokerState:
    """The broker's side, broker-neutral (from :func:`~bridge.reconcile.broker.fetch_broker_state`).

    Parameters
    ----------
    positions : dict
        instrument -> (quantity, avg_cost, market_value).
    orders : dict
        client_order_id -> normalized record (``status`` mapped onto bridge's OrderStatus values,
        ``broker_status`` as the broker said it, ``filled_quantity``, ``instrument``, ``side``,
        ``quantity``, ``broker_order_id``, ``created_ts_ms``, ``raw``). Every order the broker
        reports, open and closed; :attr:`open_orders` keeps the open ones.
    fills : dict
        exec_id -> record (``client_order_id``, ``broker_order_id``, ``instrument``, ``side``,
        ``quantity``, ``price``, ``commission``, ``ts_ms``, ``raw``).
    account : dict
        ``cash``, ``equity``, ``buying_power`` ... as the broker reports them.
    fetched_ok : bool
        False when any query failed: then nothing else in the state means anything (in
        particular empty positions do NOT mean flat).
    error : str
        Why the fetch failed ("" when it did not).
    broker : str
        Executor name ("sim", "alpaca", "ib").
    account_id : str
    fetched_ts_ms : int
    orders_since_ms, fills_since_ms : int or None
        Start of the broker's history window (REST listings are paged and windowed): local orders
        or fills older than this are not flagged as missing at the broker. None: full history.
    """

    positions: dict[str, tuple[float, float | None, float | None]] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)
    fills: dict[str, dict] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)
    fetched_ok: bool = True
    error: str = ""
    broker: str = ""
    account_id: str = ""
    fetched_ts_ms: int = 0
    orders_since_ms: int | None = None
    fills_since_ms: int | None = None

    @property
    def open_orders(self) -> dict[str, dict]:
        """The orders still working at the broker."""
        return {k: r for k, r in self.orders.items()
                if r.get("status") in ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED",
                                       "PENDING_CANCEL", "PENDING_UPDATE")}

    @classmethod
    def failed(cls, error: str, broker: str = "", account_id: str = "",
               fetched_ts_ms: int = 0) -> BrokerState:
        return cls(fetched_ok=False, error=error, broker=broker, account_id=account_id,
                   fetched_ts_ms=fetched_ts_ms)


@dataclass(frozen=True)
class PositionDiff:
    instrument: str
    status: str
    local_qty: float | None
    remote_qty: float | None
    qty_diff: float | None          # remote - local, shares
    local_avg_cost: float | None
    remote_avg_cost: float | None
    avg_cost_diff: float | None     # remote - local, currency/share
    local_market_value: float | None
    remote_market_value: float | None
    market_value_diff: float | None
    action: str

    @property
    def key(self) -> str:
        return f"position:{self.instrument}"


@dataclass(frozen=True)
class OrderDiff:
    client_order_id: str
    status: str
    instrument: str | None
    side: str | None
    quantity: float | None
    local_status: str | None
    remote_status: str | None
    local_filled: float | None
    remote_filled: float | None
    broker_order_id: str | None
    action: str

    @property
    def key(self) -> str:
        return f"order:{self.client_order_id}"


@dataclass(frozen=True)
class FillDiff:
    exec_id: str
    status: str
    client_order_id: str | None
    instrument: str | None
    side: str | None
    local_quantity: float | None
    remote_quantity: float | None
    local_price: float | None
    remote_price: float | None
    ts_ms: int | None
    action: str

    @property
    def key(self) -> str:
        return f"fill:{self.exec_id}"


@dataclass(frozen=True)
class AccountDiff:
    status: str
    local_cash: float | None
    remote_cash: float | None
    cash_diff: float | None
    action: str

    @property
    def key(self) -> str:
        return "account:cash"


@dataclass
class ReconciliationReport:
    """The result of one reconciliation.

    ``positions`` holds every instrument (synced ones included); ``orders``, ``fills`` and
    ``account`` hold only differences. ``remote`` carries the broker's records the differences
    refer to (what :func:`bridge.reconcile.sync.sync` writes locally); it is not part of
    :meth:`to_json`'s summary but is kept in memory.
    """

    report_id: str
    timestamp_ms: int
    broker: str
    account: str
    strategy_id: str | None
    mode: str
    fetched_ok: bool
    error: str
    positions: list[PositionDiff]
    orders: list[OrderDiff]
    fills: list[FillDiff]
    account_diffs: list[AccountDiff]
    tolerance: Tolerance
    remote: BrokerState | None = None
    files: list = field(default_factory=list)   # written by run_reconciliation / write_report

    @property
    def remote_status(self) -> str:
        """``"ok"`` or ``"unknown"`` (the broker could not be queried)."""
        return "ok" if self.fetched_ok else "unknown"

    @property
    def timestamp(self) -> str:
        """ISO-8601 UTC of :attr:`timestamp_ms`."""
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=timezone.utc).isoformat()

    def differences(self) -> list:
        """Every difference (synced positions excluded), positions, orders, fills, account."""
        return ([p for p in self.positions if p.status != "synced"] + list(self.orders)
                + list(self.fills) + list(self.account_diffs))

    @property
    def is_synced(self) -> bool:
        """True only when the broker answered and no difference was found."""
        return self.fetched_ok and not self.differences()

    @property
    def summary(self) -> dict[str, int]:
        """Counts by section and status (every status listed, zeros included)."""
        out = {f"positions_{s}": 0 for s in POSITION_STATUSES}
        out |= {f"orders_{s}": 0 for s in ORDER_STATUSES}
        out |= {f"fills_{s}": 0 for s in FILL_STATUSES}
        out["account_cash_mismatch"] = 0
        for p in self.positions:
            out[f"positions_{p.status}"] += 1
        for o in self.orders:
            out[f"orders_{o.status}"] += 1
        for f in self.fills:
            out[f"fills_{f.status}"] += 1
        out["account_cash_mismatch"] = len(self.account_diffs)
        out["differences"] = len(self.differences())
        out["syncable"] = sum(1 for d in self.differences() if _kind(d) in SYNCABLE)
        return out

    def header(self) -> dict:
        return {"report_id": self.report_id, "timestamp": self.timestamp,
                "timestamp_ms": self.timestamp_ms, "broker": self.broker, "account": self.account,
                "strategy_id": self.strategy_id, "mode": self.mode, "is_synced": self.is_synced,
                "remote": self.remote_status, "error": self.error,
                "tolerance": asdict(self.tolerance), "summary": self.summary}

    def to_dict(self) -> dict:
        return {**self.header(),
                "positions": [asdict(p) | {"key": p.key} for p in self.positions],
                "orders": [asdict(o) | {"key": o.key} for o in self.orders],
                "fills": [asdict(f) | {"key": f.key} for f in self.fills],
                "account_diffs": [asdict(a) | {"key": a.key} for a in self.account_diffs]}

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (header, summary and every row)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, default=_json_default)

    def to_frames(self, backend: str = "polars") -> dict:
        """Frames ``positions``, ``orders``, ``fills``, ``account`` (fixed columns, even empty).

        Parameters
        ----------
        backend : {"polars", "pandas"}
        """
        import polars as pl

        frames = {}
        for name, rows, cls in (("positions", self.positions, PositionDiff),
                                ("orders", self.orders, OrderDiff),
                                ("fills", self.fills, FillDiff),
                                ("account", self.account_diffs, AccountDiff)):
            schema = _SCHEMAS[cls]
            cols = {c: [getattr(r, c) for r in rows] for c in schema}
            cols = {"report_id": [self.report_id] * len(rows), **cols,
                    "key": [r.key for r in rows]}
            full = {"report_id": pl.Utf8, **schema, "key": pl.Utf8}
            frames[name] = pl.DataFrame(cols, schema=full, strict=False)
        if backend == "pandas":
            return {k: v.to_pandas() for k, v in frames.items()}
        if backend != "polars":
            raise ValueError(f"backend must be 'polars' or 'pandas', got {backend!r}")
        return frames


def _json_default(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


def _kind(d) -> tuple[str, str]:
    section = {PositionDiff: "position", OrderDiff: "order", FillDiff: "fill",
               AccountDiff: "account"}[type(d)]
    return section, d.status


def _schemas() -> dict:
    import typing

    out = {}
    for cls in (PositionDiff, OrderDiff, FillDiff, AccountDiff):
        hints = typing.get_type_hints(cls)
        out[cls] = {n: (str if "str" in str(t) else int if "int" in str(t) else float)
                    for n, t in hints.items()}
    return out


class _LazySchemas(dict):
    """Polars dtypes per diff class, built on first use (keeps polars out of import time)."""

    def __missing__(self, cls):
        import polars as pl

        m = {str: pl.Utf8, int: pl.Int64, float: pl.Float64}
        for c, cols in _schemas().items():
            self[c] = {n: m[t] for n, t in cols.items()}
        return self[cls]


_SCHEMAS = _LazySchemas()


# ---- the comparison ------------------------------------------------------------------------
def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def compare_positions(local: dict, remote: dict, tol: Tolerance) -> list[PositionDiff]:
    """One :class:`PositionDiff` per instrument held on either side (sorted by instrument)."""
    out = []
    for inst in sorted(local.keys() | remote.keys()):
        lq, lc, lv = local.get(inst, (0.0, None, None))
        rq, rc, rv = remote.get(inst, (0.0, None, None))
        lq, rq = float(lq or 0.0), float(rq or 0.0)
        l_has, r_has = abs(lq) > tol.qty_abs, abs(rq) > tol.qty_abs
        if not l_has and not r_has:
            continue
        if l_has and not r_has:
            status = "local_only"
        elif r_has and not l_has:
            status = "remote_only"
        elif abs(rq - lq) > tol.qty_abs:
            status = "qty_mismatch"
        elif not (_close(lc, rc, tol.cost_rel, tol.cost_abs)
                  and _close(lv, rv, tol.mv_rel, tol.mv_abs)):
            status = "drifted"
        else:
            status = "synced"
        out.append(PositionDiff(inst, status, lq if l_has else None, rq if r_has else None,
                                rq - lq, lc, rc, _diff(lc, rc), lv, rv, _diff(lv, rv),
                                "" if status == "synced" else ACTIONS[("position", status)]))
    return out


def compare_orders(local: dict, remote: dict, tol: Tolerance,
                   since_ms: int | None = None) -> list[OrderDiff]:
    """Order differences by client order id (sorted)."""
    out = []
    for cid in sorted(local.keys() | remote.keys()):
        lo, ro = local.get(cid), remote.get(cid)
        if ro is None:
            if lo["status"] in _ABSENT_OK or (since_ms is not None
                                              and (lo.get("created_ts_ms") or 0) < since_ms):
                continue
            status = "unknown_to_broker"
        elif lo is None:
            status = "unknown_to_bridge"
        else:
            if lo["status"] in _NEVER_SENT:  # a denied order the broker knows: a real problem
                status = "status_mismatch"
            elif lo["status"] == ro["status"] and abs(float(lo.get("filled_quantity") or 0.0)
                                                      - float(ro.get("filled_quantity") or 0.0)) \
                    <= tol.qty_abs:
                continue
            else:
                status = "status_mismatch"
        ref = ro or lo
        out.append(OrderDiff(cid, status, ref.get("instrument"), ref.get("side"),
                             _f(ref.get("quantity")), lo["status"] if lo else None,
                             ro["status"] if ro else None,
                             _f(lo.get("filled_quantity")) if lo else None,
                             _f(ro.get("filled_quantity")) if ro else None,
                             (ro or {}).get("broker_order_id") or (lo or {}).get("broker_order_id"),
                             ACTIONS[("order", status)]))
    return out


def _f(x) -> float | None:
    return None if x is None else float(x)


def compare_fills(local: dict, remote: dict, tol: Tolerance,
                  since_ms: int | None = None) -> list[FillDiff]:
    """Fill differences by exec_id (sorted): missing either way, or the same id disagreeing."""
    out = []
    missing_local = remote.keys() - local.keys()
    missing_remote = local.keys() - remote.keys()
    both = local.keys() & remote.keys()
    for eid in missing_local:
        r = remote[eid]
        out.append(FillDiff(eid, "missing_local", r.get("client_order_id"), r.get("instrument"),
                            r.get("side"), None, _f(r.get("quantity")), None, _f(r.get("price")),
                            r.get("ts_ms"), ACTIONS[("fill", "missing_local")]))
    for eid in missing_remote:
        lf = local[eid]
        if since_ms is not None and (lf.get("ts_ms") or 0) < since_ms:
            continue
        out.append(FillDiff(eid, "missing_remote", lf.get("client_order_id"),
                            lf.get("instrument"), lf.get("side"), _f(lf.get("quantity")), None,
                            _f(lf.get("price")), None, lf.get("ts_ms"),
                            ACTIONS[("fill", "missing_remote")]))
    for eid in both:
        lf, r = local[eid], remote[eid]
        if (lf.get("instrument") == r.get("instrument") and lf.get("side") == r.get("side")
                and abs(float(lf["quantity"]) - float(r["quantity"])) <= tol.qty_abs
                and abs(float(lf["price"]) - float(r["price"])) <= tol.price_abs):
            continue
        out.append(FillDiff(eid, "mismatch", r.get("client_order_id"), r.get("instrument"),
                            r.get("side"), _f(lf.get("quantity")), _f(r.get("quantity")),
                            _f(lf.get("price")), _f(r.get("price")), r.get("ts_ms"),
                            ACTIONS[("fill", "mismatch")]))
    out.sort(key=lambda d: d.exec_id)
    return out


def compare_account(local_cash: float | None, remote: dict, tol: Tolerance) -> list[AccountDiff]:
    rc = remote.get("cash")
    if rc is None or local_cash is None:  # nothing recorded locally yet: the first run adopts it
        return []
    if abs(float(rc) - float(local_cash)) <= tol.cash_abs:
        return []
    return [AccountDiff("cash_mismatch", float(local_cash), float(rc),
                        float(rc) - float(local_cash), ACTIONS[("account", "cash_mismatch")])]


def report_id(header: dict, rows: dict) -> str:
    """Deterministic id: a hash of the report's content and timestamp."""
    blob = json.dumps({"h": header, "r": rows}, sort_keys=True, default=_json_default,
                      separators=(",", ":"))
    return "rec-" + hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()


def reconcile(local: LocalState, remote: BrokerState,
              tolerance: Tolerance | float | dict | None = None, *,
              timestamp_ms: int) -> ReconciliationReport:
    """Compare bridge's local state with the broker's (pure: no I/O, no clock).

    Parameters
    ----------
    local : LocalState
    remote : BrokerState
        When ``remote.fetched_ok`` is False every local position is reported ``unknown`` and
        orders, fills and cash are not compared: a failed query is never read as "flat".
    tolerance : Tolerance, float, dict or None
        A float is a relative tolerance on average cost and market value.
    timestamp_ms : int
        The report's time (injected clock), epoch ms.

    Returns
    -------
    ReconciliationReport
    """
    tol = Tolerance.of(tolerance)
    if not remote.fetched_ok:
        positions = [PositionDiff(i, "unknown", float(q), None, None, c, None, None, v, None,
                                  None, ACTIONS[("position", "unknown")])
                     for i, (q, c, v) in sorted(local.positions.items())]
        orders, fills, acct = [], [], []
    else:
        positions = compare_positions(local.positions, remote.positions, tol)
        orders = compare_orders(local.orders, remote.orders, tol, remote.orders_since_ms)
        fills = compare_fills(local.fills, remote.fills, tol, remote.fills_since_ms)
        acct = compare_account(local.cash, remote.account, tol)
    header = {"ts": int(timestamp_ms), "broker": remote.broker, "account": remote.account_id,
              "strategy_id": local.strategy_id, "mode": local.mode, "ok": remote.fetched_ok,
              "error": remote.error, "tol": asdict(tol)}
    rows = {"p": [asdict(p) for p in positions if p.status != "synced"]
            + [p.instrument for p in positions if p.status == "synced"],
            "o": [asdict(o) for o in orders], "f": [(f.exec_id, f.status) for f in fills],
            "a": [asdict(a) for a in acct]}
    return ReconciliationReport(report_id(header, rows), int(timestamp_ms), remote.broker,
                                remote.account_id, local.strategy_id, local.mode,
                                remote.fetched_ok, remote.error, positions, orders, fills, acct,
                                tol, remote)
