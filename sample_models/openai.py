"""A scripted OpenAI-compatible server, in the manner of vLLM, Ollama, LM Studio or llama.cpp."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

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

CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
DEFAULT_MODEL = "sample-coder"

Flavor = Literal["vllm", "ollama", "lmstudio", "llamacpp", "openai"]
FLAVORS: tuple[str, ...] = ("vllm", "ollama", "lmstudio", "llamacpp", "openai")


def _id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


# Replies --------------------------------------------------------------------------------------


def chat_reply(content: str | None, *, model: str | None = None,
               usage: Mapping[str, int] | None = None, finish_reason: str = "stop",
               tool_calls: Sequence[Mapping[str, Any]] | None = None,
               **stream: Any) -> Response:
    """A chat completion; `model=None`/`usage=None` are filled from the request.

    Served as SSE chunks when the request says `stream: true`; `tool_calls` items are
    `{"name": ..., "arguments": {...}}`.
    """
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{secrets.token_hex(6)}", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
            for call in tool_calls]
        finish_reason = "tool_calls"
    body = {
        "id": _id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": dict(usage) if usage is not None else None,
    }
    return Response(body=body, **stream)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object of a completion."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def openai_error(message: str, *, status: int = 400, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> Response:
    """OpenAI's own error shape: `{"error": {"message", "type", "param", "code"}}`."""
    return Response(status=status, body={"error": {"message": message, "type": type,
                                                   "param": param, "code": code}})


def vllm_error(message: str, *, status: int = 400, type: str = "BadRequestError",
               nested: bool = False) -> Response:
    """vLLM's ErrorResponse: flat with `"object": "error"`; newer releases nest it under "error"."""
    inner: dict[str, Any] = {"message": message, "type": type, "param": None, "code": status}
    body: dict[str, Any] = {"error": inner} if nested else {"object": "error", **inner}
    return Response(status=status, body=body)


def ollama_error(message: str, *, status: int = 404, native: bool = False) -> Response:
    """Ollama's errors: plain `{"error": "..."}` natively, OpenAI-shaped under `/v1`."""
    if native:
        return Response(status=status, body={"error": message})
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return Response(status=status, body={"error": {"message": message, "type": kind,
                                                   "param": None, "code": None}})


def ollama_model_not_found(model: str, *, native: bool = False) -> Response:
    """What Ollama answers for a model that was never pulled."""
    return ollama_error(f'model "{model}" not found, try pulling it first', native=native)


def lmstudio_error(message: str, *, status: int = 400, type: str = "invalid_request_error",
                   plain: bool = False) -> Response:
    """LM Studio's errors: `{"error": {"message", "type", ...}}`, or a bare string on old paths."""
    if plain:
        return Response(status=status, body={"error": message})
    return Response(status=status, body={"error": {"message": message, "type": type,
                                                   "param": None, "code": None}})


def llamacpp_error(message: str, *, status: int = 400,
                   type: str = "invalid_request_error") -> Response:
    """llama.cpp server's errors: `{"error": {"code", "message", "type"}}`."""
    return Response(status=status, body={"error": {"code": status, "message": message,
                                                   "type": type}})


def stream_error_event(message: str, type: str = "server_error") -> SSEEvent:
    """An error inside an already-started stream, as OpenAI-compatible servers send it."""
    return SSEEvent({"error": {"message": message, "type": type}})


# Streaming ------------------------------------------------------------------------------------


def completion_chunks(completion: Mapping[str, Any], *,
                      include_usage: bool = False) -> list[SSEEvent]:
    """The `chat.completion.chunk` events of a completion, ending with `data: [DONE]`."""
    base = {"id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"],
            "system_fingerprint": completion.get("system_fingerprint")}
    extra = {"usage": None} if include_usage else {}
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> SSEEvent:
        return SSEEvent({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                              "finish_reason": finish_reason}], **extra})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in chunk_text(message.get("content") or "")]
    for index, call in enumerate(message.get("tool_calls") or []):
        events.append(chunk({"tool_calls": [{"index": index, "id": call["id"],
                                             "type": "function",
                                             "function": {"name": call["function"]["name"],
                                                          "arguments": ""}}]}))
        arguments = call["function"]["arguments"]
        events += [chunk({"tool_calls": [{"index": index,
                                          "function": {"arguments": arguments[i:i + 24]}}]})
                   for i in range(0, len(arguments), 24)]
    events.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage:
        events.append(SSEEvent({**base, "choices": [], "usage": completion.get("usage")}))
    events.append(SSEEvent("[DONE]"))
    return events


