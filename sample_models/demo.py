"""The sample models of `make run` without keys: a scripted Tech Lead and coder on 127.0.0.1.

They know one task, the sample project's rounding defect (samples/invoice-calc), and play
the loop's parts honestly: the Tech Lead proposes a ticket whose Definition of Done is the
project's test suite, the coder's first answer is wrong (the tests fail) and its retry, which
sees the failing output, is right; the audit passes work whose checks passed. Everything else
(applying edits, running the tests in the sandbox, merging) is HAAO's real code.

    python -m sample_models.demo --port 8100   # Tech Lead on 8100, coder on 8101
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from typing import Any

from sample_models.anthropic import AnthropicServer, tool_use_reply
from sample_models.base import RecordedRequest, last_user_text
from sample_models.openai import OpenAIServer
from sample_models.rounding import RIGHT_FIX, ROUNDING_TICKET, WRONG_FIX

SAMPLE_CODER_MODEL = "sample-coder"

AUDIT_PASSED = {"passed": True, "findings": [],
                "summary": "Sample audit: the diff does what the ticket asks, within its allowed "
                           "paths, and the Definition of Done passed."}


# A requirement about rounding is the one the sample models know; any other is declined.
ROUNDING_REQUIREMENT = re.compile(r"\bround", re.IGNORECASE)
DECLINED = ("The sample models can only do the sample rounding task: a requirement about how "
            "invoice_calc rounds money (e.g. “Totals of 0.125 must round to 0.13”). Set "
            "ANTHROPIC_API_KEY for a real Tech Lead (README, “Models”).")


def sample_tech_lead(request: RecordedRequest) -> Any:
    """Propose the rounding ticket (declining any other requirement), pass audits of checked
    work, solve with the right fix."""
    tools = {tool.get("name") for tool in request.body.get("tools") or []
             if isinstance(tool, dict)}
    if "propose_tickets" in tools:
        asked = last_user_text(request.body).split("\n\nThe project's own test suite")[0]
        if not ROUNDING_REQUIREMENT.search(asked):
            return tool_use_reply("propose_tickets", {"tickets": [], "declined": DECLINED})
        return tool_use_reply("propose_tickets", {"tickets": [ROUNDING_TICKET]})
    if "submit_audit" in tools:
        return tool_use_reply("submit_audit", AUDIT_PASSED)
    return RIGHT_FIX


def sample_coder(request: RecordedRequest) -> str:
    """A first answer that fails the tests; a retry that was shown the failure fixes it."""
    prompt = last_user_text(request.body)
    if "## What went wrong in attempt" in prompt or "## Reviewer feedback" in prompt:
        return RIGHT_FIX
    return WRONG_FIX


def sample_servers(port: int) -> tuple[AnthropicServer, OpenAIServer]:
    """The Tech Lead on `port` and the coder on `port + 1`, both on 127.0.0.1."""
    tech_lead = AnthropicServer(port=port, answer=sample_tech_lead)
    coder = OpenAIServer(port=port + 1, flavor="lmstudio", models=[SAMPLE_CODER_MODEL])
    coder.answer = sample_coder
    return tech_lead, coder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_models.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100,
                        help="the Tech Lead's port on 127.0.0.1; the coder takes the next one")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tech_lead, coder = sample_servers(args.port)
    with tech_lead, coder:
        print(f"Sample models: Tech Lead on {tech_lead.url}, coder on {coder.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
