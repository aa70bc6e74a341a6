"""The local coder's client: one chat completion against an OpenAI-compatible server.

Local servers (vLLM, Ollama, LM Studio, llama.cpp) all speak `/v1/chat/completions` but
differ in their error bodies and in how they treat the model name; see
docs/model-servers.md. Every way a call can go wrong ends as a `CoderFailure` whose
`outcome` is one of the ledger's `CallOutcome` values, so the attempt pipeline records it
instead of crashing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from agents.models import CallOutcome, InferenceEndpoint
from agents.tls import tls_context
from haao.errors import ApplicationError
from haao.ssrf import PinnedTransport, check_endpoint_url

DEFAULT_TIMEOUT = 120.0
CONNECT_TIMEOUT = 10.0
# A coder answer is a few edit blocks; anything far beyond this is a runaway generation.
MAX_REPLY_CHARS = 1_000_000
MESSAGE_LIMIT = 500
# A plain JSON answer larger than this is not read into memory at all.
MAX_BODY_BYTES = 8 * 1024 * 1024

Message = Mapping[str, str]
TokenCallback = Callable[[str], None]


@dataclass(frozen=True)
class Usage:
    """Token counts of one call; `estimated` when the server reported none."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True)
class CoderReply:
    """What the coder answered, the model that answered it, its usage and latency."""

    text: str
    model: str
    usage: Usage
    latency_ms: int
    request_id: str = ""
    finish_reason: str = ""
    model_mismatch: bool = False


class CoderFailure(ApplicationError):
    """A coder call that produced no usable answer; `outcome` is a CallOutcome value."""

    code = "coder_failed"
    status = 502

    def __init__(self, outcome: str, message: str, *, reason: str = "",
                 status_code: int | None = None, latency_ms: int = 0, request_id: str = "",
                 usage: Usage | None = None, model: str = "") -> None:
        super().__init__(message, details={"outcome": outcome, "reason": reason or outcome,
                                           "status_code": status_code})
        self.outcome = outcome
        self.reason = reason or outcome
        self.status_code = status_code
        self.latency_ms = latency_ms
        self.request_id = request_id
        self.usage = usage or Usage()
        self.model = model

    def __str__(self) -> str:
        return f"{self.outcome}: {self.message}"


def chat_url(base_url: str) -> str:
    """`/v1/chat/completions` of a server whose base URL may or may not end in `/v1`."""
    base = base_url.rstrip("/")
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def estimate_tokens(text: str) -> int:
    """A rough count for servers that report no usage: one token per started 4 characters."""
    return math.ceil(len(text) / 4)


def _estimate_prompt(messages: Sequence[Message]) -> int:
    return sum(estimate_tokens(str(message.get("content", ""))) for message in messages)


def _short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def error_message(body: Any, fallback: str = "") -> str:
    """The human message of an error body in any local server's shape.

    vLLM: `{"object": "error", "message"}` or `{"error": {"message"}}`; Ollama natively,
    LM Studio's old paths and vLLM's 401: `{"error": "..."}`; llama.cpp, LM Studio and
    OpenAI: `{"error": {"message", "type", ...}}`; a stream's error event has the same shape.
    """
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, str) and inner:
            return inner
        if isinstance(inner, Mapping):
            message = inner.get("message") or inner.get("msg") or inner.get("type")
            if message:
                return str(message)
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])
    return fallback


def _error_type(body: Any) -> str:
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            return str(inner.get("type") or inner.get("code") or "")
        if body.get("object") == "error":
            return str(body.get("type") or "")
    return ""


def _request_id(response: httpx.Response, body: Any = None) -> str:
    for header in ("x-request-id", "request-id"):
        if response.headers.get(header):
            return str(response.headers[header])[:200]
    if isinstance(body, Mapping) and isinstance(body.get("id"), str):
        return body["id"][:200]
    return ""


def _status_failure(response: httpx.Response, body: Any, text: str, *, model: str,
                    latency_ms: int) -> CoderFailure:
    """The failure an HTTP error status stands for, with the vendor's own message."""
    status = response.status_code
    detail = _short(error_message(body, fallback=text) or response.reason_phrase)
    kind = _error_type(body).lower()
    outcome, reason = CallOutcome.CLIENT_ERROR, "http_error"
    if status == 429:
        outcome, reason = CallOutcome.RATE_LIMITED, "rate_limited"
        retry = response.headers.get("retry-after")
        if retry:
            detail += f" (retry after {retry[:20]} s)"
    elif status in (408, 504):
        outcome, reason = CallOutcome.TIMEOUT, "server_timeout"
    elif status >= 500:
        outcome, reason = CallOutcome.SERVER_ERROR, "server_error"
    elif status in (401, 403):
        reason = "unauthorized"
    elif status == 404 and ("model" in detail.lower() or "not_found" in kind):
        reason = "model_not_found"
    message = f"The coder endpoint answered HTTP {status}: {detail}"
    return CoderFailure(outcome, message, reason=reason, status_code=status,
                        latency_ms=latency_ms, request_id=_request_id(response, body),
                        model=model)


