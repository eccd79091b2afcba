"""An offline Alpaca paper-trading endpoint: the subset of Alpaca's REST API and trade_updates
stream that bridge uses, backed by the embedded paper broker on real bars.

Served with aiohttp on 127.0.0.1 (one event loop; every broker call runs in it, so the paper
broker is never touched by two threads). The JSON shapes are the ones alpaca-py parses
(``alpaca.trading.models.Order``, ``Position``, ``TradeAccount``, ``TradeUpdate``).

REST (Alpaca): ``GET /v2/account``, ``GET /v2/clock``, ``GET /v2/positions``, ``POST /v2/orders``,
``GET /v2/orders`` (``status`` open/closed/all, ``limit`` <= 500, ``after``, ``direction``),
``GET /v2/orders:by_client_order_id``, ``GET /v2/orders/{id}``, ``DELETE /v2/orders/{id}``,
``PATCH /v2/orders/{id}`` (replace), ``GET /v2/account/activities/FILL``.
Errors use Alpaca's body ``{"code": int, "message": str}`` (403 insufficient buying power, 404,
422 not cancelable / duplicate client_order_id, 429, 5xx).

Stream (Alpaca): ``GET /stream`` websocket: ``authenticate`` -> ``authorization``, ``listen`` ->
``listening``, then ``trade_updates`` events new, partial_fill, fill, canceled, rejected,
expired, replaced (JSON text frames).

Emulator-only (namespaced, not Alpaca): ``POST /_emulator/advance?session=YYYY-MM-DD`` (the paper
broker trades that session and the updates are pushed), ``GET|POST /_emulator/faults``,
``POST /_emulator/drop_stream``, ``GET /_emulator/state``.

Faults (:class:`Faults`): per request kind (submit, read, cancel, replace) a probability for each
of ``delay_before`` (sleep past the client's timeout, never processed), ``delay_after`` (processed,
answer late), ``429`` and ``500`` (not processed), ``504_after`` (processed, then 504); plus one-shot
faults (``once``), stream ``duplicate`` / ``reorder`` probabilities, ``drop_stream`` and
``fill_after_cancel`` (the next cancels are taken (204) but only applied after the next session,
so the order fills after the cancel request).

Credentials: if the emulator is given a key pair it checks them (401 / unauthorized otherwise);
they are never logged or echoed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import WSMsgType, web

from bridge.brokers._loop import PaperVenueServer
from bridge.brokers.sim import PaperBroker

log = logging.getLogger("bridge.brokers.alpaca_emulator")

_NS = uuid.UUID("6f1c1d1e-5b1f-4c55-9a55-a1a1ca0e0001")
ACCOUNT_ID = str(uuid.uuid5(_NS, "account"))
KINDS = ("submit", "read", "cancel", "replace")
FAULTS = ("delay_before", "delay_after", "429", "500", "504_after")
#: PaperBroker status -> Alpaca status
_ALPACA_STATUS = {"accepted": "new", "partially_filled": "partially_filled", "filled": "filled",
                  "canceled": "canceled", "expired": "expired", "rejected": "rejected"}
_OPEN = ("accepted", "partially_filled")


def _iso(ms: int | float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _num(x: float) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


def _err(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


@dataclass
class Faults:
    """What to inject. ``p``: kind -> fault -> probability; ``once``: list of (kind, fault) taken
    first-come; ``delay_s``: how long a delay fault sleeps (set it past the client's timeout)."""

    p: dict = field(default_factory=dict)
    once: list = field(default_factory=list)
    delay_s: float = 1.0
    duplicate: float = 0.0
    reorder: float = 0.0
    fill_after_cancel: int = 0

    @classmethod
    def from_json(cls, d: dict) -> Faults:
        return cls(p={k: dict(v) for k, v in (d.get("p") or {}).items()},
                   once=[tuple(x) for x in d.get("once", [])], delay_s=float(d.get("delay_s", 1.0)),
                   duplicate=float(d.get("duplicate", 0.0)), reorder=float(d.get("reorder", 0.0)),
                   fill_after_cancel=int(d.get("fill_after_cancel", 0)))

    def to_json(self) -> dict:
        return {"p": self.p, "once": [list(x) for x in self.once], "delay_s": self.delay_s,
                "duplicate": self.duplicate, "reorder": self.reorder,
                "fill_after_cancel": self.fill_after_cancel}


@dataclass
class _Meta:
    """Alpaca-side facts the paper broker does not keep."""

    id: str
    submitted_ms: float
    status_override: str | None = None      # replaced, pending_cancel
    replaced_by: str | None = None
    replaces: str | None = None
    canceled_ms: int | None = None
    filled_value: float = 0.0
    filled_qty: float = 0.0


class AlpacaEmulator(PaperVenueServer):
    """The emulator: an aiohttp app over a :class:`PaperBroker`.

    Parameters
    ----------
    broker : PaperBroker
        The venue (its ``rules`` should be commission-free, as Alpaca is).
    start_session : str, optional
        The session the account "is in" before the first advance (prices for buying power).
    api_key, secret_key : str, optional
        When given, requests and the stream must present them.
    faults : Faults, optional
    seed : int
        Seed of the fault generator.
    """

    thread_name = "alpaca-emulator"

    def __init__(self, broker: PaperBroker, start_session: str | None = None,
                 api_key: str | None = None, secret_key: str | None = None,
                 faults: Faults | None = None, seed: int = 0) -> None:
        self.broker = broker
        if start_session is not None:
            broker._t = self._session_index(start_session)
        self._creds = (api_key, secret_key) if api_key else None
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.meta: dict[str, _Meta] = {}          # sim broker_order_id -> meta
        self.by_uuid: dict[str, str] = {}         # alpaca id -> sim broker_order_id
        self.activities: list[dict] = []
        self.sockets: set[web.WebSocketResponse] = set()
        self._held: list[dict] = []               # reorder: a message held back
        self._deferred: list[str] = []            # fill_after_cancel: sim ids to cancel later
        self._last_submit_ms = 0.0
        self.counters = {k: 0 for k in ("post_orders", "placed", "duplicate_cid", "rejected",
                                        "faults", "events", "sent", "stream_dropped")}
        self.injected: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.app = self._make_app()

    # ---- plumbing --------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_mw])
        r = app.router
        r.add_get("/v2/account", self.h_account)
        r.add_get("/v2/clock", self.h_clock)
        r.add_get("/v2/positions", self.h_positions)
        r.add_post("/v2/orders", self.h_submit)
        r.add_get("/v2/orders", self.h_list)
        r.add_get("/v2/orders:by_client_order_id", self.h_by_cid)
        r.add_get("/v2/orders/{id}", self.h_get)
        r.add_delete("/v2/orders/{id}", self.h_cancel)
        r.add_patch("/v2/orders/{id}", self.h_replace)
        r.add_get("/v2/account/activities/FILL", self.h_activities)
        r.add_get("/stream", self.h_stream)
        r.add_post("/_emulator/advance", self.h_advance)
        r.add_get("/_emulator/faults", self.h_faults)
        r.add_post("/_emulator/faults", self.h_faults)
        r.add_post("/_emulator/drop_stream", self.h_drop)
        r.add_get("/_emulator/state", self.h_state)
        return app

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler):
        if self._creds and request.path.startswith("/v2/"):
            got = (request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY"))
            if got != self._creds:
                return _err(401, 40110000, "request is not authorized")
        return await handler(request)

    async def _start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def drop_stream(self) -> int:
        return self.call(self._drop)

    def state(self) -> dict:
        async def _state():
            return self._state()
        return self.call(_state)

    # ---- faults ----------------------------------------------------------------------------
    def _fault(self, kind: str) -> str | None:
        f = self.faults
        for i, (k, name) in enumerate(f.once):
            if k == kind:
                del f.once[i]
                return self._count(kind, name)
        for name, p in (f.p.get(kind) or {}).items():
            if p and self.rng.random() < p:
                return self._count(kind, name)
        return None

    def _count(self, kind: str, name: str) -> str:
        self.counters["faults"] += 1
        key = f"{kind}:{name}"
        self.injected[key] = self.injected.get(key, 0) + 1
        return name

    async def _guarded(self, kind: str, work):
        """Run ``work()`` (sync, returns a Response) under the fault plan for ``kind``."""
        fault = self._fault(kind)
        if fault == "429":
            return _err(429, 42910000, "rate limit exceeded")
        if fault == "500":
            return _err(500, 50010000, "internal server error")
        if fault == "delay_before":
            await asyncio.sleep(self.faults.delay_s)
            return _err(504, 50410000, "gateway timeout")
        resp = work()
        if fault == "delay_after":
            await asyncio.sleep(self.faults.delay_s)
        elif fault == "504_after":
            return _err(504, 50410000, "gateway timeout")
        return resp

    # ---- shapes ----------------------------------------------------------------------------
    def _order_json(self, sim_id: str, status: str | None = None,
                    filled_qty: float | None = None, filled_value: float | None = None) -> dict:
        o = self.broker.orders[sim_id]
        m = self.meta[sim_id]
        st = status or m.status_override or _ALPACA_STATUS[o.status]
        fq = m.filled_qty if filled_qty is None else filled_qty
        fv = m.filled_value if filled_value is None else filled_value
        sub = _iso(m.submitted_ms)
        upd = _iso(max(o.updated_ts_ms, m.submitted_ms))
        return {
            "id": m.id, "client_order_id": o.client_order_id, "created_at": sub,
            "updated_at": upd, "submitted_at": sub,
            "filled_at": upd if st == "filled" else None,
            "expired_at": upd if st == "expired" else None, "expires_at": None,
            "canceled_at": _iso(m.canceled_ms) if st == "canceled" and m.canceled_ms else
            (upd if st == "canceled" else None),
            "failed_at": sub if st == "rejected" else None,
            "replaced_at": upd if st == "replaced" else None,
            "replaced_by": m.replaced_by, "replaces": m.replaces,
            "asset_id": str(uuid.uuid5(_NS, "asset:" + o.instrument)), "symbol": o.instrument,
            "asset_class": "us_equity", "notional": None, "qty": _num(o.quantity),
            "filled_qty": _num(fq), "filled_avg_price": (repr(fv / fq) if fq else None),
            "order_class": "simple", "order_type": o.order_type, "type": o.order_type,
            "side": o.side, "position_intent": "buy_to_open" if o.side == "buy" else "sell_to_close",
            "time_in_force": o.time_in_force,
            "limit_price": None if o.limit_price is None else _num(o.limit_price),
            "stop_price": None, "status": st, "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None,
        }

    def _now_ms(self) -> float:
        return time.time() * 1000

    # ---- stream ----------------------------------------------------------------------------
    async def _emit(self, event: str, sim_id: str, extra: dict | None = None,
                    order: dict | None = None) -> None:
        self.counters["events"] += 1
        data = {"event": event, "order": order or self._order_json(sim_id),
                "timestamp": _iso(self._now_ms()), **(extra or {})}
        msg = {"stream": "trade_updates", "data": data}
        f = self.faults
        if self._held:
            out = [msg, self._held.pop()]
        elif f.reorder and self.rng.random() < f.reorder:
            self._count("stream", "reorder")
            self._held.append(msg)
            return
        else:
            out = [msg]
        for m in list(out):
            if f.duplicate and self.rng.random() < f.duplicate:
                self._count("stream", "duplicate")
                out.append(m)
        for m in out:
            await self._send(m)

    async def _flush_held(self) -> None:
        while self._held:
            await self._send(self._held.pop())

    async def _send(self, msg: dict) -> None:
        text = json.dumps(msg)
        for ws in list(self.sockets):
            try:
                await ws.send_str(text)
                self.counters["sent"] += 1
            except (ConnectionError, RuntimeError):
                self.sockets.discard(ws)

    async def h_stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        authed = False
        async for m in ws:
            if m.type != WSMsgType.TEXT and m.type != WSMsgType.BINARY:
                break
            try:
                req = json.loads(m.data)
            except ValueError:
                await ws.send_str(json.dumps({"stream": "error", "data": {"msg": "bad json"}}))
                continue
            action, data = req.get("action"), req.get("data") or {}
            if action in ("authenticate", "auth"):
                ok = (self._creds is None
                      or (data.get("key_id"), data.get("secret_key")) == self._creds)
                authed = ok
                await ws.send_str(json.dumps({"stream": "authorization", "data": {
                    "status": "authorized" if ok else "unauthorized", "action": "authenticate"}}))
                if not ok:
                    break
            elif action == "listen" and authed:
                streams = [s for s in data.get("streams", []) if s == "trade_updates"]
                if streams:
                    self.sockets.add(ws)
                else:
                    self.sockets.discard(ws)
                await ws.send_str(json.dumps({"stream": "listening",
                                              "data": {"streams": streams}}))
        self.sockets.discard(ws)
        return ws

    async def _drop(self) -> int:
        n = len(self.sockets)
        for ws in list(self.sockets):
            self.sockets.discard(ws)
            await ws.close()
        self.counters["stream_dropped"] += n
        return n

    async def h_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": await self._drop()})

    # ---- REST ------------------------------------------------------------------------------
    async def h_account(self, request: web.Request) -> web.Response:
        def work():
            a = self.broker.get_account()
            mv = a["equity"] - a["cash"]
            return web.json_response({
                "id": ACCOUNT_ID, "account_number": "PA0EMULATOR", "status": "ACTIVE",
                "crypto_status": "INACTIVE", "currency": "USD",
                "buying_power": repr(a["buying_power"]), "regt_buying_power": repr(a["buying_power"]),
                "daytrading_buying_power": "0", "non_marginable_buying_power": repr(a["buying_power"]),
                "cash": repr(a["cash"]), "accrued_fees": "0", "portfolio_value": repr(a["equity"]),
                "pattern_day_trader": False, "trading_blocked": False, "transfers_blocked": False,
                "account_blocked": False, "created_at": "2020-01-01T00:00:00Z",
                "trade_suspended_by_user": False, "multiplier": "1", "shorting_enabled": False,
                "equity": repr(a["equity"]), "last_equity": repr(a["equity"]),
                "long_market_value": repr(mv), "short_market_value": "0", "initial_margin": "0",
                "maintenance_margin": "0", "last_maintenance_margin": "0", "sma": "0",
                "daytrade_count": 0})
        return await self._guarded("read", work)

    async def h_clock(self, request: web.Request) -> web.Response:
        now = _iso(self._now_ms())
        return web.json_response({"timestamp": now, "is_open": True, "next_open": now,
                                  "next_close": now})

    async def h_positions(self, request: web.Request) -> web.Response:
        def work():
            out = []
            for sym, p in self.broker.get_positions().items():
                q = p["qty"]
                out.append({
                    "asset_id": str(uuid.uuid5(_NS, "asset:" + sym)), "symbol": sym,
                    "exchange": "NYSE", "asset_class": "us_equity", "asset_marginable": False,
                    "avg_entry_price": repr(p["avg_entry_price"]), "qty": _num(q),
                    "qty_available": _num(q), "side": "long" if q > 0 else "short",
                    "market_value": repr(p["market_value"]),
                    "cost_basis": repr(p["avg_entry_price"] * q),
                    "unrealized_pl": repr(p["market_value"] - p["avg_entry_price"] * q),
                    "current_price": repr(p["market_value"] / q)})
            return web.json_response(out)
        return await self._guarded("read", work)

    async def h_submit(self, request: web.Request) -> web.Response:
        self.counters["post_orders"] += 1
        try:
            body = await request.json()
        except ValueError:
            return _err(400, 40010000, "invalid body")
        return await self._guarded("submit", lambda: self._place(body))

    def _place(self, body: dict, replaces: str | None = None) -> web.Response:
        cid = body.get("client_order_id") or str(uuid.uuid4())
        if len(cid) > 128:
            return _err(422, 40010000, "client_order_id must be no more than 128 characters")
        if cid in self.broker.by_client_id:
            self.counters["duplicate_cid"] += 1
            return _err(422, 40010001, "client_order_id must be unique")
        try:
            qty = float(body["qty"])
            lim = None if body.get("limit_price") is None else float(body["limit_price"])
            typ, side, tif = body.get("type", "market"), body["side"], body.get("time_in_force", "day")
            sym = body["symbol"]
        except (KeyError, TypeError, ValueError):
            return _err(422, 40010000, "invalid order request")
        if typ not in ("market", "limit") or side not in ("buy", "sell"):
            return _err(422, 40010000, f"unsupported order type/side {typ}/{side}")
        rec = self.broker._place(cid, sym, side, qty, typ, lim, tif)
        sim_id = rec["broker_order_id"]
        now = max(self._now_ms(), self._last_submit_ms + 0.01)   # unique, increasing submitted_at
        self._last_submit_ms = now
        m = _Meta(id=str(uuid.uuid5(_NS, sim_id)), submitted_ms=now, replaces=replaces)
        self.meta[sim_id], self.by_uuid[m.id] = m, sim_id
        if rec["status"] == "rejected":
            self.counters["rejected"] += 1
            reason = rec["reject_reason"]
            if "buying power" in reason:
                return _err(403, 40310000, "insufficient buying power")
            if "qty" in reason:
                return _err(403, 40310000, f"insufficient qty available for order (requested: {_num(qty)})")
            return _err(422, 40010000, reason)
        self.counters["placed"] += 1
        asyncio.get_running_loop().create_task(self._emit("new", sim_id))
        return web.json_response(self._order_json(sim_id))

    def _find(self, alpaca_id: str) -> str | None:
        return self.by_uuid.get(alpaca_id)

    async def h_list(self, request: web.Request) -> web.Response:
        q = request.query

        def work():
            status = q.get("status", "open")
            limit = min(int(q.get("limit", 50)), 500)
            after = q.get("after")
            after_ms = (datetime.fromisoformat(after.replace("Z", "+00:00")).timestamp() * 1000
                        if after else None)
            rows = []
            for sim_id, m in self.meta.items():
                o = self.broker.orders[sim_id]
                is_open = o.status in _OPEN and m.status_override != "replaced"
                if (status == "open" and not is_open) or (status == "closed" and is_open):
                    continue
                if after_ms is not None and m.submitted_ms <= after_ms + 0.005:
                    continue
                rows.append((m.submitted_ms, sim_id))
            rows.sort(reverse=q.get("direction", "desc") == "desc")
            return web.json_response([self._order_json(s) for _, s in rows[:limit]])
        return await self._guarded("read", work)

    async def h_by_cid(self, request: web.Request) -> web.Response:
        def work():
            sim_id = self.broker.by_client_id.get(request.query.get("client_order_id", ""))
            if sim_id is None or sim_id not in self.meta:
                return _err(404, 40410000, "order not found")
            return web.json_response(self._order_json(sim_id))
        return await self._guarded("read", work)

    async def h_get(self, request: web.Request) -> web.Response:
        def work():
            sim_id = self._find(request.match_info["id"])
            if sim_id is None:
                return _err(404, 40410000, "order not found")
            return web.json_response(self._order_json(sim_id))
        return await self._guarded("read", work)

    async def h_cancel(self, request: web.Request) -> web.Response:
        def work():
            sim_id = self._find(request.match_info["id"])
            if sim_id is None:
                return _err(404, 40410000, "order not found")
            o, m = self.broker.orders[sim_id], self.meta[sim_id]
            if o.status not in _OPEN or m.status_override == "replaced":
                st = m.status_override or _ALPACA_STATUS[o.status]
                return _err(422, 42210000, f'order is already in "{st}" state')
            if m.status_override == "pending_cancel":
                return web.Response(status=204)
            if self.faults.fill_after_cancel > 0:
                self.faults.fill_after_cancel -= 1
                self._count("cancel", "fill_after_cancel")
                m.status_override = "pending_cancel"
                self._deferred.append(sim_id)
                return web.Response(status=204)
            self.broker.cancel_order(o.client_order_id)
            m.canceled_ms = int(self._now_ms())
            asyncio.get_running_loop().create_task(self._emit("canceled", sim_id))
            return web.Response(status=204)
        return await self._guarded("cancel", work)

    async def h_replace(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}

        def work():
            sim_id = self._find(request.match_info["id"])
            if sim_id is None:
                return _err(404, 40410000, "order not found")
            o, m = self.broker.orders[sim_id], self.meta[sim_id]
            if o.status not in _OPEN or m.status_override is not None:
                st = m.status_override or _ALPACA_STATUS[o.status]
                return _err(422, 42210000, f'order is already in "{st}" state')
            new_cid = body.get("client_order_id") or str(uuid.uuid4())
            if new_cid in self.broker.by_client_id:
                return _err(422, 40010001, "client_order_id must be unique")
            new = {"symbol": o.instrument, "side": o.side, "type": o.order_type,
                   "qty": body.get("qty") or (o.quantity - o.filled_quantity),
                   "limit_price": body.get("limit_price") or o.limit_price,
                   "time_in_force": body.get("time_in_force") or o.time_in_force,
                   "client_order_id": new_cid}
            self.broker.cancel_order(o.client_order_id)   # frees the buying power it reserved
            resp = self._place(new, replaces=m.id)
            if resp.status != 200:
                return resp
            new_sim = self.broker.by_client_id[new_cid]
            m.status_override, m.replaced_by = "replaced", self.meta[new_sim].id
            asyncio.get_running_loop().create_task(self._emit("replaced", sim_id))
            return resp
        return await self._guarded("replace", work)

    async def h_activities(self, request: web.Request) -> web.Response:
        def work():
            rows = self.activities
            token = request.query.get("page_token")
            if token:
                idx = next((i for i, a in enumerate(rows) if a["id"] == token), None)
                rows = rows[idx + 1:] if idx is not None else rows
            if request.query.get("direction", "desc") == "desc":
                rows = rows[::-1]
            size = min(int(request.query.get("page_size", 100)), 100)
            return web.json_response(rows[:size])
        return await self._guarded("read", work)

    # ---- emulator-only ----------------------------------------------------------------------
    async def _advance(self, session: str, phase: str = "all") -> int:
        t = self._session_index(session)
        before = {sid: o.status for sid, o in self.broker.orders.items() if o.status in _OPEN}
        fills = self.broker.run_session(t, phase)
        n = 0
        for f in fills:
            sim_id = f["broker_order_id"]
            m = self.meta[sim_id]
            m.filled_qty += f["quantity"]
            m.filled_value += f["quantity"] * f["price"]
            exec_id = str(uuid.uuid5(_NS, f["exec_id"]))
            st = f["order_status"]
            order = self._order_json(sim_id, status=_ALPACA_STATUS[st])
            pos = self.broker.account.positions.get(f["instrument"], 0.0)
            self.activities.append({
                "id": f"{f['ts_ms']:013d}::{exec_id}", "activity_type": "FILL",
                "transaction_time": _iso(f["ts_ms"]), "type": "fill" if st == "filled"
                else "partial_fill", "price": repr(f["price"]), "qty": _num(f["quantity"]),
                "side": f["side"], "symbol": f["instrument"],
                "leaves_qty": _num(self.broker.orders[sim_id].quantity - m.filled_qty),
                "order_id": m.id, "cum_qty": _num(m.filled_qty), "order_status": order["status"]})
            await self._emit("fill" if st == "filled" else "partial_fill", sim_id, {
                "execution_id": exec_id, "price": repr(f["price"]), "qty": _num(f["quantity"]),
                "position_qty": _num(pos), "timestamp": _iso(f["ts_ms"])}, order=order)
            n += 1
        for sim_id in self._deferred:   # cancels taken before the session, applied after it
            o, m = self.broker.orders[sim_id], self.meta[sim_id]
            m.status_override = None
            if o.status in _OPEN:
                self.broker.cancel_order(o.client_order_id)
                m.canceled_ms = int(self._now_ms())
                await self._emit("canceled", sim_id)
                n += 1
        self._deferred.clear()
        for sim_id, was in before.items():
            o = self.broker.orders[sim_id]
            if o.status == "expired" and self.meta[sim_id].status_override != "replaced":
                await self._emit("expired", sim_id)
                n += 1
        await self._flush_held()
        return n

    async def h_advance(self, request: web.Request) -> web.Response:
        try:
            n = await self._advance(request.query["session"], request.query.get("phase", "all"))
        except KeyError as exc:
            return _err(422, 40010000, str(exc))
        return web.json_response({"session": request.query["session"], "events": n})

    async def h_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            self.faults = Faults.from_json(await request.json())
        return web.json_response(self.faults.to_json())

    def _state(self) -> dict:
        return {"counters": dict(self.counters), "injected": dict(self.injected),
                "orders": len(self.broker.orders), "sockets": len(self.sockets),
                "positions": self.broker.get_positions(), "account": self.broker.get_account()}

    async def h_state(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())


def make_emulator(data_dir: str | Path = "data", cash: float = 100_000.0,
                  start: str = "2010-08-02", end: str = "2010-12-31", instruments=None,
                  participation: float = 0.1, **kw) -> AlpacaEmulator:
    """An emulator over the real bars in ``data_dir`` (commission-free US rules, as Alpaca)."""
    from bridge.market.data import Panel, load_bars
    from bridge.market.rules import US

    bars = load_bars(Path(data_dir), start=start, end=end, instruments=instruments)
    panel = Panel.from_bars(bars)
    broker = PaperBroker(panel, cash=cash, rules=US.with_(commission_bps=0, min_commission=0),
                         fill_at="open", participation=participation,
                         clock=lambda: int(time.time() * 1000))
    return AlpacaEmulator(broker, start_session=str(panel.sessions[0]), **kw)


def serve(port: int = 8765, data_dir: str | Path = "data", cash: float = 100_000.0,
          start: str = "2010-08-02", end: str = "2010-12-31") -> None:
    """Serve on 127.0.0.1:``port`` until interrupted (``bridge emulate alpaca --port``)."""
    emu = make_emulator(data_dir, cash, start, end)
    emu.start(port)
    print(f"alpaca emulator on {emu.url} (stream {emu.stream_url}); "
          f"advance: POST {emu.url}/_emulator/advance?session=YYYY-MM-DD", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C is how a user stops `bridge emulate alpaca`
        print("stopping", flush=True)
    finally:
        emu.stop()
