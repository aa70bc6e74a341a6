"""The model-call ledger: every call costed at the price in force then, recorded once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import override_settings

from agents import ledger, services
from agents.models import ModelCall
from agents.pricing import UnknownModelPrice
from haao.errors import ApplicationError, Conflict
from haao.models import AuditEvent

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def claude(cast, **values):
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-test",
        values={"name": "Claude", "kind": "anthropic", "base_url": "http://93.184.215.14",
                "model": "claude-sonnet-4-5", "role": "tech_lead", **values})


def local(cast, **values):
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "Local coder", "kind": "openai_compatible", "flavor": "lm_studio",
                "base_url": "http://93.184.215.14:1234/v1", "model": "qwen2.5-coder-7b",
                "role": "coder", **values})


def record(cast, endpoint, **kwargs):
    kwargs.setdefault("role", "code")
    kwargs.setdefault("outcome", "ok")
    return ledger.model_call_record(organization=cast.org, endpoint=endpoint, at=NOW,
                                      **kwargs)


@pytest.mark.parametrize(("tokens", "expected"), [
    ((1234, 567, 0, 0), "0.012207"),
    ((100_000, 2_000, 0, 0), "0.330000"),
    ((10, 20, 10_000, 50_000), "0.052830"),
    ((0, 0, 0, 0), "0.000000"),
])
def test_a_cloud_call_costs_exactly_what_the_price_table_says(cast, tokens, expected) -> None:
    call = record(cast, claude(cast), role="decompose", input_tokens=tokens[0],
                  output_tokens=tokens[1], cache_write_tokens=tokens[2],
                  cache_read_tokens=tokens[3], latency_ms=812, request_id="req_1")
    call.refresh_from_db()
    assert call.cost == Decimal(expected)
    assert call.price["input"] == "3" and call.price["cache_read"] == "0.3"
    assert call.price["source"] == "table" and call.price["effective_from"] == "2025-09-29"
    assert call.endpoint_name == "Claude" and call.is_cloud


def test_an_override_price_is_used_and_snapshotted(cast) -> None:
    endpoint = claude(cast, price_input="2", price_output="10")
    call = record(cast, endpoint, input_tokens=1_000_000, output_tokens=100_000)
    assert call.cost == Decimal("3.000000")
    assert call.price["source"] == "endpoint" and call.price["cache_write"] == "2.5"


def test_a_local_call_is_free_unless_the_operator_set_a_rate(cast) -> None:
    assert record(cast, local(cast), input_tokens=50_000, output_tokens=9_000).cost == 0
    paid = local(cast, name="Amortised GPU", price_input="0.05", price_output="0.10")
    assert record(cast, paid, input_tokens=2_000_000, output_tokens=1_000_000).cost == (
        Decimal("0.200000"))


def test_a_cloud_model_missing_from_the_table_refuses_to_record_a_free_call(cast) -> None:
    endpoint = claude(cast, model="claude-future-9", price_input="1", price_output="2")
    endpoint.price_input = None  # as if the table had been expected to know it
    with pytest.raises(UnknownModelPrice):
        record(cast, endpoint, input_tokens=10)
    assert not ModelCall.objects.exists()


def test_a_redelivered_task_records_its_call_once(cast) -> None:
    endpoint = local(cast)
    first = record(cast, endpoint, input_tokens=10, idempotency_key="attempt-1:call-1")
    again = record(cast, endpoint, input_tokens=99, idempotency_key="attempt-1:call-1")
    assert again.pk == first.pk and again.input_tokens == 10
    assert ModelCall.objects.count() == 1
    assert AuditEvent.objects.filter(type="model_call.recorded").count() == 1


def test_an_idempotency_key_of_another_organization_is_a_conflict(cast) -> None:
    record(cast, local(cast), idempotency_key="k")
    other = services.endpoint_create(
        organization=cast.other_org, actor=cast.outsider,
        values={"name": "x", "kind": "openai_compatible", "base_url": "http://93.184.215.14/",
                "model": "m", "role": "coder"})
    with pytest.raises(Conflict):
        ledger.model_call_record(organization=cast.other_org, endpoint=other, role="code",
                                   outcome="ok", idempotency_key="k")


def test_objects_of_another_organization_are_refused(cast) -> None:
    with pytest.raises(ApplicationError, match="another organization"):
        record(cast, local(cast), project=cast.other_project)
    assert not ModelCall.objects.exists()


@pytest.mark.parametrize(("field", "value"), [
    ("input_tokens", -1), ("output_tokens", 1.5), ("latency_ms", "5"), ("role", "chat"),
    ("outcome", "great"),
])
def test_impossible_values_are_refused_naming_the_field(cast, field, value) -> None:
    with pytest.raises(ApplicationError) as caught:
        record(cast, local(cast), **{field: value})
    assert field in caught.value.details
    assert not ModelCall.objects.exists()


def test_an_endpoint_with_calls_cannot_be_deleted_only_disabled(cast) -> None:
    endpoint = local(cast)
    record(cast, endpoint)
    with pytest.raises(Conflict, match="disable it instead"):
        services.endpoint_delete(organization=cast.org, endpoint=endpoint, actor=cast.admin)
    services.endpoint_update(organization=cast.org, endpoint=endpoint, actor=cast.admin,
                             changes={"enabled": False})
    endpoint.refresh_from_db()
    assert not endpoint.enabled


@override_settings(HAAO_ENDPOINT_ALLOWLIST=[])
def test_the_calls_keep_their_endpoint_name_after_a_rename(cast) -> None:
    endpoint = local(cast)
    call = record(cast, endpoint)
    services.endpoint_update(organization=cast.org, endpoint=endpoint, actor=cast.admin,
                             changes={"name": "Renamed"})
    call.refresh_from_db()
    assert call.endpoint_name == "Local coder"
