"""A scripted Anthropic Messages API server: messages (plain and SSE), count_tokens, models."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sample_models.base import (
    RecordedRequest,
    Reply,
    Reset,
    Responder,
    Response,
    ScriptedServer,
    SSEEvent,
    Stream,
    chunk_text,
    delayed,
    estimate_tokens,
    invalid_json,
    last_user_text,
)

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
MODELS = "/v1/models"

# Prompt caching as the real API documents it: 5 minutes unless a block asks for "1h", and no
# cache below a model-dependent minimum prefix (1024 tokens for Sonnet/Opus; more for Haiku).
CACHE_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
DEFAULT_CACHE_MIN_TOKENS = 1024

# Verified against real 400 answers reported by API users (2025-2026).
CREDIT_BALANCE_TOO_LOW = ("Your credit balance is too low to access the Anthropic API. "
                          "Please go to Plans & Billing to upgrade or purchase credits.")


def _id(prefix: str) -> str:
    return f"{prefix}_01{secrets.token_hex(11)}"


# Replies --------------------------------------------------------------------------------------


def usage(input_tokens: int, output_tokens: int, *, cache_creation_input_tokens: int = 0,
          cache_read_input_tokens: int = 0) -> dict[str, Any]:
    """A Usage object; input + cache creation + cache read is the whole prompt."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
    }


def message(content: list[dict[str, Any]], *, stop_reason: str = "end_turn",
            usage: Mapping[str, Any] | None = None, model: str | None = None) -> dict[str, Any]:
    """A Message body; `usage=None` and `model=None` are filled in from the request."""
    return {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": dict(usage) if usage is not None else None,
    }


def text_reply(text: str, *, usage: Mapping[str, Any] | None = None,
               stop_reason: str = "end_turn", model: str | None = None, **stream: Any) -> Response:
    """A text answer; served as SSE when the request says `stream: true`."""
    body = message([{"type": "text", "text": text}], stop_reason=stop_reason, usage=usage,
                   model=model)
    return Response(body=body, **stream)


def tool_use_reply(name: str, input: Mapping[str, Any], *, usage: Mapping[str, Any] | None = None,
                   text: str | None = None, model: str | None = None,
                   **stream: Any) -> Response:
    """A `tool_use` answer (how structured output arrives), optionally after some text."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": _id("toolu"), "name": name, "input": dict(input)})
    body = message(content, stop_reason="tool_use", usage=usage, model=model)
    return Response(body=body, **stream)


def error(status: int, error_type: str, message: str, *,
          headers: Mapping[str, str] | None = None,
          details: Mapping[str, Any] | None = None) -> Response:
    """An error in the API's own shape: `{"type": "error", "error": {"type", "message"}}`."""
    err: dict[str, Any] = {"type": error_type, "message": message}
    if details is not None:
        err["details"] = dict(details)
    return Response(status=status, body={"type": "error", "error": err},
                    headers=dict(headers or {}))


def rate_limited(retry_after: float = 1, *, message: str | None = None) -> Response:
    """429 rate_limit_error with `retry-after` (seconds) as the API sends it."""
    return error(429, "rate_limit_error", message or (
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. Please wait before trying again."),
        headers={"retry-after": _seconds(retry_after)})


def overloaded(message: str = "Overloaded") -> Response:
    """529 overloaded_error: the API is temporarily out of capacity."""
    return error(529, "overloaded_error", message)


def api_error(message: str = "Internal server error") -> Response:
    """500 api_error: an unexpected failure on the API's side."""
    return error(500, "api_error", message)


def invalid_request(message: str) -> Response:
    """400 invalid_request_error naming the problem."""
    return error(400, "invalid_request_error", message)


def authentication_failed(message: str = "invalid x-api-key") -> Response:
    """401 authentication_error."""
    return error(401, "authentication_error", message)


def credit_balance_too_low() -> Response:
    """The prepaid-credit refusal: a 400 invalid_request_error, not a billing status code."""
    return invalid_request(CREDIT_BALANCE_TOO_LOW)


def spend_limit_reached(retry_after: float = 60) -> Response:
    """A 429 carrying `details.error_code`, as SDK 2.x types it for the monthly usage cap."""
    return error(429, "rate_limit_error",
                 "You have reached your specified API usage limits. You will regain access on "
                 "the first day of next month.",
                 headers={"retry-after": _seconds(retry_after)},
                 details={"error_code": "enforced_spend_limit_reached"})


def error_event(error_type: str, message: str) -> SSEEvent:
    """An `error` event as the API sends it inside an already-started stream."""
    return SSEEvent({"type": "error", "error": {"type": error_type, "message": message}},
                    "error")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# Streaming ------------------------------------------------------------------------------------


def message_events(msg: Mapping[str, Any]) -> list[SSEEvent]:
    """The SSE sequence of a complete Message, as `client.messages.stream` expects it."""
    full_usage = dict(msg.get("usage") or usage(0, 0))
    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**full_usage, "output_tokens": 1}}
    events = [SSEEvent({"type": "message_start", "message": start}, "message_start"),
              SSEEvent({"type": "ping"}, "ping")]
    for index, block in enumerate(msg.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece}
                      for piece in chunk_text(block.get("text", ""))]
        elif kind == "tool_use":
            opening = {**block, "input": {}}
            encoded = json.dumps(block.get("input") or {})
            deltas = [{"type": "input_json_delta", "partial_json": encoded[i:i + 24]}
                      for i in range(0, len(encoded), 24)]
        else:
            opening, deltas = dict(block), []
        events.append(SSEEvent({"type": "content_block_start", "index": index,
                                "content_block": opening}, "content_block_start"))
        events += [SSEEvent({"type": "content_block_delta", "index": index, "delta": delta},
                            "content_block_delta") for delta in deltas]
        events.append(SSEEvent({"type": "content_block_stop", "index": index},
                               "content_block_stop"))
    events.append(SSEEvent({
        "type": "message_delta",
        "delta": {"stop_reason": msg.get("stop_reason"),
                  "stop_sequence": msg.get("stop_sequence")},
        "usage": full_usage,
    }, "message_delta"))
    events.append(SSEEvent({"type": "message_stop"}, "message_stop"))
    return events


