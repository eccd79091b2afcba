"""Execution events: small immutable records of what happened to orders, positions and risk.

Every event is one JSON object on one line (JSONL), the unit the outbox
(``bridge.execution.outbox``) persists and a reader replays. The vocabulary is the
execution-event set of the team's event stream (seed 003: order, position, stop/take-profit,
risk, funds, portfolio), plus three types the order state machine and the risk engine need (see
:class:`EventType`).

Example
-------
>>> ev = ExecutionEvent.new(EventType.ORDER_FILLED, ts_ms=1_282_334_400_000,
...                         client_order_id="c-1", instrument="AAPL", strategy_id="momentum_top50",
...                         payload={"exec_id": "x-1", "quantity": 100, "price": 250.5})
>>> ExecutionEvent.from_json(ev.to_json()) == ev
True
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bridge.errors import ValidationError

__all__ = ["SCHEMA_VERSION", "EventType", "ExecutionEvent"]

#: Version of the JSON line layout (key ``"v"``); bumped when a field changes meaning.
SCHEMA_VERSION = 1

_FIELDS = ("seq", "event_id", "type", "ts_ms", "client_order_id", "instrument", "strategy_id",
           "payload")


class EventType(StrEnum):
    """What happened. Values are the lower-case names, as written in the JSON lines.

    The first fourteen are the execution events of seed 003. Added here:

    - ``ORDER_DENIED``: our own risk engine refused the order before it left the process. It is
      not ``ORDER_REJECTED`` (the broker or venue refused it): the architecture keeps the two
      apart, and a denied order never emits ``ORDER_SUBMITTED``.
    - ``ORDER_EXPIRED``: the time in force ran out (e.g. a DAY order at the close); the order
      status table has EXPIRED and without this event it would have no record.
    - ``TRADING_STATE_CHANGED``: the risk engine's trading state moved between ACTIVE, REDUCING
      and HALTED (kill switch); an audit trail must show when and why orders stopped.
    """

    ORDER_SUBMITTED = "order_submitted"
    ORDER_ACCEPTED = "order_accepted"
    ORDER_REJECTED = "order_rejected"
    ORDER_FILLED = "order_filled"
    ORDER_PARTIALLY_FILLED = "order_partially_filled"
    ORDER_CANCELLED = "order_cancelled"
    POSITION_OPENED = "position_opened"
    POSITION_UPDATED = "position_updated"
    POSITION_CLOSED = "position_closed"
    STOP_LOSS_TRIGGERED = "stop_loss_triggered"
    TAKE_PROFIT_TRIGGERED = "take_profit_triggered"
    RISK_CHECK_FAILED = "risk_check_failed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PORTFOLIO_UPDATED = "portfolio_updated"
    ORDER_DENIED = "order_denied"
    ORDER_EXPIRED = "order_expired"
    TRADING_STATE_CHANGED = "trading_state_changed"


def _freeze(value: Any, path: str) -> Any:
    """A read-only copy of a JSON-compatible value: dicts -> MappingProxyType, lists -> tuples.

    Raises ``ValidationError`` (field ``payload``) on anything JSON cannot carry exactly: keys
    that are not strings, NaN/inf, sets, objects. Checking here, once, means ``to_json`` cannot
    fail later, after the event was accepted by the outbox.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("payload", "not_finite",
                                  f"{path} is {value!r}; JSON has no NaN or infinity")
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError("payload", "key_not_str",
                                      f"{path} has key {k!r} ({type(k).__name__}); JSON keys are "
                                      "strings")
            # plain scalars are kept as they are without building their path (the common case)
            kind = type(v)
            if kind in _PLAIN or (kind is float and math.isfinite(v)):
                out[k] = v
            else:
                out[k] = _freeze(v, f"{path}.{k}")
        return MappingProxyType(out)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{path}[{i}]") for i, v in enumerate(value))
    raise ValidationError("payload", "not_json",
                          f"{path} is a {type(value).__name__}; payload values must be None, "
                          "bool, int, float, str, list or dict")


#: exact types that ``_freeze`` returns unchanged without a look inside (subclasses take the
#: general path, which treats them the same)
_PLAIN = frozenset({str, int, bool, type(None)})


