"""The coder client against a scripted OpenAI-compatible server: answers, streams and faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from agents import services
from agents.coder.client import CoderFailure, chat_url, complete, error_message
from agents.models import InferenceEndpoint
from sample_models import OpenAIServer, Reset, delayed, invalid_json
from sample_models import openai as oai
from sample_models.base import Response, SSEEvent, Stream

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_loopback")]

MESSAGES = [{"role": "system", "content": "You write code."},
            {"role": "user", "content": "Fix the rounding in invoice_calc/totals.py."}]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


def endpoint_for(cast: Any, url: str, **values: Any) -> InferenceEndpoint:
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key=values.pop("api_key", ""),
        values={"name": values.pop("name", "Local coder"), "kind": "openai_compatible",
                "flavor": "vllm", "base_url": url, "model": "qwen2.5-coder:7b",
                "role": "coder", **values})


def failure_of(endpoint: InferenceEndpoint, **kwargs: Any) -> CoderFailure:
    with pytest.raises(CoderFailure) as caught:
        complete(endpoint=endpoint, messages=MESSAGES, **kwargs)
    return caught.value


# Answers ------------------------------------------------------------------------------------

def test_a_plain_answer_comes_back_with_the_server_usage(cast, server) -> None:
    server.enqueue(oai.chat_reply("<<<<<<< FILE a.py\nx = 1\n>>>>>>> END\n",
                                  usage=oai.usage(120, 14)))

    reply = complete(endpoint=endpoint_for(cast, server.url), messages=MESSAGES)

    assert reply.text.startswith("<<<<<<< FILE a.py")
    assert reply.model == "qwen2.5-coder:7b"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (120, 14)
    assert not reply.usage.estimated
    assert reply.request_id.startswith("chatcmpl-")
    assert reply.latency_ms >= 0
    sent = server.requests_to("/v1/chat/completions")[0].body
    assert sent["model"] == "qwen2.5-coder:7b" and sent["messages"] == MESSAGES
    assert sent["stream"] is False


def test_a_base_url_ending_in_v1_reaches_the_same_path(cast, server) -> None:
    complete(endpoint=endpoint_for(cast, f"{server.url}/v1/"), messages=MESSAGES)

    assert [r.path for r in server.requests] == ["/v1/chat/completions"]
    assert chat_url("http://h:1/v1") == chat_url("http://h:1") == "http://h:1/v1/chat/completions"


def test_the_key_is_sent_as_a_bearer_token(cast) -> None:
    with OpenAIServer(api_key="local-secret") as server:
        reply = complete(endpoint=endpoint_for(cast, server.url, api_key="local-secret"),
                         messages=MESSAGES)

        assert reply.text
        assert server.requests[0].header("authorization") == "Bearer local-secret"


def test_a_wrong_key_is_an_unauthorized_client_error(cast) -> None:
    with OpenAIServer(api_key="right") as server:
        failure = failure_of(endpoint_for(cast, server.url, api_key="wrong"))

    assert (failure.outcome, failure.reason, failure.status_code) == (
        "client_error", "unauthorized", 401)
    assert "Unauthorized" in failure.message


def test_streamed_pieces_reach_on_token_and_reassemble_with_usage(cast, server) -> None:
    text = "<<<<<<< FILE a.py\nprint('streamed in many small pieces')\n>>>>>>> END\n"
    server.enqueue(oai.chat_reply(text, usage=oai.usage(50, 9)))
    seen: list[str] = []

    reply = complete(endpoint=endpoint_for(cast, server.url), messages=MESSAGES, stream=True,
                     on_token=seen.append)

    assert reply.text == text
    assert len(seen) > 3 and "".join(seen) == text
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (50, 9)
    assert reply.finish_reason == "stop"
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_a_stream_without_usage_is_estimated_and_marked_so(cast, server) -> None:
    events = [SSEEvent({"choices": [{"index": 0, "delta": {"content": "abcdefgh"},
                                     "finish_reason": None}], "model": "qwen2.5-coder:7b"}),
              SSEEvent({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
              SSEEvent("[DONE]")]
    server.enqueue(Stream(events=events))

    reply = complete(endpoint=endpoint_for(cast, server.url), messages=MESSAGES, stream=True)

    assert reply.text == "abcdefgh"
    assert reply.usage.estimated
    assert reply.usage.output_tokens == 2
    assert reply.usage.input_tokens > 0


def test_a_server_that_ignores_stream_is_read_as_a_plain_answer(cast, server) -> None:
    server.enqueue(Response(body={"choices": [{"message": {"content": "plain"},
                                               "finish_reason": "stop"}],
                                  "model": "qwen2.5-coder:7b",
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))

    reply = complete(endpoint=endpoint_for(cast, server.url), messages=MESSAGES, stream=True)

    assert (reply.text, reply.usage.output_tokens) == ("plain", 1)


# Model names --------------------------------------------------------------------------------

def test_another_model_answering_is_accepted_and_flagged_by_default(cast, server) -> None:
    server.enqueue(oai.chat_reply("x = 1", model="llama-3.2-1b"))

    reply = complete(endpoint=endpoint_for(cast, server.url), messages=MESSAGES)

    assert reply.model == "llama-3.2-1b"
    assert reply.model_mismatch


def test_strict_model_refuses_an_answer_from_another_model(cast, server) -> None:
    server.enqueue(oai.chat_reply("x = 1", model="llama-3.2-1b"))

    failure = failure_of(endpoint_for(cast, server.url), strict_model=True)

    assert (failure.outcome, failure.reason) == ("invalid_output", "wrong_model")
    assert "llama-3.2-1b" in failure.message and "qwen2.5-coder:7b" in failure.message
    assert failure.usage.output_tokens > 0


def test_lm_studio_answers_with_the_loaded_model_whatever_was_asked(cast) -> None:
    with OpenAIServer(flavor="lmstudio", models=["loaded-model"]) as server:
        endpoint = endpoint_for(cast, server.url)
        assert complete(endpoint=endpoint, messages=MESSAGES).model == "loaded-model"
        assert failure_of(endpoint, strict_model=True).reason == "wrong_model"


# Faults -------------------------------------------------------------------------------------

def test_empty_content_is_invalid_output(cast, server) -> None:
    server.enqueue(oai.chat_reply(""), oai.chat_reply(None))
    endpoint = endpoint_for(cast, server.url)

    for _ in range(2):
        failure = failure_of(endpoint)
        assert (failure.outcome, failure.reason) == ("invalid_output", "empty_content")
        assert "empty" in failure.message


def test_an_empty_stream_is_invalid_output(cast, server) -> None:
    server.enqueue(oai.chat_reply(""))

    failure = failure_of(endpoint_for(cast, server.url), stream=True)

    assert failure.reason == "empty_content"


def test_a_silent_server_times_out(cast, server) -> None:
    server.enqueue(delayed(oai.chat_reply("late"), 5))

    failure = failure_of(endpoint_for(cast, server.url), timeout=0.5)

    assert (failure.outcome, failure.reason) == ("timeout", "timeout")
    assert "0.5 seconds" in failure.message


def test_a_stream_that_outlives_the_timeout_is_stopped(cast, server) -> None:
    server.enqueue(oai.chat_reply("one two three four five six seven eight nine ten",
                                  interval=0.3))

    failure = failure_of(endpoint_for(cast, server.url), stream=True, timeout=0.5)

    assert failure.outcome == "timeout"


@pytest.mark.parametrize("abort", [True, False])
def test_a_dropped_connection_is_a_connection_error(cast, server, abort: bool) -> None:
    server.enqueue(Reset(abort=abort))

    failure = failure_of(endpoint_for(cast, server.url))

    assert failure.outcome == "connection_error"
    assert "dropped the connection" in failure.message


def test_a_stream_cut_midway_is_a_connection_error(cast, server) -> None:
    server.enqueue(oai.chat_reply("a long answer that will never arrive in full", cut_after=3))

    failure = failure_of(endpoint_for(cast, server.url), stream=True)

    assert failure.outcome == "connection_error"


def test_nobody_listening_is_a_connection_error(cast) -> None:
    with OpenAIServer() as server:
        url = server.url

    failure = failure_of(endpoint_for(cast, url))

    assert (failure.outcome, failure.reason) == ("connection_error", "connect")


def test_rate_limiting_says_when_to_retry(cast, server) -> None:
    server.enqueue(Response(status=429, headers={"retry-after": "7"},
                            body={"error": {"message": "Too many requests", "type": "rate"}}))

    failure = failure_of(endpoint_for(cast, server.url))

    assert (failure.outcome, failure.status_code) == ("rate_limited", 429)
    assert "Too many requests" in failure.message and "retry after 7 s" in failure.message


def test_a_500_is_a_server_error_with_the_vendor_message(cast) -> None:
    with OpenAIServer(flavor="llamacpp") as server:
        server.enqueue(oai.llamacpp_error("failed to decode the batch", status=500))
        failure = failure_of(endpoint_for(cast, server.url))

    assert (failure.outcome, failure.status_code) == ("server_error", 500)
    assert "failed to decode the batch" in failure.message


def test_invalid_json_is_invalid_output(cast, server) -> None:
    server.enqueue(invalid_json())

    failure = failure_of(endpoint_for(cast, server.url))

    assert (failure.outcome, failure.reason) == ("invalid_output", "invalid_json")


def test_an_error_inside_a_stream_is_a_server_error(cast, server) -> None:
    server.enqueue(Stream(events=[oai.stream_error_event("CUDA out of memory")]))

    failure = failure_of(endpoint_for(cast, server.url), stream=True)

    assert (failure.outcome, failure.reason) == ("server_error", "stream_error")
    assert "CUDA out of memory" in failure.message


VENDOR_ERRORS = {
    "vllm flat": (oai.vllm_error("max_tokens is too large", status=400), "client_error",
                  "max_tokens is too large"),
    "vllm nested": (oai.vllm_error("max_tokens is too large", status=400, nested=True),
                    "client_error", "max_tokens is too large"),
    "vllm 401": (Response(status=401, body={"error": "Unauthorized"}), "client_error",
                 "Unauthorized"),
    "ollama": (oai.ollama_model_not_found("qwen2.5-coder:7b"), "client_error",
               'model "qwen2.5-coder:7b" not found, try pulling it first'),
    "ollama native": (oai.ollama_error("model is loading", status=503, native=True),
                      "server_error", "model is loading"),
    "lm studio": (oai.lmstudio_error("Context length exceeded"), "client_error",
                  "Context length exceeded"),
    "lm studio plain": (oai.lmstudio_error("Unexpected endpoint", plain=True), "client_error",
                        "Unexpected endpoint"),
    "llama.cpp": (oai.llamacpp_error("the request exceeds the context size", status=400),
                  "client_error", "the request exceeds the context size"),
    "not json": (Response(status=502, raw=b"<html>Bad Gateway</html>",
                          headers={"content-type": "text/html"}), "server_error",
                 "<html>Bad Gateway</html>"),
}


@pytest.mark.parametrize("name", list(VENDOR_ERRORS))
def test_each_vendor_error_body_gives_its_message(cast, server, name: str) -> None:
    reply, outcome, message = VENDOR_ERRORS[name]
    server.enqueue(reply)

    failure = failure_of(endpoint_for(cast, server.url))

    assert failure.outcome == outcome
    assert message in failure.message
    assert f"HTTP {reply.status}" in failure.message


def test_an_unknown_model_on_ollama_is_reported_as_model_not_found(cast) -> None:
    with OpenAIServer(flavor="ollama", models=["llama3.2"]) as server:
        failure = failure_of(endpoint_for(cast, server.url))

    assert (failure.reason, failure.status_code) == ("model_not_found", 404)


def test_error_message_reads_every_shape() -> None:
    assert error_message({"object": "error", "message": "flat"}) == "flat"
    assert error_message({"error": {"message": "nested"}}) == "nested"
    assert error_message({"error": "bare"}) == "bare"
    assert error_message(["odd"], fallback="raw") == "raw"


def test_a_url_the_ssrf_guard_refuses_is_never_called(cast, server) -> None:
    endpoint = endpoint_for(cast, server.url)

    with override_settings(HAAO_ENDPOINT_ALLOWLIST=[]):
        failure = failure_of(endpoint)

    assert (failure.outcome, failure.reason) == ("blocked", "url_refused")
    assert "loopback" in failure.message
    assert server.requests == []


def test_an_oversized_answer_is_refused_without_reading_it_all(cast, server) -> None:
    server.enqueue(Response(raw=b" " * (9 * 1024 * 1024)))

    failure = failure_of(endpoint_for(cast, server.url))

    assert (failure.outcome, failure.reason) == ("invalid_output", "too_long")