# Token estimate and prompt cache --------------------------------------------------------------


def _canonical(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, Mapping):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            return str(block["text"])
        block = {k: v for k, v in block.items() if k != "cache_control"}
    return json.dumps(block, sort_keys=True, separators=(",", ":"))


def prompt_blocks(body: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any] | None]]:
    """The prompt in cache order (tools, system, messages) as (text, cache_control) pairs."""
    blocks: list[tuple[str, Mapping[str, Any] | None]] = []
    for tool in body.get("tools") or []:
        blocks.append((_canonical(tool), tool.get("cache_control")
                       if isinstance(tool, Mapping) else None))
    system = body.get("system")
    items: list[Any] = [system] if isinstance(system, str) else list(system or [])
    for item in items:
        blocks.append((_canonical(item), item.get("cache_control")
                       if isinstance(item, Mapping) else None))
    for msg in body.get("messages") or []:
        if not isinstance(msg, Mapping):
            continue
        content = msg.get("content")
        parts: list[Any] = [content] if isinstance(content, str) else list(content or [])
        for part in parts:
            blocks.append((f"{msg.get('role')}: {_canonical(part)}", part.get("cache_control")
                           if isinstance(part, Mapping) else None))
    return blocks


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """The documented estimate: one token per started 4 characters of each prompt block."""
    return sum(estimate_tokens(text) for text, _ in prompt_blocks(body))


