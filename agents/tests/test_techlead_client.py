"""The Tech Lead's call wrapper against a real HTTP server and the real SDK: faults, retries,
usage rows and costs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agents import pricing
from agents.models import CallOutcome, InferenceEndpoint, ModelCall
from agents.techlead.client import (
    CallContext,
    CallRefused,
    InvalidAnswer,
    SpendLimitReached,
    TechLeadClient,
    TechLeadError,
)
from haao.errors import ApplicationError
from haao.ssrf import UnsafeEndpointURL
from sample_models import AnthropicServer, Reset, Response, delayed, invalid_json
from sample_models import anthropic as anth
from tests.fixtures import tech_lead_endpoint

pytestmark = pytest.mark.django_db
MESSAGES = "/v1/messages"
HELLO = {"max_tokens": 100, "messages": [{"role": "user", "content": "Say hello."}]}


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as running:
        yield running


@pytest.fixture
def endpoint(cast, settings, server) -> InferenceEndpoint:
    settings.HAAO_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    return tech_lead_endpoint(cast.org, cast.admin, base_url=server.url)


def context(cast, key: str = "test-call") -> CallContext:
    return CallContext(organization=cast.org, role="decompose", key=key, project=cast.project)


def client(endpoint, **kwargs) -> TechLeadClient:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return TechLeadClient(endpoint, **kwargs)


def rows() -> list[ModelCall]:
    return list(ModelCall.objects.order_by("created_at", "idempotency_key"))


def test_a_call_records_one_row_with_the_servers_tokens_and_the_exact_cost(
        cast, endpoint, server) -> None:
    server.enqueue(anth.text_reply("Hello.", usage=anth.usage(
        12_345, 678, cache_creation_input_tokens=4_000, cache_read_input_tokens=20_000)))
    message = client(endpoint).create(context=context(cast), **HELLO)
    [row] = rows()
    assert (row.input_tokens, row.output_tokens, row.cache_write_tokens,
            row.cache_read_tokens) == (12_345, 678, 4_000, 20_000)
    price = pricing.price_for("claude-sonnet-4-6", at=row.created_at)
    assert row.cost == pricing.cost_of(price, 12_345, 678, 4_000, 20_000)
    assert row.outcome == CallOutcome.OK and row.role == "decompose"
    assert row.project == cast.project and row.endpoint == endpoint
    assert row.request_id == message._request_id and row.request_id.startswith("req_")
    assert server.requests_to(MESSAGES)[0].header("authorization") == "Bearer sk-ant-test"


def test_running_again_with_the_same_key_writes_no_second_row(cast, endpoint, server) -> None:
    client(endpoint).create(context=context(cast, "same"), **HELLO)
    client(endpoint).create(context=context(cast, "same"), **HELLO)
    assert len(server.requests_to(MESSAGES)) == 2
    assert ModelCall.objects.count() == 1


def test_a_rate_limit_waits_as_long_as_retry_after_says(cast, endpoint, server) -> None:
    server.enqueue(anth.rate_limited(retry_after=1), anth.text_reply("Done."))
    client(endpoint).create(context=context(cast), **HELLO)
    first, second = server.requests_to(MESSAGES)
    assert 0.95 <= second.time - first.time < 3.0
    assert [r.outcome for r in rows()] == [CallOutcome.RATE_LIMITED, CallOutcome.OK]


def test_overload_backs_off_and_gives_up_after_the_bounded_number_of_tries(
        cast, endpoint, server) -> None:
    server.enqueue(*[anth.overloaded() for _ in range(10)])
    waits: list[float] = []
    with pytest.raises(TechLeadError) as raised:
        client(endpoint, max_attempts=3, backoff_base=1.0, sleep=waits.append,
               jitter=lambda: 1.0).create(context=context(cast), **HELLO)
    assert len(server.requests_to(MESSAGES)) == 3
    assert waits == [1.0, 2.0]
    assert raised.value.outcome == CallOutcome.SERVER_ERROR
    assert "overloaded_error" in raised.value.message
    assert [r.outcome for r in rows()] == [CallOutcome.SERVER_ERROR] * 3


def test_backoff_has_jitter_and_a_cap(endpoint) -> None:
    low = TechLeadClient(endpoint, backoff_base=1.0, jitter=lambda: 0.0)
    assert low.backoff(1) == 0.5 and low.backoff(3) == 2.0
    assert TechLeadClient(endpoint, backoff_base=1.0, jitter=lambda: 1.0).backoff(30) == 20.0


@pytest.mark.parametrize(("fault", "outcome"), [
    (anth.api_error(), CallOutcome.SERVER_ERROR),
    (Reset(), CallOutcome.CONNECTION_ERROR),
    (Reset(abort=False), CallOutcome.CONNECTION_ERROR),
    (invalid_json(), CallOutcome.INVALID_OUTPUT),
])
def test_a_transient_fault_is_retried_once_and_the_answer_arrives(
        cast, endpoint, server, fault, outcome) -> None:
    server.enqueue(fault, anth.text_reply("Recovered."))
    message = client(endpoint).create(context=context(cast), **HELLO)
    assert message.content[0].text == "Recovered."
    assert len(server.requests_to(MESSAGES)) == 2
    assert [r.outcome for r in rows()] == [outcome, CallOutcome.OK]


def test_a_timeout_is_recorded_and_retried(cast, endpoint, server) -> None:
    server.enqueue(delayed(anth.text_reply("Too late."), 3), anth.text_reply("In time."))
    message = client(endpoint, timeout=0.5).create(context=context(cast), **HELLO)
    assert message.content[0].text == "In time."
    first, second = rows()
    assert first.outcome == CallOutcome.TIMEOUT and first.input_tokens == 0
    assert 400 <= first.latency_ms < 3000 and second.outcome == CallOutcome.OK


def test_an_invalid_json_body_keeps_its_request_id(cast, endpoint, server) -> None:
    server.enqueue(invalid_json(), anth.text_reply("Fine."))
    client(endpoint).create(context=context(cast), **HELLO)
    assert rows()[0].request_id.startswith("req_")


@pytest.mark.parametrize("refusal", [anth.spend_limit_reached(retry_after=1),
                                     anth.credit_balance_too_low()])
def test_a_spend_limit_is_never_retried(cast, endpoint, server, refusal) -> None:
    server.enqueue(refusal, anth.text_reply("Never asked."))
    with pytest.raises(SpendLimitReached) as raised:
        client(endpoint).create(context=context(cast), **HELLO)
    assert len(server.requests_to(MESSAGES)) == 1
    assert raised.value.code == "spend_limit_reached" and raised.value.request_id
    [row] = rows()
    assert row.outcome in (CallOutcome.RATE_LIMITED, CallOutcome.CLIENT_ERROR)
    assert row.cost == 0


@pytest.mark.parametrize("refusal", [anth.invalid_request("max_tokens: too large"),
                                     anth.authentication_failed(),
                                     anth.error(403, "permission_error", "Not allowed.")])
def test_a_refused_request_is_not_retried(cast, endpoint, server, refusal) -> None:
    server.enqueue(refusal, anth.text_reply("Never asked."))
    with pytest.raises(CallRefused):
        client(endpoint).create(context=context(cast), **HELLO)
    assert len(server.requests_to(MESSAGES)) == 1
    assert [r.outcome for r in rows()] == [CallOutcome.CLIENT_ERROR]


def test_an_empty_answer_is_refused_but_its_tokens_are_paid_for(cast, endpoint, server) -> None:
    server.enqueue(Response(body=anth.message([], usage=anth.usage(50, 1))))
    with pytest.raises(InvalidAnswer):
        client(endpoint).create(context=context(cast), **HELLO)
    [row] = rows()
    assert row.outcome == CallOutcome.INVALID_OUTPUT and row.input_tokens == 50
    assert row.cost > 0


def test_an_endpoint_outside_the_allowlist_is_never_called(cast, endpoint, server,
                                                           settings) -> None:
    settings.HAAO_ENDPOINT_ALLOWLIST = []
    with pytest.raises(UnsafeEndpointURL):
        client(endpoint).create(context=context(cast), **HELLO)
    assert server.requests == [] and not rows()


def test_each_call_logs_its_request_id(cast, endpoint, server, caplog) -> None:
    caplog.set_level(logging.INFO, logger="agents.techlead.client")
    message = client(endpoint).create(context=context(cast), **HELLO)
    assert message._request_id in caplog.text


def test_tokens_are_counted_before_a_call_and_priced_at_most(cast, endpoint, server) -> None:
    tech_lead = client(endpoint)
    tokens = tech_lead.count_tokens(**HELLO)
    assert tokens == anth.count_input_tokens({**HELLO, "model": "claude-sonnet-4-6"})
    price = pricing.price_for("claude-sonnet-4-6")
    assert tech_lead.estimate_cost(input_tokens=tokens, max_output_tokens=100) == (
        pricing.cost_of(price, tokens, 100))
    assert server.requests_to(MESSAGES) == [] and not rows()


def test_a_long_retry_after_is_capped(cast, endpoint, server) -> None:
    server.enqueue(anth.rate_limited(retry_after=3600), anth.text_reply("Done."))
    waits: list[float] = []
    client(endpoint, sleep=waits.append).create(context=context(cast), **HELLO)
    assert waits == [30.0]


def test_another_organizations_endpoint_is_never_called(cast, endpoint, server) -> None:
    foreign = CallContext(organization=cast.other_org, role="decompose", key="foreign")
    with pytest.raises(ApplicationError):
        client(endpoint).create(context=foreign, **HELLO)
    assert server.requests == [] and not rows()
