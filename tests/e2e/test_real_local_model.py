"""A real ticket through the engine's own steps against a real local model (llama.cpp serving
SmolLM2).

The 135M model writes plausible but wrong code; these tests check that HAAO records whatever
it writes as a proper attempt, not that the model fixes the defect. Skipped when the extra
`localmodel` is not installed, unless HAAO_REQUIRE_LOCAL_MODEL=1 (then they fail). When the
server process dies (a llama.cpp built for another CPU: SIGILL, SIGSEGV), they fail with its
exit signal and last output instead of a connection error; the last tests fake such servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import override_settings

from agents import services
from agents.coder.client import complete
from agents.coder.prompt import coder_messages
from agents.execution import idempotency_key
from agents.localmodel import (
    LocalModelCrashed,
    LocalModelServer,
    LocalModelUnavailable,
    local_model_server,
    missing_packages,
    start_local_model,
)
from agents.models import InferenceEndpoint, ModelCall
from agents.sandbox import sandbox_available
from tests.engine import InProcessEngine
from tests.factories import ProjectFactory, TicketFactory, spec_example
from tests.samples import SAMPLE_PROJECT, git_checkout
from tickets.models import Ticket

pytestmark = [pytest.mark.localmodel, pytest.mark.django_db,
              pytest.mark.usefixtures("allow_loopback")]

FINAL_OUTCOMES = {"invalid_output", "tests_failed", "guardrail_violation", "passed"}


def skip_or_fail(reason: str) -> None:
    """Skip when the local model cannot run here, unless HAAO_REQUIRE_LOCAL_MODEL=1."""
    if os.environ.get("HAAO_REQUIRE_LOCAL_MODEL") == "1":
        pytest.fail(f"{reason} (HAAO_REQUIRE_LOCAL_MODEL=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def local_model() -> Iterator[LocalModelServer]:
    missing = missing_packages()
    if missing:
        skip_or_fail(f"the local model needs {', '.join(missing)}: "
                     "pip install -e '.[localmodel]'")
    # Started, answered /v1/models and one completion (agents/localmodel.py), or fails with
    # why not, e.g. the signal the server died of and its last output.
    try:
        server = start_local_model()
    except LocalModelUnavailable as error:
        failure = error.message
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def server_must_live(server: LocalModelServer) -> Iterator[None]:
    """Fail with how the server died (signal, last output) rather than with the connection
    error or broken reply its death caused in the code under test."""
    try:
        yield
    except Exception:
        died = _died(server)
        if not died:
            raise
    else:
        died = _died(server)
    if died:
        # Without the connection error it caused: the death is the news.
        raise pytest.fail.Exception(died, pytrace=False) from None


def _died(server: LocalModelServer) -> str | None:
    # A dying process closes its sockets a moment before it can be reaped.
    with contextlib.suppress(Exception):
        server.process.wait(timeout=2)
    return server.death_message("during the test")


@pytest.fixture
def endpoint(cast: Any, local_model: LocalModelServer) -> InferenceEndpoint:
    return services.endpoint_create(
        organization=cast.org, actor=cast.admin,
        values={"name": "SmolLM2 on llama.cpp", "kind": "openai_compatible",
                "flavor": "llama_cpp", "base_url": f"{local_model.url}/v1",
                "model": local_model.model, "role": "coder"})


@pytest.fixture
def ticket(cast: Any, tmp_path: Path) -> Ticket:
    repo = git_checkout(SAMPLE_PROJECT, tmp_path / "invoice-calc")
    project = ProjectFactory(organization=cast.org, key="INV", name="Invoice calc",
                             repository=str(repo))
    content = (repo / "invoice_calc" / "totals.py").read_text()
    spec = spec_example(
        title="Round invoice totals half-up to the cent",
        objective="round_money() rounds exact half cents down (0.125 -> 0.12). Make it round "
                  "half-up (0.125 -> 0.13) using Decimal.quantize with ROUND_HALF_UP.",
        code_context=[{"path": "invoice_calc/totals.py", "line_start": 1,
                       "line_end": len(content.splitlines()), "content": content}],
        allowed_paths=["invoice_calc/totals.py"],
        constraints=["Keep amounts as Decimal; never convert to float."],
        definition_of_done=[{"name": "unit tests",
                             "command": ["python", "-m", "pytest", "-q", "-p",
                                         "no:cacheprovider", "tests"],
                             "timeout_seconds": 120}])
    created: Ticket = TicketFactory(requirement__project=project, spec=spec,
                                    title=spec["title"])
    return created


def test_a_real_model_answer_becomes_a_recorded_attempt(cast, ticket, endpoint, local_model,
                                                        tmp_path, monkeypatch) -> None:
    """The production path: dispatch, the model step (streamed) and the check step."""
    type(cast.org).objects.filter(pk=cast.org.pk).update(
        allow_unsandboxed_checks=not sandbox_available())
    engine = InProcessEngine(monkeypatch)
    with server_must_live(local_model), override_settings(
            HAAO_WORKSPACE_ROOT=tmp_path / "ws", HAAO_CODER_TIMEOUT=180):
        attempt = engine.attempt(ticket)

    assert attempt.outcome in FINAL_OUTCOMES, attempt.error
    assert attempt.finished_at is not None
    assert attempt.model == local_model.model == "smollm2"
    call = ModelCall.objects.get(idempotency_key=idempotency_key(attempt))
    # Counted by llama.cpp's tokenizer: the prompt carries the whole of totals.py.
    assert call.input_tokens > 300
    assert call.output_tokens > 0
    assert call.model == "smollm2" and call.role == "code"
    assert call.latency_ms > 0
    assert (attempt.input_tokens, attempt.output_tokens) == (call.input_tokens,
                                                             call.output_tokens)
    if attempt.outcome in ("tests_failed", "passed"):
        assert attempt.checks.count() == 1 and attempt.diff
    else:
        assert attempt.checks.count() == 0 and attempt.error


def test_the_real_server_streams_tokens_and_usage_is_marked_estimated(ticket, endpoint,
                                                                      local_model) -> None:
    pieces: list[str] = []

    with server_must_live(local_model):
        reply = complete(endpoint=endpoint, messages=coder_messages(spec=ticket.spec),
                         stream=True, on_token=pieces.append, max_tokens=48, timeout=120)

    assert len(pieces) > 5 and "".join(pieces) == reply.text
    assert reply.model == "smollm2"
    # llama-cpp-python's server sends no usage chunk even when asked for one.
    assert reply.usage.estimated and reply.usage.output_tokens > 0


# Fake servers: what a llama.cpp built for another CPU does, without building one.
CRASH_AT_START = ("import os, signal, sys; print('llama_model_load: loading model', "
                  "file=sys.stderr, flush=True); os.kill(os.getpid(), signal.SIGSEGV)")
# Answers /v1/models; a completion kills it with SIGILL, or answers when argv[3] is "answer".
FAKE_SERVER = """
import json, os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"object": "list", "data": [{"id": "smollm2", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        if sys.argv[3] != "answer":
            print("ggml_vec_dot_q4_1_q8_1: AVX-512 kernel", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGILL)
        self.reply({"choices": [{"index": 0, "text": " Hi", "finish_reason": "length"}]})

    def log_message(self, *args):
        pass

HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def fake_server(behaviour: str) -> list[str]:
    return [sys.executable, "-c", FAKE_SERVER, "{host}", "{port}", behaviour]


def test_a_server_that_crashes_on_start_is_named_with_its_signal_and_output() -> None:
    with pytest.raises(LocalModelCrashed) as raised:
        start_local_model(command=[sys.executable, "-c", CRASH_AT_START], ready_timeout=30)

    message = raised.value.message
    assert "died before it answered /v1/models with SIGSEGV (exit code -11)" in message
    assert "make clean-localmodel" in message
    assert "llama_model_load: loading model" in message


def test_a_server_that_dies_on_its_first_completion_fails_before_any_test_uses_it() -> None:
    with pytest.raises(LocalModelCrashed) as raised:
        start_local_model(command=fake_server("crash"), ready_timeout=30)

    message = raised.value.message
    assert "died on its first completion with SIGILL (exit code -4)" in message
    assert "make clean-localmodel" in message
    assert "AVX-512 kernel" in message


def test_a_server_dying_during_a_test_fails_it_with_the_signal_not_a_connection_error() -> None:
    with local_model_server(command=fake_server("answer"), ready_timeout=30) as server:
        os.kill(server.process.pid, signal.SIGSEGV)
        with pytest.raises(pytest.fail.Exception) as raised, server_must_live(server):
            httpx.post(f"{server.url}/v1/completions", json={"prompt": "Hi"}, timeout=5)

    assert "died during the test with SIGSEGV (exit code -11)" in str(raised.value)
    assert "make clean-localmodel" in str(raised.value)