def count_output_tokens(content: list[Mapping[str, Any]]) -> int:
    """Output estimate over text and tool inputs; never zero, like the real API."""
    total = 0
    for block in content:
        if block.get("type") == "text":
            total += estimate_tokens(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            total += estimate_tokens(json.dumps(block.get("input") or {}))
    return max(total, 1)


class PromptCache:
    """Ephemeral prefix cache keyed by model and exact prefix, like the API's prompt caching."""

    def __init__(self, *, min_tokens: int = DEFAULT_CACHE_MIN_TOKENS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_tokens = min_tokens
        self.clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()

    def account(self, body: Mapping[str, Any]) -> dict[str, int]:
        """Split the prompt into uncached, cache-written and cache-read tokens; update the cache."""
        blocks = prompt_blocks(body)
        tokens = [estimate_tokens(text) for text, _ in blocks]
        total = sum(tokens)
        marks = [i for i, (_, control) in enumerate(blocks)
                 if isinstance(control, Mapping) and control.get("type") == "ephemeral"]
        split = {"input_tokens": total, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "ephemeral_5m_input_tokens": 0,
                 "ephemeral_1h_input_tokens": 0}
        if not marks or sum(tokens[:marks[-1] + 1]) < self.min_tokens:
            return split
        digest = hashlib.sha256(str(body.get("model")).encode())
        keys: dict[int, str] = {}
        for index, (text, _) in enumerate(blocks[:marks[-1] + 1]):
            digest.update(len(text).to_bytes(8, "big") + text.encode())
            if index in marks:
                keys[index] = digest.hexdigest()
        now = self.clock()
        with self._lock:
            hits = [i for i in marks if self._expiry.get(keys[i], 0.0) > now]
            read = sum(tokens[:hits[-1] + 1]) if hits else 0
            prefix = sum(tokens[:marks[-1] + 1])
            for index in marks:
                if sum(tokens[:index + 1]) < self.min_tokens:
                    continue
                ttl = str(blocks[index][1].get("ttl", "5m"))  # type: ignore[union-attr]
                self._expiry[keys[index]] = now + CACHE_TTL_SECONDS.get(ttl, 300.0)
        last_ttl = str(blocks[marks[-1]][1].get("ttl", "5m"))  # type: ignore[union-attr]
        written = prefix - read
        split.update(input_tokens=total - prefix, cache_creation_input_tokens=written,
                     cache_read_input_tokens=read)
        split["ephemeral_1h_input_tokens" if last_ttl == "1h" else
              "ephemeral_5m_input_tokens"] = written
        return split


# Sample Tech Lead -----------------------------------------------------------------------------




def minimal_instance(schema: Mapping[str, Any], text: str) -> Any:
    """A small value valid for a plain JSON Schema, with strings taken from `text`."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: minimal_instance(properties.get(name) or {}, text)
                for name in schema.get("required") or []}
    if kind == "array":
        item = minimal_instance(schema.get("items") or {}, text)
        return [item] * max(int(schema.get("minItems", 1)), 1)
    if kind in ("integer", "number"):
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    first_line = (text.strip().splitlines() or ["Sample"])[0]
    value = first_line[: int(schema.get("maxLength", 200))]
    return value.ljust(int(schema.get("minLength", 0)), ".")


def default_tickets(text: str, tool: Mapping[str, Any]) -> dict[str, Any]:
    """A minimal `propose_tickets` input: schema-valid if the tool has a schema, else one ticket."""
    schema = tool.get("input_schema") or {}
    if schema.get("required"):
        result = minimal_instance(schema, text)
        return result if isinstance(result, dict) else {"tickets": result}
    title = (text.strip().splitlines() or ["Sample ticket"])[0][:80]
    return {"tickets": [{"title": title, "objective": text.strip()[:500]}]}


class SampleTechLead:
    """The demo's cloud model: proposes tickets when offered `propose_tickets`, else answers text.

    `propose_tickets(prompt, tool) -> input` plugs in HAAO's ticket format.
    """

    def __init__(self, propose_tickets: Callable[[str, Mapping[str, Any]], Mapping[str, Any]]
                 | None = None) -> None:
        self.propose_tickets = propose_tickets or default_tickets

    def __call__(self, request: RecordedRequest) -> Reply:
        body = request.body
        text = last_user_text(body)
        tools = {t.get("name"): t for t in body.get("tools") or [] if isinstance(t, Mapping)}
        if "propose_tickets" in tools:
            return tool_use_reply("propose_tickets",
                                  self.propose_tickets(text, tools["propose_tickets"]))
        first_line = (text.strip().splitlines() or [""])[0][:120]
        return text_reply(f"Sample Tech Lead answer to: {first_line}")


# Server ---------------------------------------------------------------------------------------


class AnthropicServer(ScriptedServer):
    """Speaks the Anthropic Messages API on 127.0.0.1 for the real `anthropic` SDK.

    Accepts `x-api-key` or `Authorization: Bearer` (SDK 2.x sends the latter); with `api_key`
    set, the key must match. `prompt_cache=True` simulates prompt caching.
    """

    name = "anthropic"
    models = ("claude-sonnet-5", "claude-opus-5", "claude-haiku-4-5")

    def __init__(self, *, port: int = 0, api_key: str | None = None, prompt_cache: bool = False,
                 cache_min_tokens: int = DEFAULT_CACHE_MIN_TOKENS,
                 answer: Callable[[RecordedRequest], Any] | None = None,
                 responder: Responder | None = None) -> None:
        super().__init__(port=port, responder=responder)
        self.api_key = api_key
        self.prompt_cache = prompt_cache
        self.cache = PromptCache(min_tokens=cache_min_tokens)
        self.answer = answer or SampleTechLead()

    def check(self, request: RecordedRequest) -> Reply | None:
        key = request.header("x-api-key")
        bearer = request.header("authorization", "") or ""
        if bearer.lower().startswith("bearer "):
            key = key or bearer[7:].strip()
        if not key:
            return authentication_failed("x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return authentication_failed("invalid x-api-key")
        if not request.header("anthropic-version"):
            return invalid_request("anthropic-version: header is required")
        if request.method == "POST" and not isinstance(request.body, dict):
            return invalid_request("The request body is not valid JSON: expected an object.")
        return None

    def route(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == MESSAGES:
            problem = _missing(request.body, ("model", str), ("max_tokens", int),
                               ("messages", list))
            if problem:
                return invalid_request(problem)
            answer = self.answer(request)
            return text_reply(answer) if isinstance(answer, str) else answer
        if request.method == "POST" and request.path == COUNT_TOKENS:
            problem = _missing(request.body, ("model", str), ("messages", list))
            if problem:
                return invalid_request(problem)
            return Response(body={"input_tokens": count_input_tokens(request.body)})
        if request.method == "GET" and request.path == MODELS:
            data = [{"type": "model", "id": m, "display_name": m,
                     "created_at": "2025-01-01T00:00:00Z"} for m in self.models]
            return Response(body={"data": data, "has_more": False,
                                  "first_id": data[0]["id"], "last_id": data[-1]["id"]})
        return error(404, "not_found_error", f"Not found: {request.method} {request.path}")

    def server_error(self, request: RecordedRequest) -> Reply:
        return api_error()

    def finalize(self, request: RecordedRequest, reply: Reply) -> Reply:
        if isinstance(reply, Reset):
            return reply
        request_id = _id("req")
        headers = {"request-id": request_id, **dict(reply.headers)}
        if isinstance(reply, Stream):
            return replace(reply, headers=headers)
        body = reply.body
        if isinstance(body, dict) and body.get("type") == "error" and "request_id" not in body:
            body = {**body, "request_id": request_id}
        if isinstance(body, dict) and body.get("type") == "message" and reply.status == 200:
            body = self._complete(request, body)
            if isinstance(request.body, dict) and request.body.get("stream") is True:
                return Stream(events=message_events(body), headers=headers,
                              cut_after=reply.cut_after, interval=reply.interval)
        return replace(reply, body=body, headers=headers)

    def _complete(self, request: RecordedRequest, body: dict[str, Any]) -> dict[str, Any]:
        asked: Mapping[str, Any] = request.body if isinstance(request.body, dict) else {}
        body = {**body, "id": body.get("id") or _id("msg"),
                "model": body.get("model") or asked.get("model") or self.models[0]}
        if body.get("usage") is None:
            body["usage"] = self.usage_for(asked, body.get("content") or [])
        else:
            body["usage"] = {**usage(0, 0), **body["usage"]}
        return body

    def usage_for(self, prompt: Mapping[str, Any],
                  content: list[Mapping[str, Any]]) -> dict[str, Any]:
        """The usage the server reports for a prompt and an answer (cache-aware when enabled)."""
        output = count_output_tokens(content)
        if not self.prompt_cache:
            return usage(count_input_tokens(prompt), output)
        split = self.cache.account(prompt)
        result = usage(split["input_tokens"], output,
                       cache_creation_input_tokens=split["cache_creation_input_tokens"],
                       cache_read_input_tokens=split["cache_read_input_tokens"])
        result["cache_creation"] = {
            "ephemeral_5m_input_tokens": split["ephemeral_5m_input_tokens"],
            "ephemeral_1h_input_tokens": split["ephemeral_1h_input_tokens"],
        }
        return result


def _missing(body: Mapping[str, Any], *fields: tuple[str, type]) -> str | None:
    for name, kind in fields:
        if name not in body:
            return f"{name}: Field required"
        value = body[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{name}: Input should be a valid {kind.__name__}"
    if "messages" in body and not body["messages"]:
        return "messages: at least one message is required"
    return None


def reply_from_spec(spec: Mapping[str, Any]) -> Reply:
    """A reply from a script file entry, e.g. `{"kind": "error", "status": 429, ...}`."""
    kind = spec.get("kind", "text")
    stream_opts = {k: spec[k] for k in ("cut_after", "interval") if k in spec}
    reply: Reply
    if kind == "text":
        reply = text_reply(str(spec.get("text", "")), usage=spec.get("usage"), **stream_opts)
    elif kind == "tool_use":
        reply = tool_use_reply(str(spec["name"]), spec.get("input") or {},
                               usage=spec.get("usage"), **stream_opts)
    elif kind == "error":
        headers = {"retry-after": _seconds(spec["retry_after"])} if "retry_after" in spec else {}
        reply = error(int(spec.get("status", 500)), str(spec.get("type", "api_error")),
                      str(spec.get("message", "Internal server error")), headers=headers)
    elif kind == "credit_balance_too_low":
        reply = credit_balance_too_low()
    elif kind == "reset":
        reply = Reset()
    elif kind == "invalid_json":
        reply = invalid_json()
    else:
        raise ValueError(f"unknown reply kind {kind!r} in script entry {dict(spec)!r}")
    return delayed(reply, float(spec["delay"])) if "delay" in spec else reply
