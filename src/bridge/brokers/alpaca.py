"""AlpacaExecutor: bridge's Executor protocol over alpaca-py (``alpaca.trading.TradingClient``).

- Orders go through ``TradingClient`` (``paper=True`` by default; ``url_override`` for a proxy or
  the offline emulator :mod:`bridge.brokers.alpaca_emulator`), always with bridge's
  ``client_order_id``. Responses are taken raw (``raw_data=True``) so every payload is kept as the
  broker sent it, and each is also validated with alpaca-py's own models (``Order``, ``Position``,
  ``TradeAccount``, ``TradeUpdate``).
- alpaca-py retries 429/504 three times, 3 s apart, for every method, POST included. That is
  switched off here (``RESTClient._retry = 0``: its ``retry_attempts`` argument ignores 0, and
  ``TradingClient`` does not pass the argument on), so bridge's policy applies: reads and cancels
  retry (:func:`bridge.execution.retry.retry_reads`), a submit never does. requests has no default
  timeout; the session gets one (``timeout_s``).
- A submit without a clear answer (timeout, connection error, 429, 5xx) returns ``UNKNOWN``;
  :meth:`AlpacaExecutor.resolve` asks ``get_order_by_client_id`` and adopts what it finds. Only when
  Alpaca answers 404 (it never got the order) is the order re-sent, with the SAME id (Alpaca refuses a
  reused id with 422, so a second order cannot appear); never with a new id.
- Fills come from the ``trade_updates`` stream (``alpaca.trading.stream.TradingStream`` in a
  background thread) and are deduplicated by ``execution_id``; after a stream gap (or with the
  stream off) :meth:`AlpacaExecutor.flush` back-fills from ``GET /v2/account/activities/FILL``, so a
  fill missed while the stream was down is not lost.
- Credentials come from the arguments or ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``; they are
  kept only inside the alpaca-py objects, never logged, never put into results, raw payloads or
  events (:meth:`health` and ``repr`` do not show them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from typing import Any

from bridge.errors import ConfigError
from bridge.execution.contract import AmendResult, CancelResult, ExecResult, OrderCtx
from bridge.execution.orders import Fill, OrderStatus
from bridge.execution.retry import TransientError, is_transient, retry_reads

log = logging.getLogger("bridge.brokers.alpaca")

S = OrderStatus
#: Alpaca order status -> bridge's OrderStatus
ALPACA_STATUS: dict[str, OrderStatus] = {
    "new": S.ACCEPTED, "accepted": S.ACCEPTED, "pending_new": S.SUBMITTED,
    "accepted_for_bidding": S.ACCEPTED, "calculated": S.ACCEPTED, "done_for_day": S.ACCEPTED,
    "held": S.ACCEPTED, "suspended": S.ACCEPTED, "stopped": S.ACCEPTED,
    "partially_filled": S.PARTIALLY_FILLED, "filled": S.FILLED,
    "pending_cancel": S.PENDING_CANCEL, "pending_replace": S.PENDING_UPDATE,
    "canceled": S.CANCELED, "expired": S.EXPIRED, "rejected": S.REJECTED,
    # Alpaca's replace cancels the old order and places a new one
    "replaced": S.CANCELED,
}
#: Alpaca status -> the paper broker's vocabulary (what TradeRun reads from ``orders()``)
_VENUE = {S.ACCEPTED: "accepted", S.SUBMITTED: "accepted", S.PARTIALLY_FILLED: "partially_filled",
          S.FILLED: "filled", S.CANCELED: "canceled", S.EXPIRED: "expired",
          S.REJECTED: "rejected", S.PENDING_CANCEL: "accepted", S.PENDING_UPDATE: "accepted"}
_TERMINAL_ALPACA = {"filled", "canceled", "expired", "rejected", "replaced"}


class AlpacaTransportError(TransientError):
    """No HTTP answer (timeout, connection refused/reset): the outcome is unknown."""


class AlpacaHTTPError(Exception):
    """An HTTP error answer; ``status_code`` and the parsed body (Alpaca's code/message)."""

    def __init__(self, status_code: int, body: dict) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(f"HTTP {status_code}: {body.get('message', '')}")


def _ms(ts: str | None) -> int:
    if not ts:
        return 0
    from datetime import datetime
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def _f(x) -> float | None:
    return None if x is None else float(x)


class AlpacaExecutor:
    """Executor over Alpaca (paper by default) through alpaca-py.

    Parameters
    ----------
    api_key, secret_key : str, optional
        Default: ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` from the environment.
    paper : bool, default True
    url_override : str, optional
        REST base URL (e.g. the emulator's ``http://127.0.0.1:PORT``).
    stream_url : str, optional
        trade_updates websocket URL (default: alpaca-py's paper/live stream, or
        ``ws://<url_override host>/stream`` when ``url_override`` is set).
    use_stream : bool, default True
        False: no websocket, fills are polled from the account activities.
    timeout_s : float, default 10
        HTTP timeout of every request (connect and read), seconds.
    read_tries : int, default 3
        Attempts of a read or cancel (bridge's retry policy).
    clock : callable returning int ms, optional
    sleep : callable, optional
        Backoff sleep of the retries (tests pass a short one).
    """

    name = "alpaca-paper"

    def __init__(self, api_key: str | None = None, secret_key: str | None = None, *,
                 paper: bool = True, url_override: str | None = None,
                 stream_url: str | None = None, use_stream: bool = True, timeout_s: float = 10.0,
                 read_tries: int = 3, clock=None, sleep=None, backoff_s: float = 0.05) -> None:
        from alpaca.trading.client import TradingClient
        from requests import Session

        key = api_key or os.environ.get("APCA_API_KEY_ID")
        secret = secret_key or os.environ.get("APCA_API_SECRET_KEY")
        if not key or not secret:
            raise ConfigError("Alpaca credentials missing: pass api_key/secret_key or set "
                              "APCA_API_KEY_ID / APCA_API_SECRET_KEY")
        if not paper:
            self.name = "alpaca-live"
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.timeout_s = float(timeout_s)
        self._client = TradingClient(key, secret, paper=paper, raw_data=True,
                                     url_override=url_override)
        # bridge's retry policy, not alpaca-py's (which would re-POST a submit on 429/504)
        self._client._retry = 0
        self._client._retry_wait = 0
        timeout = self.timeout_s

        class _TimeoutSession(Session):
            def request(self, method, url, **kw):
                kw.setdefault("timeout", timeout)
                return super().request(method, url, **kw)

        self._client._session = _TimeoutSession()
        retry = dict(tries=read_tries, initial_s=backoff_s, max_s=max(backoff_s * 8, 0.1),
                     sleep=sleep)
        self._read = retry_reads(self._call, **retry)
        self._lock = threading.RLock()
        self._cid_of: dict[str, str] = {}        # alpaca order id -> bridge client_order_id
        self._alpaca_id: dict[str, str] = {}     # bridge client_order_id -> current alpaca id
        self._alias: dict[str, str] = {}         # replacement's client_order_id -> bridge's
        self._replaces: dict[str, int] = {}
        self._seen_exec: set[str] = set()
        self._updates: queue.Queue = queue.Queue()
        self.updates: list[dict] = []            # every trade update (raw), in arrival order
        self._last_activity: str | None = None
        self._seen_conns = -1
        self._gap = not use_stream               # back-fill needed on the next flush
        self._health = {"connection": "unknown", "last_ok_ms": None, "last_error": None,
                        "stream": "disabled" if not use_stream else "starting",
                        "stream_connects": 0, "stream_disconnects": 0,
                        "last_stream_msg_ms": None}
        self.counters = {"submit": 0, "unknown": 0, "resent": 0, "stream_fills": 0,
                         "backfilled_fills": 0, "duplicate_updates": 0}
        self._stream = None
        self._stream_thread = None
        self._closed = False
        if use_stream:
            self._start_stream(key, secret, paper, stream_url or (
                url_override.replace("http", "ws", 1).rstrip("/") + "/stream"
                if url_override else None))

    def __repr__(self) -> str:
        return f"AlpacaExecutor(name={self.name!r}, base_url={self._client._base_url!r})"

    # ---- transport -------------------------------------------------------------------------
    def _call(self, fn, *args):
        """One request through an alpaca-py ``TradingClient`` method (``fn(*args)``); raises
        AlpacaTransportError or AlpacaHTTPError (neither carries credentials)."""
        import requests
        from alpaca.common.exceptions import APIError

        try:
            out = fn(*args)
        except requests.exceptions.RequestException as exc:
            self._health.update(connection="down", last_error=type(exc).__name__)
            raise AlpacaTransportError(type(exc).__name__) from None
        except APIError as exc:
            try:
                body = json.loads(str(exc))
            except ValueError:
                body = None
            if not isinstance(body, dict):
                body = {"message": str(exc)[:200]}
            status = exc.status_code or 0
            self._health.update(connection="ok" if status < 500 and status != 429 else "degraded",
                                last_error=f"HTTP {status}", last_ok_ms=self.clock())
            raise AlpacaHTTPError(status, body) from None
        self._health.update(connection="ok", last_ok_ms=self.clock())
        return out

    def _get(self, fn, *args):
        """A read, retried by bridge's policy (429, 5xx, timeouts)."""
        return self._read(fn, *args)

    # ---- records ---------------------------------------------------------------------------
    def _remember(self, raw: dict, cid: str) -> None:
        with self._lock:
            self._cid_of[raw["id"]] = cid
            self._alpaca_id[cid] = raw["id"]

    def _bridge_cid(self, broker_cid: str) -> str:
        return self._alias.get(broker_cid, broker_cid)

    def _result(self, ctx: OrderCtx, t0: int, status: str, raw: dict,
                reason: str | None = None) -> ExecResult:
        now = self.clock()
        bid = raw.get("id") if status == "ACCEPTED" else None
        slip = None
        if status == "ACCEPTED" and ctx.px_intent and raw.get("filled_avg_price"):
            sign = 1 if ctx.side == "buy" else -1
            slip = sign * (float(raw["filled_avg_price"]) / ctx.px_intent - 1) * 1e4
        return ExecResult(client_order_id=ctx.client_order_id, status=status,
                          accepted=status == "ACCEPTED",
                          rejected=status in ("REJECTED", "DENIED"),
                          reject_reason=reason if status != "ACCEPTED" else None,
                          broker_order_id=bid, latency_ms=float(max(now - t0, 0)),
                          slippage_bps=slip, ts_ms=now, raw=dict(raw))

    def _from_order(self, ctx: OrderCtx, raw: dict, t0: int) -> ExecResult:
        from alpaca.trading.models import Order

        Order(**raw)  # the shape alpaca-py parses
        self._remember(raw, ctx.client_order_id)
        st = ALPACA_STATUS.get(raw["status"], S.ACCEPTED)
        if st == S.REJECTED:
            return self._result(ctx, t0, "REJECTED", raw, raw.get("reject_reason") or "rejected")
        return self._result(ctx, t0, "ACCEPTED", raw)

    # ---- Executor protocol -----------------------------------------------------------------
    def submit(self, ctx: OrderCtx) -> ExecResult:
        """Send once, never retried. No clear answer -> ``UNKNOWN`` (then :meth:`resolve`)."""
        from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

        self._check_open()
        t0 = self.clock()
        kw = dict(symbol=ctx.instrument, qty=ctx.quantity, side=ctx.side,
                  time_in_force=ctx.time_in_force, client_order_id=ctx.client_order_id)
        req = (LimitOrderRequest(limit_price=ctx.limit_price, **kw) if ctx.order_type == "limit"
               else MarketOrderRequest(**kw))
        self.counters["submit"] += 1
        try:
            raw = self._call(self._client.submit_order, req)
        except AlpacaTransportError as exc:
            self.counters["unknown"] += 1
            return self._result(ctx, t0, "UNKNOWN", {"error": str(exc)}, "timeout")
        except AlpacaHTTPError as exc:
            raw = {"http_status": exc.status_code, **exc.body}
            if is_transient(exc):   # 429 / 5xx: maybe processed (5xx), surely not (429): ask
                self.counters["unknown"] += 1
                return self._result(ctx, t0, "UNKNOWN", raw, f"http_{exc.status_code}")
            if exc.status_code == 422 and "unique" in str(exc.body.get("message", "")):
                return self._lookup(ctx, t0) or self._result(ctx, t0, "UNKNOWN", raw,
                                                             "duplicate_client_order_id")
            return self._result(ctx, t0, "REJECTED", raw,
                                exc.body.get("message") or f"http_{exc.status_code}")
        return self._from_order(ctx, raw, t0)

    def _lookup(self, ctx: OrderCtx, t0: int) -> ExecResult | None:
        """The broker's record of ``ctx`` (None: it has none); raises on a failed query."""
        try:
            raw = self._get(self._client.get_order_by_client_id, ctx.client_order_id)
        except AlpacaHTTPError as exc:
            if exc.status_code == 404:
                return None
            raise
        return self._from_order(ctx, raw, t0)

    def resolve(self, ctx: OrderCtx, max_resends: int = 3) -> ExecResult:
        """Settle an unknown submit by asking Alpaca by client order id.

        Found: its record. 404 (Alpaca never got it): re-sent with the SAME id. The query itself
        failing (after bridge's retries): ``UNKNOWN`` again, the order stays in flight.
        """
        t0 = self.clock()
        res = None
        for _ in range(max_resends + 1):
            try:
                found = self._lookup(ctx, t0)
            except (AlpacaTransportError, AlpacaHTTPError) as exc:
                return self._result(ctx, t0, "UNKNOWN", {"error": f"query failed: {exc}"},
                                    "query_failed")
            if found is not None:
                return found
            self.counters["resent"] += 1
            res = self.submit(ctx)
            if res.status != "UNKNOWN":
                return res
        return res

    def _alpaca_id_of(self, cid: str) -> str | None:
        aid = self._alpaca_id.get(cid)
        if aid is None:
            try:
                raw = self._get(self._client.get_order_by_client_id, cid)
            except AlpacaHTTPError as exc:
                if exc.status_code == 404:
                    return None
                raise
            self._remember(raw, cid)
            aid = raw["id"]
        return aid

    def cancel(self, client_order_id: str) -> CancelResult:
        """Cancel by bridge's id (retried: a cancel is idempotent). DONE when Alpaca shows the
        order canceled, PENDING while it is pending_cancel, REJECTED (too_late / not_found)."""
        t0 = self.clock()

        def out(status, reason=None, raw=None, bid=None):
            now = self.clock()
            return CancelResult(client_order_id=client_order_id, status=status, reason=reason,
                                broker_order_id=bid, latency_ms=float(max(now - t0, 0)),
                                ts_ms=now, raw=raw or {})
        try:
            aid = self._alpaca_id_of(client_order_id)
            if aid is None:
                return out("REJECTED", "not_found")
            refused = None
            try:
                self._read(self._client.cancel_order_by_id, aid)
            except AlpacaHTTPError as exc:
                if exc.status_code == 404:
                    return out("REJECTED", "not_found", {"http_status": 404, **exc.body}, aid)
                if exc.status_code != 422:
                    raise
                refused = {"http_status": 422, **exc.body}
            raw = self._get(self._client.get_order_by_id, aid)
        except (AlpacaTransportError, AlpacaHTTPError) as exc:
            return out("UNKNOWN", str(exc))
        st = raw["status"]
        if refused:
            raw = {**raw, "cancel_answer": refused}
        if st == "canceled":
            return out("DONE", None, raw, aid)
        if st in _TERMINAL_ALPACA:
            return out("REJECTED", "too_late", raw, aid)
        return out("PENDING", None, raw, aid)

    def amend(self, client_order_id: str, quantity: float | None = None,
              limit_price: float | None = None) -> AmendResult:
        """Alpaca's replace (PATCH): a new order replaces the old one. It gets a derived client
        order id; its fills and status are reported under bridge's ``client_order_id``. Not
        retried (a replace is not idempotent)."""
        t0 = self.clock()
        n = self._replaces.get(client_order_id, 0) + 1
        new_cid = f"{client_order_id}~r{n}"
        if len(new_cid) > 128:
            new_cid = hashlib.sha1(new_cid.encode()).hexdigest() + f"~r{n}"

        def out(status, reason=None, raw=None, bid=None):
            now = self.clock()
            return AmendResult(client_order_id=client_order_id, status=status, reason=reason,
                               broker_order_id=bid, latency_ms=float(max(now - t0, 0)),
                               ts_ms=now, raw=raw or {}, quantity=quantity,
                               limit_price=limit_price)
        body: dict[str, Any] = {"client_order_id": new_cid}
        if quantity is not None:
            body["qty"] = _num_str(quantity)
        if limit_price is not None:
            body["limit_price"] = _num_str(limit_price)
        try:
            aid = self._alpaca_id_of(client_order_id)
            if aid is None:
                return out("REJECTED", "not_found")
            self._replaces[client_order_id] = n
            self._alias[new_cid] = client_order_id
            if quantity is None or float(quantity).is_integer():  # alpaca-py's model: int qty
                from alpaca.trading.requests import ReplaceOrderRequest

                req = ReplaceOrderRequest(qty=None if quantity is None else int(quantity),
                                          limit_price=limit_price, client_order_id=new_cid)
                raw = self._call(self._client.replace_order_by_id, aid, req)
            else:
                raw = self._call(self._client.patch, f"/orders/{aid}", body)
        except AlpacaTransportError as exc:
            return out("UNKNOWN", str(exc))
        except AlpacaHTTPError as exc:
            raw = {"http_status": exc.status_code, **exc.body}
            if is_transient(exc):
                return out("UNKNOWN", f"http_{exc.status_code}", raw)
            return out("REJECTED", exc.body.get("message") or f"http_{exc.status_code}", raw)
        from alpaca.trading.models import Order

        Order(**raw)
        self._remember(raw, client_order_id)
        return out("DONE", None, raw, raw["id"])

    # ---- stream ----------------------------------------------------------------------------
    def _start_stream(self, key: str, secret: str, paper: bool, url: str | None) -> None:
        from alpaca.trading.stream import TradingStream

        h = self._health
        ex = self

        class _Stream(TradingStream):
            async def _start_ws(self):
                await super()._start_ws()
                h["stream"] = "connected"
                h["stream_connects"] += 1
                if h["stream_connects"] == 1 and ex.counters["submit"] == 0:
                    ex._seen_conns = 1   # listening before the first order: nothing missed

            async def close(self):
                if self._ws is not None:
                    h["stream"] = "disconnected"
                    h["stream_disconnects"] += 1
                await super().close()

        # websockets logs every frame at DEBUG, the authenticate frame (with the secret) too:
        # its client logs to a logger of ours that redacts that frame
        ws_log = logging.getLogger("bridge.brokers.alpaca.websocket")
        if not any(isinstance(f, _RedactAuthFrames) for f in ws_log.filters):
            ws_log.addFilter(_RedactAuthFrames())
        _RedactAuthFrames.secrets.add(secret)
        params = {"ping_interval": 10, "ping_timeout": 180, "max_queue": 1024, "logger": ws_log}
        self._stream = _Stream(key, secret, paper=paper, raw_data=True, url_override=url,
                               websocket_params=params)
        self._stream._reconnect_min_backoff = 0.05
        self._stream._reconnect_max_backoff = 2.0
        self._stream.subscribe_trade_updates(self._on_update)
        self._stream_thread = threading.Thread(target=self._stream.run, name="alpaca-stream",
                                               daemon=True)
        self._stream_thread.start()

    async def _on_update(self, msg: dict) -> None:
        self._health["last_stream_msg_ms"] = self.clock()
        self._updates.put(msg)

    def wait_stream(self, timeout_s: float = 5.0) -> bool:
        """Block until the stream is connected (True) or ``timeout_s`` passes (False)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self._health["stream"] == "connected":
                return True
            time.sleep(0.01)
        return False

    def _fill_from_update(self, msg: dict) -> Fill | None:
        from alpaca.trading.models import TradeUpdate

        data = msg.get("data") or {}
        TradeUpdate(**data)
        self.updates.append(data)
        if data.get("event") not in ("fill", "partial_fill"):
            return None
        o = data["order"]
        cid = self._bridge_cid(o["client_order_id"])
        return Fill(exec_id=str(data["execution_id"]), client_order_id=cid,
                    broker_order_id=o["id"], instrument=o["symbol"], side=o["side"],
                    quantity=float(data["qty"]), price=float(data["price"]), commission=0.0,
                    fees=0.0, ts_ms=_ms(data.get("timestamp")), currency="USD",
                    exchange="ALPACA", raw=data)

    def _activities(self, after: str | None):
        """FILL activities after the activity id ``after`` (None: from the first), oldest first,
        in pages of 100; yields (activity, Fill)."""
        while True:
            params = {"direction": "asc", "page_size": 100}
            if after:
                params["page_token"] = after
            # no TradingClient method for activities: RESTClient.get, same transport
            rows = self._get(self._client.get, "/account/activities/FILL", params)
            for a in rows or []:
                after = a["id"]
                cid = self._cid_of.get(a["order_id"])
                if cid is None:   # an order bridge did not send (or not seen yet): ask
                    try:
                        o = self._get(self._client.get_order_by_id, a["order_id"])
                        cid = self._bridge_cid(o["client_order_id"])
                    except AlpacaHTTPError:
                        cid = ""
                yield a, Fill(exec_id=a["id"].split("::", 1)[-1],
                              client_order_id=cid or a["order_id"], broker_order_id=a["order_id"],
                              instrument=a["symbol"], side=a["side"], quantity=float(a["qty"]),
                              price=float(a["price"]), commission=0.0, fees=0.0,
                              ts_ms=_ms(a["transaction_time"]), currency="USD",
                              exchange="ALPACA", raw=dict(a))
            if not rows or len(rows) < 100:
                return

    def _backfill(self) -> list[Fill]:
        """FILL activities after the last one seen (the flush cursor)."""
        out = []
        for a, f in self._activities(self._last_activity):
            self._last_activity = a["id"]
            out.append(f)
        return out

    def fills(self) -> list[dict]:
        """The broker's whole fill history (FILL activities), for reconciliation: records with
        exec_id, client_order_id (bridge's), broker_order_id, instrument, side, quantity, price,
        commission, ts_ms, raw. Raises on a failed query (never an empty history)."""
        return [{"exec_id": f.exec_id, "client_order_id": f.client_order_id,
                 "broker_order_id": f.broker_order_id, "instrument": f.instrument,
                 "side": f.side, "quantity": f.quantity, "price": f.price,
                 "commission": f.commission, "ts_ms": f.ts_ms, "raw": f.raw}
                for _, f in self._activities(None)]

    def flush(self, backfill: bool | None = None) -> list[Fill]:
        """Fills since the last flush (deduplicated by exec_id): the stream's, plus the account's
        FILL activities when the stream had a gap, is off, or ``backfill=True``."""
        fills: list[Fill] = []
        while True:
            try:
                msg = self._updates.get_nowait()
            except queue.Empty:
                break
            f = self._fill_from_update(msg)
            if f is None:
                continue
            if f.exec_id in self._seen_exec:
                self.counters["duplicate_updates"] += 1
                continue
            self._seen_exec.add(f.exec_id)
            self.counters["stream_fills"] += 1
            fills.append(f)
        h = self._health
        # a gap: stream off, down, or (re)connected since the last back-fill (Alpaca's stream
        # does not replay what was sent while we were not listening)
        conns = h["stream_connects"]
        gap = self._gap or h["stream"] != "connected" or conns != self._seen_conns
        if backfill or (backfill is None and gap):
            try:
                for f in self._backfill():
                    if f.exec_id not in self._seen_exec:
                        self._seen_exec.add(f.exec_id)
                        self.counters["backfilled_fills"] += 1
                        fills.append(f)
                self._seen_conns = conns
            except (AlpacaTransportError, AlpacaHTTPError) as exc:
                log.warning("fill back-fill failed (%s); retried on the next flush", exc)
        return fills

    # ---- reads -----------------------------------------------------------------------------
    def orders(self) -> dict[str, dict]:
        """Alpaca's orders by bridge's client order id, in the paper broker's record shape (plus
        ``alpaca_status``, ``bridge_status`` and ``raw``); a replaced order is represented by
        its latest replacement."""
        from alpaca.trading.requests import GetOrdersRequest

        out: dict[str, dict] = {}
        after = None
        while True:
            params = {"status": "all", "limit": 500, "direction": "asc"}
            if after:
                params["after"] = after
            rows = self._get(self._client.get_orders, GetOrdersRequest(**params))
            for r in rows:
                cid = self._bridge_cid(r["client_order_id"])
                if r["status"] == "replaced" and cid in out:
                    continue
                st = ALPACA_STATUS.get(r["status"], S.ACCEPTED)
                fq = float(r.get("filled_qty") or 0)
                venue = _VENUE.get(st, "accepted")
                if venue == "accepted" and fq > 0:
                    venue = "partially_filled"
                out[cid] = {"broker_order_id": r["id"], "client_order_id": cid,
                            "instrument": r["symbol"], "side": r["side"],
                            "quantity": float(r["qty"]), "order_type": r["type"],
                            "limit_price": _f(r.get("limit_price")),
                            "time_in_force": r["time_in_force"], "status": venue,
                            "filled_quantity": fq, "reject_reason": "",
                            "created_ts_ms": _ms(r["created_at"]),
                            "updated_ts_ms": _ms(r["updated_at"]),
                            "alpaca_status": r["status"], "bridge_status": str(st), "raw": r}
            if len(rows) < 500:
                return out
            from datetime import datetime
            after = datetime.fromisoformat(rows[-1]["submitted_at"].replace("Z", "+00:00"))

    def positions(self) -> dict:
        """symbol -> {qty (shares, signed), avg_entry_price, market_value, raw}."""
        from alpaca.trading.models import Position

        out = {}
        for p in self._get(self._client.get_all_positions):
            Position(**p)
            out[p["symbol"]] = {"qty": float(p["qty"]), "avg_entry_price": float(p["avg_entry_price"]),
                                "market_value": float(p.get("market_value") or 0.0), "raw": p}
        return out

    def account(self) -> dict:
        """cash, equity, buying_power (currency) and the raw TradeAccount payload."""
        from alpaca.trading.models import TradeAccount

        a = self._get(self._client.get_account)
        TradeAccount(**a)
        return {"cash": float(a["cash"]), "equity": float(a["equity"]),
                "buying_power": float(a["buying_power"]), "raw": a}

    def health(self, probe: bool = False) -> dict:
        """Connection status (last REST outcome), stream status, last heartbeat (epoch ms: the
        latest successful REST answer or stream message). ``probe`` first calls GET /v2/clock."""
        if probe:  # a failed probe is what the health record below reports (_call sets it)
            with contextlib.suppress(AlpacaTransportError, AlpacaHTTPError):
                self._call(self._client.get_clock)
        h = self._health
        beats = [x for x in (h["last_ok_ms"], h["last_stream_msg_ms"]) if x]
        return {"broker": self.name, "connection": h["connection"], "stream": h["stream"],
                "last_heartbeat_ms": max(beats) if beats else None,
                "last_error": h["last_error"], "stream_connects": h["stream_connects"],
                "stream_disconnects": h["stream_disconnects"]}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("AlpacaExecutor is closed")

    def close(self) -> None:
        """Stop the stream thread and close the HTTP session; idempotent."""
        if self._closed:
            return
        self._closed = True
        s = self._stream
        if s is not None and s._loop is not None and s._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(s.stop_ws(), s._loop).result(2)
                asyncio.run_coroutine_threadsafe(s.close(), s._loop).result(2)
            except Exception as exc:  # noqa: BLE001 - the loop may already be gone
                log.debug("stream already stopped: %r", exc)
        if self._stream_thread is not None:
            self._stream_thread.join(3)
        self._health["stream"] = "disabled" if s is None else "closed"
        self._client._session.close()


class _RedactAuthFrames(logging.Filter):
    """Replace a websocket log record that carries the authenticate frame (or any secret in use)
    by a fixed text, before any handler sees it."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = str(record.msg) + repr(record.args)
        except Exception:  # noqa: BLE001 - an unprintable record is dropped, not leaked
            return False
        if "authenticate" in text or any(s and s in text for s in self.secrets):
            record.msg, record.args = "[websocket frame redacted: authentication]", ()
        return True


def _num_str(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