class _Call:
    """One request's state: timing, the model asked for, and how to fail with context."""

    def __init__(self, *, model: str, messages: Sequence[Message], timeout: float,
                 strict_model: bool) -> None:
        self.model = model
        self.messages = messages
        self.timeout = timeout
        self.strict_model = strict_model
        self.started = time.monotonic()
        self.request_id = ""

    @property
    def latency_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def fail(self, outcome: str, message: str, *, reason: str = "",
             usage: Usage | None = None) -> CoderFailure:
        return CoderFailure(outcome, message, reason=reason, latency_ms=self.latency_ms,
                            request_id=self.request_id, usage=usage, model=self.model)

    def overdue(self) -> bool:
        return time.monotonic() - self.started > self.timeout

    def finish(self, *, text: str, served: str, usage: Usage | None,
               finish_reason: str) -> CoderReply:
        """Check the assembled answer and wrap it; empty text or a refused model fail."""
        served = served or self.model
        if usage is None:
            usage = Usage(_estimate_prompt(self.messages), estimate_tokens(text), estimated=True)
        mismatch = served != self.model
        if mismatch and self.strict_model:
            raise self.fail(CallOutcome.INVALID_OUTPUT,
                            f"The endpoint answered with model '{_short(served, 200)}' instead "
                            f"of '{_short(self.model, 200)}'; this endpoint requires the exact "
                            "model.", reason="wrong_model", usage=usage)
        if not text.strip():
            suffix = f" (finish reason: {finish_reason})" if finish_reason else ""
            raise self.fail(CallOutcome.INVALID_OUTPUT,
                            f"The coder answered with empty content{suffix}.",
                            reason="empty_content", usage=usage)
        return CoderReply(text=text, model=served, usage=usage, latency_ms=self.latency_ms,
                          request_id=self.request_id, finish_reason=finish_reason,
                          model_mismatch=mismatch)


def _usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in (prompt, completion)):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    return Usage(prompt, completion)


