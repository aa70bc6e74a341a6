"""Loopback servers that speak the Anthropic and OpenAI-compatible APIs, for tests and the demo."""

from __future__ import annotations

from sample_models.anthropic import AnthropicServer, SampleTechLead
from sample_models.base import (
    RecordedRequest,
    Reply,
    Reset,
    Response,
    ScriptedServer,
    SSEEvent,
    Stream,
    delayed,
    invalid_json,
)
from sample_models.openai import OpenAIServer, SampleCoder

__all__ = [
    "AnthropicServer",
    "OpenAIServer",
    "RecordedRequest",
    "Reply",
    "Reset",
    "Response",
    "SSEEvent",
    "SampleCoder",
    "SampleTechLead",
    "ScriptedServer",
    "Stream",
    "delayed",
    "invalid_json",
]