def _thaw(obj: Any) -> Any:
    # json.dumps only knows dict; the frozen payload nests MappingProxyType.
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# One canonical form (compact, sorted keys) for both the JSON line and the event id, so the same
# content always gives the same bytes and the same id. One encoder instance: json.dumps with
# options builds a new encoder per call, which costs about as much as the encoding itself.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                            allow_nan=False, default=_thaw)
_dumps = _ENCODER.encode
_str = json.encoder.encode_basestring  # a str as _ENCODER writes it (ensure_ascii=False)
# The event line is _dumps(event._as_dict()) written out field by field, for the outbox's hot
# path (about twice as fast): the keys in sorted order, each value encoded as _ENCODER encodes it
# (tests/test_outbox.py holds the two equal). to_json fills the slots in this order.
_LINE_KEYS = tuple(sorted(("v", *_FIELDS)))
_LINE = "{" + ",".join(f'"{k}":%s' for k in _LINE_KEYS) + "}"
_TYPE_JSON = {t: _str(t.value) for t in EventType}


def _opt_str(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _check_opt_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ValidationError(name, "not_str", f"{name} must be a str or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """One execution event, immutable.

    Parameters
    ----------
    seq : int
        Position in the outbox, assigned by :meth:`bridge.execution.outbox.Outbox.append`
        (1, 2, 3, ... without gaps). ``0`` means "not yet appended".
    event_id : str
        Stable identity of the event's content, the key a consumer deduplicates on.
        :meth:`new` derives it from the content (see there); pass your own when the source
        already has one (e.g. a broker's exec_id).
    type : EventType
        What happened (a plain string is converted).
    ts_ms : int
        When it happened, milliseconds since the Unix epoch, UTC.
    client_order_id : str or None
        The order the event is about, if any.
    instrument : str or None
        The instrument, e.g. ``"AAPL"`` or ``"600000.SH"``.
    strategy_id : str or None
        The strategy instance that owns the order or position.
    payload : mapping of str to JSON values
        Type-specific details (quantities in shares, prices in quote currency per share, fees in
        account currency, ...). Stored as a read-only ``MappingProxyType`` with nested lists
        turned into tuples, so an event cannot change after it was written; values must be JSON
        values (finite floats only).

    Raises
    ------
    bridge.errors.ValidationError
        A field has the wrong type (``field`` names it), the type is unknown, or the payload
        holds something JSON cannot carry.

    Notes
    -----
    Equality compares every field; the hash leaves out ``payload`` (a mapping is not hashable),
    which is enough because ``event_id`` already identifies the content.
    """

    seq: int
    event_id: str
    type: EventType
    ts_ms: int
    client_order_id: str | None = None
    instrument: str | None = None
    strategy_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise ValidationError("seq", "bad_seq", f"seq must be an int >= 0, got {self.seq!r}")
        if not isinstance(self.event_id, str) or not self.event_id:
            raise ValidationError("event_id", "empty",
                                  f"event_id must be a non-empty str, got {self.event_id!r}")
        if not isinstance(self.type, EventType):
            try:
                # frozen: the converted value has to be set past __setattr__
                object.__setattr__(self, "type", EventType(self.type))
            except ValueError:
                raise ValidationError("type", "unknown_event_type",
                                      f"{self.type!r} is not one of "
                                      f"{[t.value for t in EventType]}") from None
        if not isinstance(self.ts_ms, int) or isinstance(self.ts_ms, bool) or self.ts_ms < 0:
            raise ValidationError("ts_ms", "bad_timestamp",
                                  f"ts_ms must be an int of epoch milliseconds >= 0, got "
                                  f"{self.ts_ms!r}")
        _check_opt_str("client_order_id", self.client_order_id)
        _check_opt_str("instrument", self.instrument)
        _check_opt_str("strategy_id", self.strategy_id)
        payload = self.payload
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise ValidationError("payload", "not_mapping",
                                  f"payload must be a mapping, got {type(payload).__name__}")
        object.__setattr__(self, "payload", _freeze(payload, "payload"))

    @classmethod
    def new(cls, type: EventType | str, ts_ms: int, *, client_order_id: str | None = None,
            instrument: str | None = None, strategy_id: str | None = None,
            payload: Mapping[str, Any] | None = None,
            event_id: str | None = None) -> ExecutionEvent:
        """An event not yet appended (``seq=0``), its id derived from its content if not given.

        Parameters
        ----------
        type, ts_ms, client_order_id, instrument, strategy_id, payload
            As in the class. ``ts_ms`` in epoch milliseconds, UTC.
        event_id : str, optional
            Given id. Default: ``"ev-"`` + the first 20 hex digits (80 bits) of the SHA-256 of
            the canonical JSON of every field except ``seq``, so re-emitting the same event after a
            crash gives the same id and a consumer can drop the copy. Two events that really are
            distinct must then differ in content: put the natural key in the payload (``exec_id``
            of a fill, the order's status version, ...).

        Returns
        -------
        ExecutionEvent
        """
        ev = cls(0, event_id or "ev-pending", type, ts_ms, client_order_id, instrument,
                 strategy_id, payload if payload is not None else {})
        if event_id:
            return ev
        body = ev._as_dict()
        del body["seq"], body["event_id"]
        digest = hashlib.sha256(_dumps(body).encode("utf-8")).hexdigest()[:20]
        object.__setattr__(ev, "event_id", f"ev-{digest}")  # ev is still private to this call
        return ev

    def _as_dict(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "seq": self.seq, "event_id": self.event_id,
                "type": self.type.value, "ts_ms": self.ts_ms,
                "client_order_id": self.client_order_id, "instrument": self.instrument,
                "strategy_id": self.strategy_id, "payload": self.payload}

    def to_json(self, *, seq: int | None = None) -> str:
        """The event as one line of compact JSON, keys sorted, without the trailing newline.

        Parameters
        ----------
        seq : int, optional
            Write this seq instead of ``self.seq`` (the outbox stamps its seq this way without
            copying the event).

        Returns
        -------
        str
            E.g. ``{"client_order_id":"c-1","event_id":"ev-...","instrument":"AAPL",
            "payload":{...},"seq":7,"strategy_id":"s","ts_ms":1282334400000,
            "type":"order_filled","v":1}``. Strings are written as UTF-8 (not ``\\u`` escaped);
            JSON escapes control characters, so the line never contains a newline.
        """
        if seq is None:
            seq = self.seq
        elif type(seq) is not int:  # the encoder decides how (or whether) to write it
            return _dumps({**self._as_dict(), "seq": seq})
        # in the order of _LINE_KEYS; the payload's top level as a dict saves a _thaw call
        return _LINE % (_opt_str(self.client_order_id), _str(self.event_id),
                        _opt_str(self.instrument), _dumps(dict(self.payload)), int.__repr__(seq),
                        _opt_str(self.strategy_id), int.__repr__(self.ts_ms),
                        _TYPE_JSON[self.type], SCHEMA_VERSION)

    @classmethod
    def from_json(cls, line: str | bytes) -> ExecutionEvent:
        """Parse one line written by :meth:`to_json` (a trailing newline is allowed).

        Parameters
        ----------
        line : str or bytes
            One JSON object; bytes are decoded as UTF-8.

        Returns
        -------
        ExecutionEvent

        Raises
        ------
        bridge.errors.ValidationError
            Not JSON (reason ``not_json``), not an object, a newer schema version
            (``unsupported_version``), missing or unknown keys, or a field of the wrong type.
        """
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise ValidationError("line", "not_json", f"not a JSON line: {exc}") from None
        if not isinstance(obj, dict):
            raise ValidationError("line", "not_object",
                                  f"an event is a JSON object, got {type(obj).__name__}")
        version = obj.pop("v", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValidationError("v", "unsupported_version",
                                  f"event schema v{version!r}; this reader knows "
                                  f"v{SCHEMA_VERSION}")
        missing = [k for k in ("seq", "event_id", "type", "ts_ms") if k not in obj]
        unknown = sorted(set(obj) - set(_FIELDS))
        if missing or unknown:
            raise ValidationError("line", "bad_keys",
                                  f"missing keys {missing}, unknown keys {unknown}")
        return cls(**obj)