# Token estimate -------------------------------------------------------------------------------


def count_prompt_tokens(body: Mapping[str, Any]) -> int:
    """The documented estimate: one token per started 4 characters of each message and tool."""
    total = 0
    for message in body.get("messages") or []:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            total += sum(estimate_tokens(str(part.get("text", ""))) for part in content
                         if isinstance(part, Mapping))
    for tool in body.get("tools") or []:
        total += estimate_tokens(json.dumps(tool, sort_keys=True))
    return total


def count_completion_tokens(message: Mapping[str, Any]) -> int:
    """Completion estimate over the content and any tool call arguments."""
    total = estimate_tokens(message.get("content") or "")
    for call in message.get("tool_calls") or []:
        total += estimate_tokens(call["function"]["arguments"])
    return total


# Sample coder ---------------------------------------------------------------------------------




_PATH = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.[A-Za-z0-9]{1,8})(?![\w/])")


def default_edit(prompt: str) -> str:
    """A deterministic edit for the first file path named in the prompt, as a JSON document."""
    match = _PATH.search(prompt)
    path = match.group(1) if match else "README.md"
    title = (prompt.strip().splitlines() or ["change"])[0][:80]
    return json.dumps({"edits": [{"path": path, "action": "append",
                                  "content": f"# sample coder: {title}\n"}]})


class SampleCoder:
    """The demo's local coder: answers a ticket with a deterministic edit derived from it.

    `edit(prompt) -> str` plugs in HAAO's edit format.
    """

    def __init__(self, edit: Callable[[str], str] | None = None) -> None:
        self.edit = edit or default_edit

    def __call__(self, request: RecordedRequest) -> Reply:
        return chat_reply(self.edit(last_user_text(request.body)))


# Server ---------------------------------------------------------------------------------------


