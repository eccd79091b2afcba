"""The executor contract, version 1: what goes into an executor and what comes back.

Every executor (preview, sim, alpaca, ib, qmt) takes an :class:`OrderCtx` and answers with an
:class:`ExecResult`, :class:`CancelResult` or :class:`AmendResult`; :class:`Executor` is the one
protocol. The field names come from the A2 executor plan (shared seed 001: ``OrderCtx`` with
``ts_ms``, ``event_ts_ms``, ``regime``, ``scenario``, ``tick_size``, ``step_size``,
``guard_reason``, ``warmup``, ``consistency``, ``costs_bps``; ``ExecResult`` with
``accepted/rejected``, ``reject_reason``, ``latency_ms``, ``slippage_bps``, ``rounding_applied``).
The JSON Schema of the models, :func:`executor_contract_v1`, is published as
``docs/executor_contract_v1.json``; regenerate it (and the tables in ``docs/executor_contract.md``)
with :func:`write_docs` (the command is in :data:`REGENERATE`).

Units: quantities in shares, prices in quote currency per share, times in epoch milliseconds
(UTC), latencies in ms, costs and slippage in basis points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

CONTRACT_ID = "executor_contract/v1"
#: relative tolerance of the grid checks: |x / step - round(x / step)| <= GRID_TOL
GRID_TOL = 1e-9

_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _off_grid(x: float, step: float) -> bool:
    # Measured in steps, so the tolerance means the same for 0.01 ticks and 100-share lots.
    k = x / step
    return abs(k - round(k)) > GRID_TOL


def _if_then(prop: str, value: Any, then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {prop: {"const": value}}, "required": [prop]}, "then": then}


def _schema_extra(rules: list[dict[str, Any]]):
    # The schema is read outside Python: its description is the docstring's summary paragraph
    # (the numpydoc body stays in Python), and the cross-field rules JSON Schema can say go in
    # allOf.
    def extra(schema: dict[str, Any], cls: type) -> None:
        doc = (cls.__doc__ or "").strip()
        schema["description"] = " ".join(doc.split("\n\n", 1)[0].split())
        if rules:
            schema["allOf"] = rules

    return extra


class OrderCtx(BaseModel):
    """An order intent as sent to an executor, with the decision context it came from.

    Fields are ordered so the instrument's grid (``tick_size``, ``step_size``) is read before
    the quantity and price checked against it.

    Parameters
    ----------
    client_order_id : str
        Our id, the idempotency key (see :func:`bridge.execution.client_order_id`); 1..128
        characters (Alpaca's limit).
    instrument : str
    side : {"buy", "sell"}
    tick_size : float
        Price grid of the instrument, currency per share, > 0 (US 0.01).
    step_size : float
        Quantity grid, shares, > 0: the trade unit (US 1, A-share 100; 1e-6 for fractional).
    order_type : {"market", "limit"}
    quantity : float
        Shares, > 0 and a multiple of ``step_size`` (within ``GRID_TOL`` steps).
    limit_price : float or None
        Currency per share on the ``tick_size`` grid; required for limit orders, must be None for
        market orders.
    time_in_force : {"day", "gtc", "ioc", "opg", "cls"}, default "day"
    decision_snapshot_id : str
        The DecisionSnapshot the order comes from.
    strategy_id : str
    ts_ms : int
        When the order was intended (epoch ms, UTC).
    event_ts_ms : int
        The market event that triggered it (bar close, quote), epoch ms; ``ts_ms - event_ts_ms``
        is the decision latency.
    regime, scenario : str or None
        The strategy mode and scenario the decision was taken under (seed 001, StrategyMode).
    guard_reason : str or None
        Why an upstream guard is active (None: no guard); an executor denies while it is set.
    warmup : bool, default False
        True while the signal is still warming up; an executor denies such orders.
    consistency : float or None
        Signal consistency in [0, 1]; executors may throttle below a threshold.
    costs_bps : float or None
        Expected all-in cost used by the decision, bps of the traded value.
    px_intent : float or None
        Decision / reference price, currency per share, > 0; the base of ``slippage_bps``.

    Raises
    ------
    pydantic.ValidationError
        With ``loc`` naming the field; custom types ``step_grid``, ``tick_grid``,
        ``limit_price_required``, ``limit_price_forbidden``.
    """

    model_config = ConfigDict(
        **_CONFIG,
        title="OrderCtx",
        json_schema_extra=_schema_extra([
            _if_then("order_type", "limit", {"required": ["limit_price"],
                                             "properties": {"limit_price": {"type": "number"}}}),
            _if_then("order_type", "market", {"properties": {"limit_price": {"type": "null"}}}),
        ]),
    )

    client_order_id: str = Field(min_length=1, max_length=128,
                                 description="our order id, the idempotency key")
    instrument: str = Field(min_length=1, description="instrument code")
    side: Literal["buy", "sell"] = Field(description="buy or sell")
    tick_size: float = Field(gt=0, description="price grid, currency/share")
    step_size: float = Field(gt=0, description="quantity grid (trade unit), shares")
    order_type: Literal["market", "limit"] = Field(description="market or limit")
    quantity: float = Field(gt=0, description="shares, a multiple of step_size")
    limit_price: float | None = Field(
        default=None, validate_default=True, gt=0,
        description="currency/share on the tick_size grid; required for limit, null for market")
    time_in_force: Literal["day", "gtc", "ioc", "opg", "cls"] = Field(
        default="day", description="day, gtc, ioc, opg (at the open), cls (at the close)")
    decision_snapshot_id: str = Field(min_length=1,
                                      description="DecisionSnapshot the order comes from")
    strategy_id: str = Field(min_length=1, description="strategy instance")
    ts_ms: int = Field(ge=0, description="intent time, epoch ms UTC")
    event_ts_ms: int = Field(ge=0, description="triggering market event time, epoch ms UTC")
    regime: str | None = Field(default=None, description="strategy mode / market regime")
    scenario: str | None = Field(default=None, description="scenario parameters in force")
    guard_reason: str | None = Field(
        default=None, description="active upstream guard (null: none); executors deny while set")
    warmup: bool = Field(default=False, description="signal still warming up; executors deny")
    consistency: float | None = Field(
        default=None, ge=0, le=1, description="signal consistency in [0, 1]; may throttle")
    costs_bps: float | None = Field(default=None,
                                    description="expected all-in cost, bps of traded value")
    px_intent: float | None = Field(default=None, gt=0,
                                    description="decision/reference price, currency/share")

    @field_validator("quantity")
    @classmethod
    def _quantity_on_step(cls, v: float, info: ValidationInfo) -> float:
        step = info.data.get("step_size")
        if step is not None and _off_grid(v, step):
            raise PydanticCustomError(
                "step_grid", "quantity {quantity} is not a multiple of step_size {step_size}",
                {"quantity": v, "step_size": step})
        return v

    @field_validator("limit_price")
    @classmethod
    def _limit_price_rules(cls, v: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("order_type")
        if kind == "limit" and v is None:
            raise PydanticCustomError("limit_price_required", "a limit order needs limit_price")
        if kind == "market" and v is not None:
            raise PydanticCustomError("limit_price_forbidden",
                                      "a market order takes no limit_price, got {limit_price}",
                                      {"limit_price": v})
        tick = info.data.get("tick_size")
        if v is not None and tick is not None and _off_grid(v, tick):
            raise PydanticCustomError(
                "tick_grid", "limit_price {limit_price} is not on the tick_size {tick_size} grid",
                {"limit_price": v, "tick_size": tick})
        return v


_RESULT_RULES = [
    _if_then("status", "ACCEPTED", {"properties": {
        "accepted": {"const": True}, "rejected": {"const": False},
        "reject_reason": {"type": "null"}}}),
    _if_then("status", "REJECTED", {"required": ["reject_reason"], "properties": {
        "accepted": {"const": False}, "rejected": {"const": True},
        "reject_reason": {"type": "string", "minLength": 1}}}),
    _if_then("status", "DENIED", {"required": ["reject_reason"], "properties": {
        "accepted": {"const": False}, "rejected": {"const": True},
        "reject_reason": {"type": "string", "minLength": 1}}}),
    _if_then("status", "UNKNOWN", {"properties": {
        "accepted": {"const": False}, "rejected": {"const": False}}}),
]


class ExecResult(BaseModel):
    """The executor's answer to one submit.

    Parameters
    ----------
    client_order_id : str
    status : {"ACCEPTED", "REJECTED", "DENIED", "UNKNOWN"}
        ACCEPTED: the venue took the order. REJECTED: the venue refused it. DENIED: the executor's
        own pre-checks refused it (warmup, guard_reason, risk), it was never sent. UNKNOWN: no
        answer (timeout, HTTP 5xx): the order stays SUBMITTED, in flight, until a broker query
        resolves it; the caller must not re-send.
    accepted, rejected : bool
        The seed's booleans, kept for its readers; must agree with ``status``: ACCEPTED ->
        (True, False), REJECTED/DENIED -> (False, True), UNKNOWN -> (False, False).
    reject_reason : str or None
        Reason code, required for REJECTED and DENIED, null for ACCEPTED; may describe an
        UNKNOWN (``"timeout"``).
    broker_order_id : str or None
        The broker's order id (seed 001's ``exchange_order_id``), when known.
    latency_ms : float
        Send to answer, ms, >= 0 (0 for a DENIED that never left).
    slippage_bps : float or None
        Signed, positive = worse than ``OrderCtx.px_intent``; None when no price is known yet.
    rounding_applied : float, default 0.0
        Price sent minus price asked, currency per share (tick alignment); part of slippage.
    ts_ms : int
        When the answer was received, epoch ms.
    raw : dict, default {}
        The broker's payload, JSON-serialisable.

    Raises
    ------
    pydantic.ValidationError
        ``loc`` names the field; ``status_mismatch`` when a boolean disagrees with ``status``,
        ``reason_required`` / ``reason_forbidden`` for ``reject_reason``.
    """

    model_config = ConfigDict(**_CONFIG, title="ExecResult",
                              json_schema_extra=_schema_extra(_RESULT_RULES))

    client_order_id: str = Field(min_length=1, max_length=128, description="our order id")
    status: Literal["ACCEPTED", "REJECTED", "DENIED", "UNKNOWN"] = Field(
        description="DENIED: refused by our pre-checks, never sent; UNKNOWN: no answer, in flight")
    accepted: bool = Field(description="status == ACCEPTED")
    rejected: bool = Field(description="status in (REJECTED, DENIED)")
    # validate_default: a REJECTED result that omits reject_reason must be refused too
    reject_reason: str | None = Field(
        default=None, validate_default=True,
        description="reason code; required for REJECTED/DENIED, null for ACCEPTED")
    broker_order_id: str | None = Field(
        default=None, description="broker's order id (seed: exchange_order_id)")
    latency_ms: float = Field(ge=0, description="send to answer, ms")
    slippage_bps: float | None = Field(default=None, description="signed, + = adverse, bps")
    rounding_applied: float = Field(default=0.0, description="price sent - asked, currency/share")
    ts_ms: int = Field(ge=0, description="answer received, epoch ms UTC")
    raw: dict[str, Any] = Field(default_factory=dict, description="broker payload (JSON)")

    @field_validator("accepted", "rejected")
    @classmethod
    def _agrees_with_status(cls, v: bool, info: ValidationInfo) -> bool:
        status = info.data.get("status")
        if status is None:
            return v
        expected = {"accepted": status == "ACCEPTED",
                    "rejected": status in ("REJECTED", "DENIED")}[info.field_name]
        if v != expected:
            raise PydanticCustomError("status_mismatch",
                                      "{field} must be {expected} when status is {status}",
                                      {"field": info.field_name, "expected": expected,
                                       "status": status})
        return v

    @field_validator("reject_reason", mode="after")
    @classmethod
    def _reason_rules(cls, v: str | None, info: ValidationInfo) -> str | None:
        status = info.data.get("status")
        if status in ("REJECTED", "DENIED") and not v:
            raise PydanticCustomError("reason_required", "a {status} result needs a reject_reason",
                                      {"status": status})
        if status == "ACCEPTED" and v is not None:
            raise PydanticCustomError("reason_forbidden", "an ACCEPTED result has no reject_reason")
        return v


_REQUEST_STATUS = Literal["PENDING", "DONE", "REJECTED", "UNKNOWN"]
_REQUEST_RULES = [_if_then("status", "REJECTED", {
    "required": ["reason"], "properties": {"reason": {"type": "string", "minLength": 1}}})]


class _RequestResult(BaseModel):
    model_config = ConfigDict(**_CONFIG, json_schema_extra=_schema_extra(_REQUEST_RULES))

    client_order_id: str = Field(min_length=1, max_length=128, description="our order id")
    status: _REQUEST_STATUS = Field(
        description="PENDING: venue took the request; DONE: done now; REJECTED: refused; "
                    "UNKNOWN: no answer")
    reason: str | None = Field(default=None, validate_default=True,
                               description="reason code; required for REJECTED")
    broker_order_id: str | None = Field(default=None, description="broker's order id")
    latency_ms: float = Field(ge=0, description="send to answer, ms")
    ts_ms: int = Field(ge=0, description="answer received, epoch ms UTC")
    raw: dict[str, Any] = Field(default_factory=dict, description="broker payload (JSON)")

    @field_validator("reason")
    @classmethod
    def _reason_required(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("status") == "REJECTED" and not v:
            raise PydanticCustomError("reason_required", "a REJECTED request needs a reason")
        return v


class CancelResult(_RequestResult):
    """The executor's answer to a cancel request.

    Parameters
    ----------
    client_order_id : str
    status : {"PENDING", "DONE", "REJECTED", "UNKNOWN"}
        PENDING: the venue took the request (order -> PENDING_CANCEL; CANCELED comes as an event).
        DONE: canceled synchronously (sim). REJECTED: the venue refused the cancel (already
        filled, unknown order): the order goes back from PENDING_CANCEL. UNKNOWN: no answer.
    reason : str or None
        Required for REJECTED (e.g. ``too_late``, ``not_found``).
    broker_order_id : str or None
    latency_ms : float
        ms, >= 0.
    ts_ms : int
        Epoch ms.
    raw : dict
    """

    model_config = ConfigDict(title="CancelResult")


class AmendResult(_RequestResult):
    """The executor's answer to an amend (quantity and/or limit price) request.

    Parameters
    ----------
    client_order_id : str
    status : {"PENDING", "DONE", "REJECTED", "UNKNOWN"}
        As for :class:`CancelResult`, about the amend (order -> PENDING_UPDATE while pending).
    quantity : float or None
        The new total quantity, shares (None: unchanged).
    limit_price : float or None
        The new limit price, currency per share (None: unchanged).
    reason, broker_order_id, latency_ms, ts_ms, raw
        As for :class:`CancelResult`; ``broker_order_id`` is the new id when the broker replaces
        the order (Alpaca's replace creates a new order).
    """

    model_config = ConfigDict(title="AmendResult")

    quantity: float | None = Field(default=None, gt=0, description="new quantity, shares")
    limit_price: float | None = Field(default=None, gt=0, description="new limit, currency/share")


@runtime_checkable
class Executor(Protocol):
    """The one protocol every executor implements (preview, sim, alpaca, ib, qmt).

    Calls do not raise for venue refusals or timeouts: those are results (REJECTED, UNKNOWN). They
    raise only for programming errors (a malformed context) and for a closed executor.

    Attributes
    ----------
    name : str
        Stable name used in metrics and the audit log, e.g. ``"sim"``, ``"alpaca-paper"``.
    """

    name: str

    def submit(self, ctx: OrderCtx) -> ExecResult:
        """Send one order; the caller has persisted it as SUBMITTED first."""
        ...

    def cancel(self, client_order_id: str) -> CancelResult:
        """Ask the venue to cancel the order (by our id)."""
        ...

    def amend(self, client_order_id: str, quantity: float | None = None,
              limit_price: float | None = None) -> AmendResult:
        """Ask the venue to change the quantity (shares) and/or the limit price (currency/share)."""
        ...

    def flush(self) -> list:
        """Fills (:class:`bridge.execution.Fill`) and status reports received since the last
        flush, in arrival order; the caller applies them to its :class:`~bridge.execution.Order`
        views (fills are deduplicated there by ``exec_id``)."""
        ...

    def close(self) -> None:
        """Stop background work and release connections; idempotent."""
        ...


MODELS: tuple[type[BaseModel], ...] = (OrderCtx, ExecResult, CancelResult, AmendResult)


def executor_contract_v1() -> dict[str, Any]:
    """The JSON Schema document of the executor contract, built from the pydantic models.

    Returns
    -------
    dict
        ``{"$schema", "$id": "executor_contract/v1", "title", "description", "$defs": {OrderCtx,
        ExecResult, CancelResult, AmendResult}}`` (JSON Schema 2020-12, validation mode).
        Cross-field rules that JSON Schema can express (limit price by order type, booleans and
        reason by status) are in each definition's ``allOf``; the grid checks (quantity on
        ``step_size``, limit price on ``tick_size``) relate two fields and live in the models.
    """
    defs = {m.__name__: m.model_json_schema(ref_template="#/$defs/{model}") for m in MODELS}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": CONTRACT_ID,
        "title": "bridge executor contract v1",
        "description": ("What goes into an executor (OrderCtx) and what comes back (ExecResult, "
                        "CancelResult, AmendResult). Quantities in shares, prices in currency "
                        "per share, times in epoch ms (UTC), latencies in ms, costs in bps."),
        "$defs": defs,
    }


def _models_markdown() -> str:
    lines = []
    for m in MODELS:
        schema = m.model_json_schema()
        required = set(schema.get("required", []))
        lines += [f"### {m.__name__}", "", "| field | type | required | description |",
                  "|---|---|---|---|"]
        for name, prop in schema["properties"].items():
            # enums as "a / b": a "|" would split the markdown table cell
            kinds = [p.get("type", "") if "enum" not in p else " / ".join(map(str, p["enum"]))
                     for p in prop.get("anyOf", [prop])]
            desc = prop.get("description", "")
            lines.append(f"| `{name}` | {' or '.join(kinds)} | {'yes' if name in required else ''}"
                         f" | {desc} |")
        lines.append("")
    return "\n".join(lines)


#: the command that rewrites the generated docs, run from the project root
REGENERATE = ('.venv/bin/python -c "from bridge.execution.contract import write_docs; '
              'write_docs(\'docs\')"')
_MARK = "<!-- generated: {name} (regenerate: see the top of this file) -->"
_END = "<!-- end generated: {name} -->"


def generated_sections() -> dict[str, str]:
    """The generated parts of ``docs/executor_contract.md``, by marker name."""
    from bridge.execution.orders import transition_table_markdown

    return {"models": _models_markdown(), "transitions": transition_table_markdown()}


def render_markdown(text: str) -> str:
    """``text`` with each generated section (between its markers) replaced by the current one."""
    for name, body in generated_sections().items():
        start, end = _MARK.format(name=name), _END.format(name=name)
        head, sep, rest = text.partition(start)
        if not sep:
            raise ValueError(f"marker {start!r} not found")
        _, sep, tail = rest.partition(end)
        if not sep:
            raise ValueError(f"marker {end!r} not found")
        text = f"{head}{start}\n{body}{end}{tail}"
    return text


def write_docs(docs_dir: str | Path) -> None:
    """Write ``executor_contract_v1.json`` and refresh the generated parts of
    ``executor_contract.md`` in ``docs_dir``."""
    docs = Path(docs_dir)
    (docs / "executor_contract_v1.json").write_text(
        json.dumps(executor_contract_v1(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = docs / "executor_contract.md"
    md.write_text(render_markdown(md.read_text(encoding="utf-8")), encoding="utf-8")
