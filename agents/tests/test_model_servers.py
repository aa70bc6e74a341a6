"""The scripted model servers, driven by the real `anthropic` SDK and real `httpx`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from sample_models import AnthropicServer, OpenAIServer, Reset, Stream, delayed
from sample_models import anthropic as anth
from sample_models import openai as oai
from sample_models.base import invalid_json

MODEL = "claude-sonnet-5"
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def server():
    with AnthropicServer() as running:
        yield running


@pytest.fixture
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0)


@pytest.fixture
def coder():
    with OpenAIServer() as running:
        yield running


def chat(server, **body):
    body.setdefault("model", "qwen2.5-coder")
    body.setdefault("messages", [{"role": "user", "content": "Add a docstring to app/views.py"}])
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=5)


# Anthropic: replies --------------------------------------------------------------------------


def test_the_sdk_gets_a_message_with_every_usage_field(server, client):
    server.enqueue(anth.text_reply("Tickets follow.", usage=anth.usage(
        120, 8, cache_creation_input_tokens=30, cache_read_input_tokens=900)))

    reply = client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert reply.content[0].text == "Tickets follow."
    assert reply.model == MODEL
    assert reply.stop_reason == "end_turn"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (120, 8)
    assert reply.usage.cache_creation_input_tokens == 30
    assert reply.usage.cache_read_input_tokens == 900
    assert reply._request_id.startswith("req_")


def test_usage_left_open_is_estimated_from_the_request(server, client):
    reply = client.messages.create(model=MODEL, max_tokens=64, system="Be brief.",
                                   messages=HELLO)

    # "Be brief." is 9 characters (3 tokens); "user: Hello there" is 17 (5 tokens).
    assert reply.usage.input_tokens == 8
    assert reply.usage.output_tokens >= 1


def test_a_tool_use_reply_round_trips_as_structured_input(server, client):
    tickets = {"tickets": [{"title": "Add login rate limit", "complexity": 2}]}
    server.enqueue(anth.tool_use_reply("propose_tickets", tickets))
    tool = {"name": "propose_tickets", "description": "Propose tickets",
            "input_schema": {"type": "object", "properties": {"tickets": {"type": "array"}}}}

    reply = client.messages.create(model=MODEL, max_tokens=512, messages=HELLO, tools=[tool],
                                   tool_choice={"type": "tool", "name": "propose_tickets"})

    block = reply.content[0]
    assert reply.stop_reason == "tool_use"
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "propose_tickets" and block.input == tickets
    assert server.requests[0].body["tools"][0]["name"] == "propose_tickets"


def test_the_sample_tech_lead_proposes_tickets_valid_for_the_tool_schema(server, client):
    schema = {"type": "object", "required": ["tickets"], "properties": {"tickets": {
        "type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["title", "complexity", "paths"],
            "properties": {"title": {"type": "string", "maxLength": 20},
                           "complexity": {"type": "integer", "minimum": 1},
                           "paths": {"type": "array", "items": {"type": "string"}}}}}}}
    tool = {"name": "propose_tickets", "input_schema": schema}

    reply = client.messages.create(model=MODEL, max_tokens=512, tools=[tool], messages=[
        {"role": "user", "content": "Let users reset their password\nby e-mail."}])

    ticket = reply.content[0].input["tickets"][0]
    assert ticket == {"title": "Let users reset thei", "complexity": 1,
                      "paths": ["Let users reset their password"]}


def test_the_sample_tech_lead_format_can_be_plugged_in():
    lead = anth.SampleTechLead(propose_tickets=lambda text, tool: {"tickets": [text.upper()]})
    with AnthropicServer(answer=lead) as server:
        sdk = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
        reply = sdk.messages.create(model=MODEL, max_tokens=64, messages=HELLO,
                                    tools=[{"name": "propose_tickets", "input_schema": {}}])
    assert reply.content[0].input == {"tickets": ["HELLO THERE"]}


def test_reply_with_computes_the_answer_from_the_request(server, client):
    server.reply_with(lambda request: f"echo: {request.body['messages'][-1]['content']}")

    reply = client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert reply.content[0].text == "echo: Hello there"


# Anthropic: streaming ------------------------------------------------------------------------


def test_streaming_yields_the_text_and_the_final_usage(server, client):
    server.enqueue(anth.text_reply("The plan has three tickets and one open question."))

    with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1
    assert "".join(pieces) == "The plan has three tickets and one open question."
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 13
    assert server.requests[0].body["stream"] is True


def test_a_streamed_tool_use_arrives_as_complete_input(server, client):
    server.enqueue(anth.tool_use_reply("propose_tickets", {"tickets": [{"title": "A" * 60}]}))

    with client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        final = stream.get_final_message()

    assert final.content[0].input == {"tickets": [{"title": "A" * 60}]}


def test_a_stream_cut_mid_way_fails_instead_of_returning_part_of_the_text(server, client):
    server.enqueue(anth.text_reply("one two three four five six seven", cut_after=4))

    with pytest.raises(Exception, match="incomplete chunked read"), \
            client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        list(stream.text_stream)


def test_an_error_event_inside_a_stream_raises_the_api_error(server, client):
    events = anth.message_events(anth.message([{"type": "text", "text": "Partial answer"}]))
    server.enqueue(Stream(events=[*events[:4], anth.error_event("overloaded_error",
                                                                 "Overloaded")]))

    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"), \
            client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:
        list(stream.text_stream)


# Anthropic: count_tokens and errors ---------------------------------------------------------


def test_count_tokens_estimates_four_characters_per_token(server, client):
    count = client.messages.count_tokens(model=MODEL, system="x" * 40, messages=HELLO)

    assert count.input_tokens == 10 + 5
    assert server.requests[0].path == "/v1/messages/count_tokens"


def test_a_429_raises_rate_limit_error_carrying_retry_after(server, client):
    server.enqueue(anth.rate_limited(retry_after=7))

    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after"] == "7"
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert raised.value.request_id.startswith("req_")


def test_the_sdk_retries_a_429_once_after_the_header_delay(server):
    server.enqueue(anth.rate_limited(retry_after=1))
    sdk = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=1)

    reply = sdk.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    first, second = server.requests
    assert reply.content[0].text.startswith("Sample Tech Lead answer")
    assert second.time - first.time >= 0.95
    assert second.header("x-stainless-retry-count") == "1"


def test_overloaded_raises_the_529_error(server, client):
    server.enqueue(anth.overloaded())

    with pytest.raises(anthropic.InternalServerError) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert raised.value.status_code == 529
    assert raised.value.body["error"]["type"] == "overloaded_error"


def test_an_api_error_raises_internal_server_error(server, client):
    server.enqueue(anth.api_error())

    with pytest.raises(anthropic.InternalServerError) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert raised.value.status_code == 500


def test_a_request_without_an_api_key_is_refused(server, client):
    with pytest.raises(anthropic.AuthenticationError, match="x-api-key header is required"):
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO,
                               extra_headers={"Authorization": anthropic.Omit()})


def test_a_wrong_api_key_is_refused_when_the_server_expects_one():
    with AnthropicServer(api_key="right") as server:
        for key, header in (("right", "x-api-key"), ("wrong", "x-api-key"),
                            ("wrong", "authorization")):
            value = key if header == "x-api-key" else f"Bearer {key}"
            answer = httpx.post(f"{server.url}/v1/messages", json={
                "model": MODEL, "max_tokens": 5, "messages": HELLO},
                headers={header: value, "anthropic-version": "2023-06-01"})
            assert answer.status_code == (200 if key == "right" else 401)


def test_a_request_without_anthropic_version_gets_a_400_naming_the_header(server):
    answer = httpx.post(f"{server.url}/v1/messages", headers={"x-api-key": "k"},
                        json={"model": MODEL, "max_tokens": 5, "messages": HELLO})

    assert answer.status_code == 400
    assert answer.json()["error"] == {"type": "invalid_request_error",
                                      "message": "anthropic-version: header is required"}


@pytest.mark.parametrize(("body", "message"), [
    ({"model": MODEL, "messages": HELLO}, "max_tokens: Field required"),
    ({"model": MODEL, "max_tokens": "lots", "messages": HELLO},
     "max_tokens: Input should be a valid int"),
    ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages: at least one message"),
    (["not", "an", "object"], "not valid JSON"),
])
def test_a_malformed_request_gets_a_400_naming_the_problem(server, body, message):
    answer = httpx.post(f"{server.url}/v1/messages", json=body,
                        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})

    assert answer.status_code == 400
    assert answer.json()["type"] == "error"
    assert message in answer.json()["error"]["message"]
    assert answer.json()["request_id"] == answer.headers["request-id"]


def test_a_spent_credit_balance_is_a_bad_request_that_says_so(server, client):
    server.enqueue(anth.credit_balance_too_low())

    with pytest.raises(anthropic.BadRequestError, match="credit balance is too low"):
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)


def test_a_reached_spend_limit_carries_its_error_code(server, client):
    server.enqueue(anth.spend_limit_reached())

    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)

    assert raised.value.error_code == "enforced_spend_limit_reached"


def test_a_reset_connection_raises_a_connection_error(server, client):
    server.enqueue(Reset())

    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)


def test_a_slow_answer_trips_the_client_timeout(server, client):
    server.enqueue(delayed(anth.text_reply("late"), 5))
    started = time.monotonic()

    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.3).messages.create(model=MODEL, max_tokens=64,
                                                         messages=HELLO)

    assert time.monotonic() - started < 2


def test_invalid_json_from_the_api_is_not_taken_for_a_message(server, client):
    server.enqueue(invalid_json())

    with pytest.raises(ValueError, match="Expecting value"):
        client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)


# Anthropic: prompt cache ---------------------------------------------------------------------


def cached_prompt(question: str, system_text: str = "Rules. " * 800):
    return {"model": MODEL, "max_tokens": 64,
            "system": [{"type": "text", "text": system_text,
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]}


def test_the_same_cached_prefix_is_written_once_then_read():
    with AnthropicServer(prompt_cache=True) as server:
        sdk = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
        first = sdk.messages.create(**cached_prompt("Split requirement one")).usage
        second = sdk.messages.create(**cached_prompt("Split requirement two")).usage

    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (1400, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 1400)
    assert first.input_tokens == second.input_tokens == 7
    assert first.cache_creation.ephemeral_5m_input_tokens == 1400


def test_a_changed_prefix_or_an_expired_entry_is_written_again():
    with AnthropicServer(prompt_cache=True) as server:
        now = [1000.0]
        server.cache.clock = lambda: now[0]
        sdk = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
        sdk.messages.create(**cached_prompt("q"))
        changed = sdk.messages.create(**cached_prompt("q", system_text="Other. " * 800)).usage
        now[0] += 299
        kept = sdk.messages.create(**cached_prompt("q")).usage
        now[0] += 301
        expired = sdk.messages.create(**cached_prompt("q")).usage

    assert changed.cache_creation_input_tokens == 1400 and changed.cache_read_input_tokens == 0
    assert kept.cache_read_input_tokens == 1400
    assert expired.cache_creation_input_tokens == 1400 and expired.cache_read_input_tokens == 0


def test_a_prefix_below_the_minimum_is_not_cached():
    with AnthropicServer(prompt_cache=True) as server:
        sdk = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
        usage = sdk.messages.create(**cached_prompt("q", system_text="Short rules.")).usage

    assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
    # "Short rules." is 3 tokens, "user: q" 2.
    assert usage.input_tokens == 3 + 2


# OpenAI-compatible ---------------------------------------------------------------------------


def test_a_chat_completion_carries_content_usage_and_the_asked_model(coder):
    coder.enqueue(oai.chat_reply("def add(a, b):\n    return a + b\n"))

    answer = chat(coder)

    body = answer.json()
    assert answer.status_code == 200 and body["object"] == "chat.completion"
    assert body["model"] == "qwen2.5-coder"
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": "def add(a, b):\n    return a + b\n"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16}


def test_streamed_chunks_reassemble_into_the_full_text_and_end_with_done(coder):
    text = "Here is the change you asked for, with a test."
    coder.enqueue(oai.chat_reply(text))
    payload = {"model": "qwen2.5-coder", "stream": True,
               "stream_options": {"include_usage": True},
               "messages": [{"role": "user", "content": "go"}]}

    with httpx.stream("POST", f"{coder.url}/v1/chat/completions", json=payload) as answer:
        lines = [line for line in answer.iter_lines() if line]
        content_type = answer.headers["content-type"]

    assert content_type.startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                   if c["choices"]) == text
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12


def test_a_stream_without_include_usage_has_no_usage_chunk(coder):
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.stream("POST", f"{coder.url}/v1/chat/completions", json=payload) as answer:
        chunks = [json.loads(line[6:]) for line in answer.iter_lines()
                  if line.startswith("data: {")]

    assert all("usage" not in chunk and chunk["choices"] for chunk in chunks)


def test_a_stream_cut_mid_way_raises_a_protocol_error(coder):
    coder.enqueue(oai.chat_reply("one two three four five six", cut_after=2))
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}

    with pytest.raises(httpx.RemoteProtocolError), \
            httpx.stream("POST", f"{coder.url}/v1/chat/completions", json=payload) as answer:
        list(answer.iter_lines())


def test_the_model_list_names_the_served_models():
    with OpenAIServer(models=["qwen2.5-coder:7b", "llama3.1"], flavor="ollama") as server:
        body = httpx.get(f"{server.url}/v1/models").json()

    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["qwen2.5-coder:7b", "llama3.1"]


@pytest.mark.parametrize(("reply", "status", "body"), [
    (oai.vllm_error("max_tokens is too large"), 400,
     {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError",
      "param": None, "code": 400}),
    (oai.ollama_model_not_found("x", native=True), 404,
     {"error": 'model "x" not found, try pulling it first'}),
    (oai.ollama_model_not_found("x"), 404,
     {"error": {"message": 'model "x" not found, try pulling it first',
                "type": "not_found_error", "param": None, "code": None}}),
    (oai.lmstudio_error("No models loaded.", status=404), 404,
     {"error": {"message": "No models loaded.", "type": "invalid_request_error",
                "param": None, "code": None}}),
    (oai.lmstudio_error("Unexpected endpoint or method.", plain=True), 400,
     {"error": "Unexpected endpoint or method."}),
    (oai.llamacpp_error("context too long"), 400,
     {"error": {"code": 400, "message": "context too long", "type": "invalid_request_error"}}),
], ids=["vllm", "ollama-native", "ollama-v1", "lmstudio", "lmstudio-plain", "llamacpp"])
def test_each_vendor_error_keeps_its_own_shape(coder, reply, status, body):
    coder.enqueue(reply)

    answer = chat(coder)

    assert (answer.status_code, answer.json()) == (status, body)


@pytest.mark.parametrize(("flavor", "status", "model"), [
    ("vllm", 404, None), ("ollama", 404, None), ("lmstudio", 200, "qwen-loaded"),
])
def test_an_unknown_model_is_refused_or_answered_by_the_loaded_one(flavor, status, model):
    with OpenAIServer(flavor=flavor, models=["qwen-loaded"]) as server:
        answer = chat(server, model="gpt-4o")

    assert answer.status_code == status
    if model:
        assert answer.json()["model"] == model
    else:
        assert "gpt-4o" in json.dumps(answer.json())


def test_a_reply_can_name_another_model_than_asked(coder):
    coder.enqueue(oai.chat_reply("ok", model="qwen2.5-coder:1.5b"))

    assert chat(coder, model="qwen2.5-coder:7b").json()["model"] == "qwen2.5-coder:1.5b"


def test_an_empty_answer_is_served_as_empty_content(coder):
    coder.enqueue(oai.chat_reply(""))

    body = chat(coder).json()

    assert body["choices"][0]["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 0


def test_malformed_json_from_the_server_does_not_parse(coder):
    coder.enqueue(invalid_json())

    answer = chat(coder)

    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def test_a_malformed_request_gets_a_400_in_the_vendor_shape(coder):
    answer = httpx.post(f"{coder.url}/v1/chat/completions", content=b"{not json",
                        headers={"content-type": "application/json"})

    assert answer.status_code == 400
    assert answer.json()["object"] == "error"
    assert "not a valid JSON object" in answer.json()["message"]


def test_a_reset_connection_raises_a_transport_error(coder):
    coder.enqueue(Reset())

    with pytest.raises(httpx.TransportError):
        chat(coder)


def test_a_slow_answer_raises_a_read_timeout(coder):
    coder.enqueue(delayed(oai.chat_reply("late"), 5))

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{coder.url}/v1/chat/completions", timeout=0.2,
                   json={"model": "m", "messages": [{"role": "user", "content": "go"}]})


def test_bearer_auth_is_enforced_when_a_key_is_set():
    with OpenAIServer(api_key="local-secret") as server:
        refused = chat(server)
        accepted = httpx.post(f"{server.url}/v1/chat/completions",
                              headers={"authorization": "Bearer local-secret"},
                              json={"model": "m", "messages": [{"role": "user", "content": "x"}]})

    assert refused.status_code == 401 and refused.json() == {"error": "Unauthorized"}
    assert accepted.status_code == 200


def test_the_sample_coder_answers_with_an_edit_of_the_named_file(coder):
    body = chat(coder, messages=[{"role": "user",
                                  "content": "Fix the typo\nFile: accounts/views/base.py"}]).json()

    edit = json.loads(body["choices"][0]["message"]["content"])
    assert edit["edits"][0]["path"] == "accounts/views/base.py"
    assert "Fix the typo" in edit["edits"][0]["content"]


# Both servers --------------------------------------------------------------------------------


@pytest.mark.parametrize("server_class", [AnthropicServer, OpenAIServer])
def test_a_server_binds_loopback_only_and_frees_its_port_on_exit(server_class):
    with server_class() as server:
        port = server.port
        assert server.url == f"http://127.0.0.1:{port}"
        assert server._httpd.socket.getsockname()[0] == "127.0.0.1"
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_every_request_is_recorded_with_method_path_headers_and_body(coder):
    chat(coder, temperature=0.1)
    httpx.get(f"{coder.url}/v1/models?limit=3")

    posted, listed = coder.requests
    assert (posted.method, posted.path) == ("POST", "/v1/chat/completions")
    assert posted.body["temperature"] == 0.1
    assert posted.header("Content-Type") == "application/json"
    assert (listed.method, listed.path, listed.query) == ("GET", "/v1/models", {"limit": ["3"]})
    assert listed.time >= posted.time


def test_a_reply_queued_for_one_path_waits_for_that_path(coder):
    coder.enqueue(oai.chat_reply("scripted"), path="/v1/chat/completions")

    assert httpx.get(f"{coder.url}/v1/models").status_code == 200
    assert coder.pending == 1
    assert chat(coder).json()["choices"][0]["message"]["content"] == "scripted"
    assert coder.pending == 0


def test_slow_requests_are_served_concurrently(coder):
    coder.enqueue(*[delayed(oai.chat_reply(str(n)), 0.5) for n in range(4)])
    answers: list[int] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: answers.append(chat(coder).status_code))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 4
    assert time.monotonic() - started < 1.5


def test_a_server_runs_standalone_from_a_script_file(tmp_path: Path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"kind": "text", "text": "scripted answer"},
        {"kind": "error", "vendor": "ollama", "status": 404, "message": "gone"},
    ]))
    process = subprocess.Popen(
        [sys.executable, "-m", "sample_models", "openai", "--script", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2])
    try:
        line = process.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        first = httpx.post(f"{url}/v1/chat/completions", timeout=5,
                           json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        second = httpx.post(f"{url}/v1/chat/completions", timeout=5,
                            json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    finally:
        process.terminate()
        process.wait(timeout=5)

    assert first.json()["choices"][0]["message"]["content"] == "scripted answer"
    assert second.status_code == 404
    assert process.returncode == 0


def test_a_bad_script_file_stops_the_command_with_its_reason(tmp_path: Path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"kind": "poem"}]))

    done = subprocess.run(
        [sys.executable, "-m", "sample_models", "anthropic", "--script", str(script)],
        capture_output=True, text=True, timeout=20, cwd=Path(__file__).resolve().parents[2])

    assert done.returncode != 0
    assert "unknown reply kind 'poem'" in done.stderr


def test_a_longer_prompt_reads_the_shared_prefix_and_writes_the_rest_for_an_hour():
    tools = [{"name": "propose_tickets", "input_schema": {"type": "object"},
              "description": "d" * 4200, "cache_control": {"type": "ephemeral"}}]
    with AnthropicServer(prompt_cache=True) as server:
        sdk = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
        sdk.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=HELLO)
        longer = sdk.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=HELLO,
                                     system=[{"type": "text", "text": "Rules. " * 800,
                                              "cache_control": {"type": "ephemeral",
                                                                "ttl": "1h"}}]).usage

    tool_tokens = anth.count_input_tokens({"tools": tools})
    assert longer.cache_read_input_tokens == tool_tokens
    assert longer.cache_creation_input_tokens == 1400
    assert longer.cache_creation.ephemeral_1h_input_tokens == 1400
    assert longer.input_tokens == 5