class OpenAIServer(ScriptedServer):
    """Speaks `/v1/models` and `/v1/chat/completions` like a local model server.

    `flavor` picks whose error bodies and model-name handling to imitate; `models=None`
    accepts any model name; `api_key` turns on bearer authentication.
    """

    name = "openai"

    def __init__(self, *, port: int = 0, flavor: Flavor = "vllm",
                 models: Sequence[str] | None = None, api_key: str | None = None,
                 answer: Callable[[RecordedRequest], Any] | None = None,
                 responder: Responder | None = None) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {flavor!r}")
        super().__init__(port=port, responder=responder)
        self.flavor: Flavor = flavor
        self.models = list(models) if models is not None else None
        self.api_key = api_key
        self.answer = answer or SampleCoder()

    # Vendor-shaped errors ------------------------------------------------------------------

    def error(self, message: str, *, status: int = 400) -> Response:
        """An error in this server's flavor."""
        if self.flavor == "vllm":
            kind = {400: "BadRequestError", 401: "Unauthorized", 404: "NotFoundError"}
            return vllm_error(message, status=status, type=kind.get(status, "InternalServerError"))
        if self.flavor == "ollama":
            return ollama_error(message, status=status)
        if self.flavor == "lmstudio":
            return lmstudio_error(message, status=status)
        if self.flavor == "llamacpp":
            kind = {401: "authentication_error", 404: "not_found_error"}
            return llamacpp_error(message, status=status,
                                  type=kind.get(status, "invalid_request_error"))
        return openai_error(message, status=status)

    def model_not_found(self, model: str) -> Response:
        """The flavor's answer for an unknown model name."""
        if self.flavor == "ollama":
            return ollama_model_not_found(model)
        if self.flavor == "openai":
            return openai_error(f"The model `{model}` does not exist or you do not have access "
                                "to it.", status=404, code="model_not_found")
        return self.error(f"The model `{model}` does not exist.", status=404)

    # Protocol ------------------------------------------------------------------------------

    def check(self, request: RecordedRequest) -> Reply | None:
        if self.api_key is not None:
            header = request.header("authorization", "") or ""
            if header != f"Bearer {self.api_key}":
                if self.flavor == "vllm":
                    return Response(status=401, body={"error": "Unauthorized"})
                return self.error("Invalid API key", status=401)
        if request.method == "POST" and not isinstance(request.body, dict):
            return self.error("The request body is not a valid JSON object.", status=400)
        return None

    def served_models(self) -> list[str]:
        return self.models if self.models else [DEFAULT_MODEL]

    def route(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == MODELS:
            owner = {"vllm": "vllm", "ollama": "library", "lmstudio": "organization_owner",
                     "llamacpp": "llamacpp", "openai": "system"}[self.flavor]
            data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": owner}
                    for m in self.served_models()]
            return Response(body={"object": "list", "data": data})
        if request.method == "POST" and request.path == CHAT:
            body = request.body
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return self.error("messages: a non-empty list of messages is required")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                return self.error("model: a model name is required")
            if self.models is not None and model not in self.models \
                    and self.flavor not in ("lmstudio", "llamacpp"):
                return self.model_not_found(model)
            answer = self.answer(request)
            return chat_reply(answer) if isinstance(answer, str) else answer
        return self.error(f"Unexpected endpoint or method. ({request.method} {request.path})",
                          status=404)

    def server_error(self, request: RecordedRequest) -> Reply:
        return self.error("Internal server error", status=500)

    def finalize(self, request: RecordedRequest, reply: Reply) -> Reply:
        if isinstance(reply, (Reset, Stream)):
            return reply
        body = reply.body
        if not (isinstance(body, dict) and body.get("object") == "chat.completion"
                and reply.status == 200):
            return reply
        asked: Mapping[str, Any] = request.body if isinstance(request.body, dict) else {}
        body = {**body, "system_fingerprint": body.get("system_fingerprint")
                or f"fp_{self.flavor}"}
        if body.get("model") is None:
            # LM Studio and llama.cpp answer with the loaded model whatever the request named.
            loaded = self.models and asked.get("model") not in self.models \
                and self.flavor in ("lmstudio", "llamacpp")
            body["model"] = self.served_models()[0] if loaded else (
                asked.get("model") or self.served_models()[0])
        if body.get("usage") is None:
            body["usage"] = usage(count_prompt_tokens(asked),
                                  count_completion_tokens(body["choices"][0]["message"]))
        if asked.get("stream") is True:
            options = asked.get("stream_options")
            include = isinstance(options, dict) and options.get("include_usage") is True
            return Stream(events=completion_chunks(body, include_usage=include),
                          headers=reply.headers, delay=reply.delay, cut_after=reply.cut_after,
                          interval=reply.interval)
        return replace(reply, body=body)


def reply_from_spec(spec: Mapping[str, Any]) -> Reply:
    """A reply from a script file entry, e.g. `{"kind": "error", "vendor": "ollama", ...}`."""
    kind = spec.get("kind", "text")
    stream_opts = {k: spec[k] for k in ("cut_after", "interval") if k in spec}
    reply: Reply
    if kind == "text":
        reply = chat_reply(spec.get("text", ""), model=spec.get("model"),
                           usage=spec.get("usage"), **stream_opts)
    elif kind == "error":
        status = int(spec.get("status", 500))
        message = str(spec.get("message", "Internal server error"))
        makers: dict[str, Callable[..., Response]] = {
            "vllm": vllm_error, "ollama": ollama_error, "lmstudio": lmstudio_error,
            "llamacpp": llamacpp_error, "openai": openai_error}
        vendor = str(spec.get("vendor", "openai"))
        if vendor not in makers:
            raise ValueError(f"unknown vendor {vendor!r}; expected one of {', '.join(makers)}")
        reply = makers[vendor](message, status=status)
    elif kind == "reset":
        reply = Reset()
    elif kind == "invalid_json":
        reply = invalid_json()
    else:
        raise ValueError(f"unknown reply kind {kind!r} in script entry {dict(spec)!r}")
    return delayed(reply, float(spec["delay"])) if "delay" in spec else reply
