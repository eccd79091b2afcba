"""The executor contract v1 (bridge.execution.contract) and its published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from bridge.execution import (
    AmendResult,
    CancelResult,
    ExecResult,
    Executor,
    OrderCtx,
    executor_contract_v1,
)
from bridge.execution.contract import generated_sections, render_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"

CTX = dict(client_order_id="b-0123456789abcdef0123456789abcd", instrument="AAPL", side="buy",
           tick_size=0.01, step_size=1.0, order_type="limit", quantity=300.0, limit_price=250.37,
           time_in_force="day", decision_snapshot_id="ds-3c84ee2d28db2cdb",
           strategy_id="momentum_top50", ts_ms=1_282_550_400_000, event_ts_ms=1_282_334_400_000,
           regime="trend", scenario="base", guard_reason=None, warmup=False, consistency=0.8,
           costs_bps=5.0, px_intent=250.30)

RESULTS = {
    "accepted": dict(client_order_id="b-1", status="ACCEPTED", accepted=True, rejected=False,
                     reject_reason=None, broker_order_id="61e69015-8549-4bfd-b9c3-01e75843f47d",
                     latency_ms=38.5, slippage_bps=None, rounding_applied=0.0,
                     ts_ms=1_282_550_400_038, raw={"status": "new"}),
    "rejected": dict(client_order_id="b-2", status="REJECTED", accepted=False, rejected=True,
                     reject_reason="insufficient_buying_power", latency_ms=41.0,
                     ts_ms=1_282_550_400_041),
    "denied": dict(client_order_id="b-3", status="DENIED", accepted=False, rejected=True,
                   reject_reason="warmup", latency_ms=0.0, ts_ms=1_282_550_400_000),
    "unknown": dict(client_order_id="b-4", status="UNKNOWN", accepted=False, rejected=False,
                    reject_reason="timeout", latency_ms=10_000.0, ts_ms=1_282_550_410_000),
    "filled_at_once": dict(client_order_id="b-5", status="ACCEPTED", accepted=True, rejected=False,
                           broker_order_id="7", latency_ms=3.2, slippage_bps=1.6,
                           rounding_applied=-0.004, ts_ms=1_282_550_400_003),
}

BAD_RESULTS = {
    "booleans disagree": (dict(RESULTS["accepted"], rejected=True), "rejected", "status_mismatch"),
    "unknown accepted": (dict(RESULTS["unknown"], accepted=True), "accepted", "status_mismatch"),
    "rejected without reason": (
        {k: v for k, v in RESULTS["rejected"].items() if k != "reject_reason"},
        "reject_reason", "reason_required"),
    "accepted with reason": (dict(RESULTS["accepted"], reject_reason="x"), "reject_reason",
                             "reason_forbidden"),
    "negative latency": (dict(RESULTS["accepted"], latency_ms=-1.0), "latency_ms",
                         "greater_than_equal"),
    "bad status": (dict(RESULTS["accepted"], status="FILLED"), "status", "literal_error"),
    "unknown field": (dict(RESULTS["accepted"], exchange_order_id="x"), "exchange_order_id",
                      "extra_forbidden"),
    "string latency": (dict(RESULTS["accepted"], latency_ms="38.5"), "latency_ms", "float_type"),
}


def errors_of(model, data) -> list[dict]:
    with pytest.raises(ValidationError) as ei:
        model.model_validate(data)
    return ei.value.errors()


def validator_for(name: str) -> jsonschema.Draft202012Validator:
    schema = executor_contract_v1()
    doc = {"$schema": schema["$schema"], "$ref": f"#/$defs/{name}", "$defs": schema["$defs"]}
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


# -- OrderCtx ----------------------------------------------------------------------------------


def test_order_ctx_valid_and_frozen():
    ctx = OrderCtx.model_validate(CTX)
    assert ctx.quantity == 300.0 and ctx.limit_price == 250.37
    with pytest.raises(ValidationError):
        ctx.quantity = 1.0
    # the seed's minimum: no context fields beyond the required ones
    minimal = {k: CTX[k] for k in ("client_order_id", "instrument", "side", "tick_size",
                                   "step_size", "quantity", "decision_snapshot_id",
                                   "strategy_id", "ts_ms", "event_ts_ms")}
    m = OrderCtx.model_validate(dict(minimal, order_type="market"))
    assert m.limit_price is None and m.time_in_force == "day" and m.warmup is False
    # fractional and lot grids
    OrderCtx.model_validate(dict(CTX, quantity=0.3, step_size=0.1))
    OrderCtx.model_validate(dict(CTX, quantity=1_200.0, step_size=100.0))


@pytest.mark.parametrize(("change", "field", "kind"), [
    (dict(quantity=0.0), "quantity", "greater_than"),
    (dict(quantity=-5.0), "quantity", "greater_than"),
    (dict(quantity=150.0, step_size=100.0), "quantity", "step_grid"),
    (dict(quantity=10.5), "quantity", "step_grid"),
    (dict(limit_price=250.375), "limit_price", "tick_grid"),
    (dict(limit_price=None), "limit_price", "limit_price_required"),
    (dict(order_type="market"), "limit_price", "limit_price_forbidden"),
    (dict(side="BUY"), "side", "literal_error"),
    (dict(side="short"), "side", "literal_error"),
    (dict(time_in_force="fok"), "time_in_force", "literal_error"),
    (dict(consistency=1.2), "consistency", "less_than_equal"),
    (dict(tick_size=0.0), "tick_size", "greater_than"),
    (dict(quantity=float("nan")), "quantity", "finite_number"),
    (dict(quantity="300"), "quantity", "float_type"),
    (dict(ts_ms=1.5e12), "ts_ms", "int_type"),
    (dict(warmup="yes"), "warmup", "bool_type"),
    (dict(venue="XNAS"), "venue", "extra_forbidden"),
])
def test_order_ctx_refusals_name_the_field(change, field, kind):
    errs = errors_of(OrderCtx, dict(CTX, **change))
    assert [(e["loc"], e["type"]) for e in errs] == [((field,), kind)]


def test_order_ctx_missing_field():
    data = {k: v for k, v in CTX.items() if k != "event_ts_ms"}
    assert [(e["loc"], e["type"]) for e in errors_of(OrderCtx, data)] == [
        (("event_ts_ms",), "missing")]


def test_order_ctx_schema_agrees_on_cross_field_rules():
    v = validator_for("OrderCtx")
    v.validate(CTX)
    assert not v.is_valid(dict(CTX, limit_price=None))           # limit without a price
    assert not v.is_valid(dict(CTX, order_type="market"))        # market with a price
    assert not v.is_valid({k: x for k, x in CTX.items() if k != "limit_price"})
    v.validate(dict(CTX, order_type="market", limit_price=None))
    OrderCtx.model_validate(OrderCtx.model_validate(CTX).model_dump(mode="json"))


# -- ExecResult, CancelResult, AmendResult -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_exec_results_validate_in_pydantic_and_jsonschema(name):
    data = RESULTS[name]
    res = ExecResult.model_validate(data)
    validator_for("ExecResult").validate(data)
    # what an executor writes (model_dump in JSON mode) validates against the schema too
    dumped = res.model_dump(mode="json")
    validator_for("ExecResult").validate(dumped)
    assert ExecResult.model_validate_json(json.dumps(dumped)) == res


@pytest.mark.parametrize("name", sorted(BAD_RESULTS))
def test_bad_exec_results_refused_by_both(name):
    data, field, kind = BAD_RESULTS[name]
    errs = errors_of(ExecResult, data)
    assert (errs[0]["loc"], errs[0]["type"]) == ((field,), kind)
    assert not validator_for("ExecResult").is_valid(data)


def test_cancel_and_amend_results():
    c = CancelResult(client_order_id="b-1", status="PENDING", latency_ms=12.0, ts_ms=1)
    assert c.reason is None
    errs = errors_of(CancelResult, dict(client_order_id="b-1", status="REJECTED",
                                        latency_ms=12.0, ts_ms=1))
    assert [(e["loc"], e["type"]) for e in errs] == [(("reason",), "reason_required")]
    CancelResult(client_order_id="b-1", status="REJECTED", reason="too_late", latency_ms=1, ts_ms=1)
    a = AmendResult(client_order_id="b-1", status="DONE", quantity=200.0, limit_price=250.3,
                    broker_order_id="new-id", latency_ms=20.0, ts_ms=2)
    validator_for("AmendResult").validate(a.model_dump(mode="json"))
    assert not validator_for("CancelResult").is_valid(
        dict(client_order_id="b-1", status="REJECTED", latency_ms=1.0, ts_ms=1))
    assert [e["loc"] for e in errors_of(AmendResult, dict(
        client_order_id="b-1", status="DONE", quantity=-1.0, latency_ms=1.0, ts_ms=1))] == [
        ("quantity",)]


# -- the protocol ------------------------------------------------------------------------------


class _NullExecutor:
    name = "null"

    def submit(self, ctx: OrderCtx) -> ExecResult:
        return ExecResult(client_order_id=ctx.client_order_id, status="DENIED", accepted=False,
                          rejected=True, reject_reason="null_executor", latency_ms=0.0,
                          ts_ms=ctx.ts_ms)

    def cancel(self, client_order_id: str) -> CancelResult:
        return CancelResult(client_order_id=client_order_id, status="REJECTED",
                            reason="not_found", latency_ms=0.0, ts_ms=0)

    def amend(self, client_order_id, quantity=None, limit_price=None) -> AmendResult:
        return AmendResult(client_order_id=client_order_id, status="REJECTED",
                           reason="not_found", latency_ms=0.0, ts_ms=0)

    def flush(self) -> list:
        return []

    def close(self) -> None:
        return None


def test_executor_protocol():
    ex = _NullExecutor()
    assert isinstance(ex, Executor)
    assert ex.submit(OrderCtx.model_validate(CTX)).status == "DENIED"
    assert not isinstance(object(), Executor)


# -- the published documents cannot go stale ---------------------------------------------------


def test_schema_document_shape():
    doc = executor_contract_v1()
    assert doc["$id"] == "executor_contract/v1"
    assert set(doc["$defs"]) == {"OrderCtx", "ExecResult", "CancelResult", "AmendResult"}
    jsonschema.Draft202012Validator.check_schema(doc)
    assert json.loads(json.dumps(doc)) == doc     # plain JSON, nothing Python-only


def test_docs_json_equals_contract():
    published = json.loads((DOCS / "executor_contract_v1.json").read_text(encoding="utf-8"))
    assert published == executor_contract_v1(), (
        "docs/executor_contract_v1.json is stale: regenerate it with "
        "bridge.execution.contract.write_docs('docs')")


def test_docs_markdown_generated_sections_current():
    text = (DOCS / "executor_contract.md").read_text(encoding="utf-8")
    assert render_markdown(text) == text, (
        "docs/executor_contract.md is stale: regenerate it with "
        "bridge.execution.contract.write_docs('docs')")
    sections = generated_sections()
    assert "| CANCELED | FILLED |" in sections["transitions"]
    assert "`px_intent`" in sections["models"]
