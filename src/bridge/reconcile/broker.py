"""The broker's side of reconciliation: what an executor must provide, and one fetch of it.

Any executor that has ``positions()``, ``account()``, ``orders()`` and a fills source can be
reconciled (:class:`ReconcilableExecutor`). :func:`fetch_broker_state` queries all four and
returns a broker-neutral :class:`~bridge.reconcile.core.BrokerState`; if ANY query fails, the
state is ``fetched_ok=False`` with the error, never an empty ("flat") book.

What an adapter must provide
----------------------------
- ``name``: the broker's name (``"sim"``, ``"alpaca"``, ``"ib"``), written in the report.
- ``positions() -> {instrument: {"qty", "avg_entry_price", "market_value"}}`` for non-zero
  holdings (Alpaca: ``TradingClient.get_all_positions()``: ``symbol``, ``qty``,
  ``avg_entry_price``, ``market_value``, strings to convert; IB: ``ib.positions()`` with
  ``avgCost`` per share, and ``portfolio()`` for ``marketValue``).
- ``account() -> {"cash", "equity", "buying_power", ...}`` (Alpaca: ``get_account()``; IB:
  ``accountSummary()`` TotalCashValue / NetLiquidation); optionally ``"account_id"``.
- ``orders() -> {client_order_id: record}`` with ``status`` (the broker's own word: Alpaca's
  ``new``, ``partially_filled``, ``filled``, ``canceled``, ``expired``, ``rejected``, ``replaced``
  ... mapped here by :data:`BROKER_STATUS`), ``filled_quantity`` (or ``filled_qty``),
  ``instrument`` (or ``symbol``), ``side``, ``quantity`` (or ``qty``), ``broker_order_id`` (or
  ``id``), ``created_ts_ms``. Every order the broker still reports, open AND closed (Alpaca:
  ``get_orders(GetOrdersRequest(status="all", after=...))``, paged; IB: ``trades()`` of the
  session plus ``reqCompletedOrders``), so that "bridge sent it, the broker never saw it" is not
  confused with "closed". If the listing is windowed, set ``orders_since_ms``.
- fills, one of: ``fills() -> list[record]`` on the executor, or ``executor.broker.get_fills(0)``
  (the embedded paper broker). Each record has ``exec_id`` (Alpaca: the FILL activity ``id`` of
  ``/v2/account/activities``, or the trade_update ``execution_id``; IB: ``execution.execId``),
  ``client_order_id``, ``broker_order_id``, ``instrument``, ``side``, ``quantity``, ``price``,
  ``commission``, ``ts_ms``. If the history is windowed, set ``fills_since_ms``. The list must
  be the broker's history, not "new since the last call": an incremental reader (a stream, or
  ``AlpacaExecutor.flush``'s back-fill cursor) cannot show what bridge missed.

``AlpacaExecutor`` (:mod:`bridge.brokers.alpaca`) and ``IBExecutor`` (:mod:`bridge.brokers.ib`)
provide ``positions()``, ``account()``, ``orders()`` and ``fills()`` in these shapes (their
order records carry ``bridge_status``, used as is).

Limitation of the embedded paper broker: it lives in memory, in the process that created it. A
reconciliation therefore compares a DuckDB file with the PaperBroker object of the same process
(the test and the demo run the paper loop first); there is no paper broker to reconnect to later.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from bridge.reconcile.core import BrokerState

# broker status words -> bridge's OrderStatus values (paper broker and Alpaca; IB's in comments)
BROKER_STATUS = {
    # embedded paper broker and Alpaca
    "accepted": "ACCEPTED", "new": "ACCEPTED", "partially_filled": "PARTIALLY_FILLED",
    "filled": "FILLED", "canceled": "CANCELED", "cancelled": "CANCELED", "expired": "EXPIRED",
    "rejected": "REJECTED", "pending_new": "SUBMITTED", "accepted_for_bidding": "ACCEPTED",
    "pending_cancel": "PENDING_CANCEL", "pending_replace": "PENDING_UPDATE",
    "replaced": "CANCELED", "done_for_day": "EXPIRED", "stopped": "ACCEPTED",
    "suspended": "ACCEPTED", "calculated": "ACCEPTED", "held": "ACCEPTED",
    # Interactive Brokers (ib_async OrderStatus.status)
    "PendingSubmit": "SUBMITTED", "PreSubmitted": "ACCEPTED", "Submitted": "ACCEPTED",
    "PendingCancel": "PENDING_CANCEL", "ApiCancelled": "CANCELED", "Cancelled": "CANCELED",
    "Filled": "FILLED", "Inactive": "REJECTED",
}


@runtime_checkable
class ReconcilableExecutor(Protocol):
    """What reconciliation needs from an executor (see the module docstring for the records)."""

    name: str

    def positions(self) -> dict[str, dict]: ...

    def account(self) -> dict[str, Any]: ...

    def orders(self) -> dict[str, dict]: ...


def _get(rec: dict, *names, default=None):
    for n in names:
        if rec.get(n) is not None:
            return rec[n]
    return default


def normalize_order(cid: str, rec: dict) -> dict:
    """A broker's order record in bridge's words (the raw record is kept under ``raw``).

    Raises
    ------
    ValueError
        An unknown broker status (mapping it silently could hide a real state).
    """
    word = str(rec.get("alpaca_status") or rec.get("status"))
    if rec.get("bridge_status"):  # the adapter already mapped it (AlpacaExecutor.orders)
        status = str(rec["bridge_status"])
    elif word in BROKER_STATUS or word.upper() in BROKER_STATUS.values():
        status = BROKER_STATUS.get(word, word.upper())
    else:
        raise ValueError(f"unknown broker order status {word!r} of {cid}")
    filled = _get(rec, "filled_quantity", "filled_qty", default=0.0)
    return {"client_order_id": cid, "status": status, "broker_status": word,
            "filled_quantity": float(filled),
            "instrument": _str(_get(rec, "instrument", "symbol")),
            "side": str(rec.get("side") or ""),
            "quantity": float(_get(rec, "quantity", "qty", default=0.0)),
            "broker_order_id": _get(rec, "broker_order_id", "id"),
            "created_ts_ms": _get(rec, "created_ts_ms"),
            "updated_ts_ms": _get(rec, "updated_ts_ms"),
            "order_type": rec.get("order_type"), "limit_price": rec.get("limit_price"),
            "time_in_force": rec.get("time_in_force"), "raw": dict(rec)}


def normalize_fill(rec: dict) -> dict:
    return {"exec_id": str(rec["exec_id"]), "client_order_id": rec.get("client_order_id"),
            "broker_order_id": rec.get("broker_order_id"),
            "instrument": _str(rec.get("instrument")),
            "side": rec.get("side"), "quantity": float(rec["quantity"]),
            "price": float(rec["price"]), "commission": float(rec.get("commission") or 0.0),
            "fees": float(rec.get("fees") or 0.0), "ts_ms": rec.get("ts_ms"),
            "currency": rec.get("currency"), "exchange": rec.get("exchange"), "raw": dict(rec)}


def _fills_source(executor):
    if callable(getattr(executor, "fills", None)):
        return executor.fills
    broker = getattr(executor, "broker", None)
    if callable(getattr(broker, "get_fills", None)):
        return lambda: broker.get_fills(0)
    raise TypeError(f"{type(executor).__name__} has no fills source: give it fills() "
                    "(see bridge.reconcile.broker)")


def fetch_broker_state(executor, clock=None, account_id: str | None = None,
                       fills=None, retry: bool = True, sleep=None) -> BrokerState:
    """Query the broker once for positions, account, orders and fills.

    Parameters
    ----------
    executor : ReconcilableExecutor
    clock : callable returning int ms, optional
        Stamps ``fetched_ts_ms`` (default: the executor's clock, else 0).
    account_id : str, optional
        Written in the report (default: the account's ``account_id`` / ``id``, else the
        executor's name).
    fills : callable returning a list of fill records, optional
        Overrides the executor's fills source.
    retry : bool
        Retry each read on transient errors (network, timeout, 429, 5xx) with bridge's read
        policy (:func:`bridge.execution.retry.retry_reads`: 3 tries, backoff with jitter).
    sleep : callable, optional
        Backoff sleep of the retries (a no-op in tests and simulated time).

    Returns
    -------
    BrokerState
        ``fetched_ok=False`` with the error if any query failed (the broker's state is then
        unknown, NOT empty).

    Raises
    ------
    TypeError
        The executor does not provide what reconciliation needs (a programming error, not a
        broker failure).
    """
    clock = clock or getattr(executor, "clock", None) or (lambda: 0)
    name = getattr(executor, "name", type(executor).__name__)
    for meth in ("positions", "account", "orders"):
        if not callable(getattr(executor, meth, None)):
            raise TypeError(f"{type(executor).__name__} has no {meth}(): not reconcilable")
    get_fills = fills or _fills_source(executor)
    ts = int(clock())
    reads = [executor.positions, executor.account, executor.orders, get_fills]
    if retry:
        from bridge.execution.retry import retry_reads

        reads = [retry_reads(f, sleep=sleep) for f in reads]
    try:
        raw_pos = reads[0]()
        acct = dict(reads[1]())
        raw_orders = reads[2]()
        raw_fills = list(reads[3]())
        positions = {str(i): (float(_get(p, "qty", "quantity")),
                              _opt(_get(p, "avg_entry_price", "avg_cost")),
                              _opt(p.get("market_value")))
                     for i, p in raw_pos.items()}
        orders = {cid: normalize_order(cid, r) for cid, r in raw_orders.items()}
        fills_by_id = {}
        for r in raw_fills:
            f = normalize_fill(r)
            fills_by_id[f["exec_id"]] = f
    except Exception as exc:  # noqa: BLE001 - any failure makes the remote side unknown
        return BrokerState.failed(f"{type(exc).__name__}: {exc}", name,
                                  account_id or name, ts)
    return BrokerState(positions=positions, orders=orders, fills=fills_by_id, account=acct,
                       fetched_ok=True, error="", broker=name,
                       account_id=account_id or _account_id(acct, name),
                       fetched_ts_ms=ts)


def _account_id(acct: dict, default: str) -> str:
    raw = acct.get("raw") if isinstance(acct.get("raw"), dict) else {}
    return str(acct.get("account_id") or acct.get("account_number") or raw.get("account_number")
               or default)


def _str(x) -> str | None:
    return None if x is None else str(x)


def _opt(x) -> float | None:
    return None if x is None else float(x)
