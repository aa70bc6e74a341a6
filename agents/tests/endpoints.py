"""Endpoints that several test modules point at their scripted model servers."""

from __future__ import annotations

from typing import Any

from agents import services
from agents.models import InferenceEndpoint


def tech_lead_endpoint(cast: Any, url: str) -> InferenceEndpoint:
    """The cast's Claude Tech Lead endpoint, served by a scripted server at `url`."""
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin, api_key="sk-ant-test",
        values={"name": "Claude", "kind": "anthropic", "base_url": url,
                "model": "claude-sonnet-4-6", "role": "tech_lead"})
