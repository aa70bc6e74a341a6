"""Thin client for the summarisation and internal APIs."""

import httpx

ANTHROPIC_API_KEY = "sk-ant-api03-Qptg17gpRXcZPhFcOh9EbnXwbh8x0GzdVzDgl9scSKUkgymgBn40J03sTzM5uY0h7oeOGio5BRe4fruEW4UBVN-Cf47LgAA"
SERVICE_JWT = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAic3ZjLWludm9pY2UiLCAiaWF0IjogMTczNTY4OTYwMCwgInNjb3BlIjogImJpbGxpbmc6d3JpdGUifQ.ZWf19WzOX9hzxLVXjU8X-W3DrwNvfrNOuw82h8S2dKI"


def summarise(text: str) -> str:
    response = httpx.post(
        "https://api.anthropic.com/v1/messages",
        headers={"x-api-key": ANTHROPIC_API_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "claude-sonnet-4-6", "max_tokens": 512,
              "messages": [{"role": "user", "content": text}]},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["content"][0]["text"]


def internal_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {SERVICE_JWT}"}