def _read_capped(call: _Call, response: httpx.Response) -> bytes:
    """The body, or a failure once it grows beyond MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise call.fail(CallOutcome.INVALID_OUTPUT,
                            f"The endpoint's answer is larger than {MAX_BODY_BYTES} bytes.",
                            reason="too_long")
        chunks.append(chunk)
    return b"".join(chunks)


def _plain(call: _Call, response: httpx.Response) -> CoderReply:
    raw = _read_capped(call, response)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        shown = _short(raw.decode("utf-8", "replace"), 200)
        raise call.fail(CallOutcome.INVALID_OUTPUT,
                        f"The endpoint's answer is not valid JSON: {shown!r}",
                        reason="invalid_json") from None
    call.request_id = call.request_id or _request_id(response, body)
    if not isinstance(body, Mapping):
        raise call.fail(CallOutcome.INVALID_OUTPUT, "The endpoint's answer is not a JSON object.",
                        reason="invalid_json")
    if body.get("error") and not body.get("choices"):
        raise call.fail(CallOutcome.SERVER_ERROR,
                        f"The endpoint reported an error: {_short(error_message(body))}",
                        reason="server_error")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise call.fail(CallOutcome.INVALID_OUTPUT, "The endpoint's answer has no choices.",
                        reason="no_choices")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if content is not None and not isinstance(content, str):
        raise call.fail(CallOutcome.INVALID_OUTPUT,
                        "The endpoint's answer has non-text message content.",
                        reason="invalid_content")
    text = content or ""
    if len(text) > MAX_REPLY_CHARS:
        raise call.fail(CallOutcome.INVALID_OUTPUT,
                        f"The answer is longer than {MAX_REPLY_CHARS} characters.",
                        reason="too_long")
    served = body.get("model") if isinstance(body.get("model"), str) else ""
    return call.finish(text=text, served=str(served), usage=_usage_of(body.get("usage")),
                       finish_reason=str(choice.get("finish_reason") or ""))


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The `data` of each server-sent event; multi-line data is joined with newlines."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _streamed(call: _Call, response: httpx.Response,
              on_token: TokenCallback | None) -> CoderReply:
    pieces: list[str] = []
    size = 0
    served = ""
    usage: Usage | None = None
    finish_reason = ""
    done = False
    for data in _sse_data(response.iter_lines()):
        if call.overdue():
            raise call.fail(CallOutcome.TIMEOUT,
                            f"The coder did not finish within {call.timeout:g} seconds.",
                            reason="timeout")
        if data.strip() == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise call.fail(CallOutcome.INVALID_OUTPUT,
                            f"A streamed chunk is not valid JSON: {_short(data, 200)!r}",
                            reason="invalid_json") from None
        if not isinstance(chunk, Mapping):
            raise call.fail(CallOutcome.INVALID_OUTPUT, "A streamed chunk is not a JSON object.",
                            reason="invalid_json")
        if chunk.get("error"):
            raise call.fail(CallOutcome.SERVER_ERROR,
                            f"The endpoint reported an error mid-stream: "
                            f"{_short(error_message(chunk))}", reason="stream_error")
        call.request_id = call.request_id or _request_id(response, chunk)
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            served = chunk["model"]
        usage = _usage_of(chunk.get("usage")) or usage
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(piece, str) and piece:
                size += len(piece)
                if size > MAX_REPLY_CHARS:
                    raise call.fail(CallOutcome.INVALID_OUTPUT,
                                    f"The answer is longer than {MAX_REPLY_CHARS} characters.",
                                    reason="too_long")
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
            if choice.get("finish_reason"):
                finish_reason = str(choice["finish_reason"])
    if not done and not finish_reason:
        raise call.fail(CallOutcome.CONNECTION_ERROR,
                        "The stream ended before the answer was complete.", reason="stream_cut")
    return call.finish(text="".join(pieces), served=served, usage=usage,
                       finish_reason=finish_reason)


def complete(*, endpoint: InferenceEndpoint, messages: Sequence[Message], stream: bool = False,
             on_token: TokenCallback | None = None, timeout: float = DEFAULT_TIMEOUT,
             max_tokens: int | None = None, temperature: float | None = 0.0,
             strict_model: bool = False,
             transport: httpx.BaseTransport | None = None) -> CoderReply:
    """Send `messages` to the endpoint's model; raise CoderFailure for any unusable answer.

    `strict_model` refuses an answer from another model than the endpoint names (LM Studio
    and llama.cpp answer with whatever model is loaded); `on_token` sees streamed pieces.
    """
    if not messages:
        raise ValueError("messages must not be empty")
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    call = _Call(model=endpoint.model, messages=messages, timeout=timeout,
                 strict_model=strict_model)
    try:
        # Right before the request: what the host resolves to may have changed since saving.
        check_endpoint_url(endpoint.base_url, organization_id=endpoint.organization_id)
    except ApplicationError as refused:
        raise call.fail(CallOutcome.BLOCKED, refused.message, reason="url_refused") from None
    payload: dict[str, Any] = {"model": endpoint.model,
                               "messages": [dict(message) for message in messages],
                               "stream": stream}
    if stream:
        payload["stream_options"] = {"include_usage": True}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    if temperature is not None:
        payload["temperature"] = temperature
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    key = endpoint.reveal_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    limits = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
    call.started = time.monotonic()
    try:
        # No redirects (one could point past the SSRF guard), and the connection goes to
        # the address the guard checked.
        with httpx.Client(timeout=limits, follow_redirects=False,
                          transport=transport or PinnedTransport(
                              organization_id=endpoint.organization_id,
                              verify=tls_context())) as client, \
                client.stream("POST", chat_url(endpoint.base_url), json=payload,
                              headers=headers) as response:
            call.request_id = _request_id(response)
            if response.status_code != 200:
                raw = _read_capped(call, response).decode("utf-8", "replace")
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
                raise _status_failure(response, body, raw, model=endpoint.model,
                                      latency_ms=call.latency_ms)
            content_type = response.headers.get("content-type", "")
            if stream and "text/event-stream" in content_type:
                return _streamed(call, response, on_token)
            return _plain(call, response)
    except CoderFailure:
        raise
    except httpx.TimeoutException:
        raise call.fail(CallOutcome.TIMEOUT,
                        f"The coder endpoint gave no answer within {timeout:g} seconds.",
                        reason="timeout") from None
    except httpx.ConnectError as error:
        raise call.fail(CallOutcome.CONNECTION_ERROR,
                        f"Could not connect to the coder endpoint: {_short(str(error), 200)}",
                        reason="connect") from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
        raise call.fail(CallOutcome.CONNECTION_ERROR,
                        "The coder endpoint dropped the connection: "
                        f"{_short(str(error) or type(error).__name__, 200)}",
                        reason="connection_reset") from None
    except httpx.HTTPError as error:
        raise call.fail(CallOutcome.ERROR,
                        f"The request to the coder endpoint failed: "
                        f"{type(error).__name__}: {_short(str(error), 200)}",
                        reason="http") from None
