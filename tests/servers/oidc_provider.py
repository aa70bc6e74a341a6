"""A real OpenID Connect provider (the npm package ``oidc-provider``) for tests.

Usage::

    from tests.servers.oidc_provider import OIDCProvider

    with OIDCProvider(
        clients=[{
            "client_id": "haao",
            "client_secret": "secret",
            "redirect_uris": ["http://localhost:8000/accounts/oidc/test/login/callback/"],
            "token_endpoint_auth_method": "client_secret_post",
        }],
        accounts=[{
            "sub": "alice", "email": "alice@example.com", "email_verified": True,
            "name": "Alice Example", "password": "pw",
        }],
    ) as op:
        op.issuer          # "http://127.0.0.1:PORT"
        op.set_mode("wrong_audience")
        op.token_log()     # list of token requests served

The login page served by the provider has ``input[name=login]`` (email, sub or
preferred_username), ``input[name=password]`` and ``button[type=submit]``
(``#submit``); a wrong password re-renders the form (HTTP 200) with
``#error``. Consent is given automatically.

The server process is a child of the test process: it exits when its stdin
closes (so it dies with the parent), and is terminated on ``stop()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SERVER_DIR = Path(__file__).resolve().parent / "oidc"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"

MODES = ("normal", "wrong_audience", "bad_signature", "wrong_issuer")

START_TIMEOUT = 20.0
NPM_TIMEOUT = 300.0

_npm_lock = threading.Lock()


class OIDCProviderError(RuntimeError):
    """The test OpenID Connect provider could not be installed or started."""


def node_available() -> bool:
    """True when ``node`` (>= 20) is on PATH, and ``npm`` too if the packages
    of the server are not installed yet."""
    node = shutil.which("node")
    if not node:
        return False
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        major = int(out.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    if major < 20:
        return False
    return _dependencies_installed() or shutil.which("npm") is not None


def _dependencies_installed() -> bool:
    modules = SERVER_DIR / "node_modules"
    # npm writes node_modules/.package-lock.json once an install is complete.
    return all(
        (modules / name).is_file()
        for name in (".package-lock.json", "oidc-provider/package.json", "jose/package.json")
    )


def ensure_dependencies() -> None:
    """Run ``npm ci`` in the server directory unless its packages are installed."""
    if _dependencies_installed():
        return
    # Serialise installs across threads and processes (pytest-xdist workers).
    lock_path = Path(tempfile.gettempdir()) / "haao-oidc-provider-npm.lock"
    with _npm_lock, open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _dependencies_installed():
            return
        npm = shutil.which("npm")
        if not npm:
            raise OIDCProviderError(
                f"npm not found on PATH; cannot install the packages in {SERVER_DIR}"
            )
        try:
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=SERVER_DIR,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise OIDCProviderError(
                f"`npm ci` in {SERVER_DIR} did not finish within {NPM_TIMEOUT:.0f} s"
            ) from exc
        if proc.returncode != 0 or not _dependencies_installed():
            raise OIDCProviderError(
                f"`npm ci` in {SERVER_DIR} failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )


class OIDCProvider:
    """Runs ``node server.mjs`` on 127.0.0.1 for the duration of a ``with`` block.

    ``clients``: dicts with ``client_id``, ``client_secret``, ``redirect_uris``
    and ``token_endpoint_auth_method`` (``client_secret_basic`` by default;
    ``client_secret_post`` or ``none`` also work). The server enforces the
    registered method: a client registered for one of client_secret_basic /
    client_secret_post is rejected with 401 ``invalid_client`` when it
    authenticates with the other. oidc-provider alone accepts both for either;
    set ``"strict_auth_method": False`` on a client to get that behaviour.

    ``accounts``: dicts with ``sub``, ``email``, ``email_verified``, ``name``,
    ``password`` and optionally ``given_name``, ``family_name``,
    ``preferred_username``, ``picture``.

    ``mode``: one of ``MODES``; every mode but ``normal`` makes the token
    endpoint return a bad ID token (wrong ``aud``, signature by a key that is
    not in the JWKS, or wrong ``iss``).
    """

    def __init__(
        self,
        clients: Iterable[dict[str, Any]] = (),
        accounts: Iterable[dict[str, Any]] = (),
        mode: str = "normal",
        *,
        port: int = 0,
        issuer_path: str = "/",
        client_auth_methods: Iterable[str] | None = None,
        start_timeout: float = START_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.config: dict[str, Any] = {
            "port": port,
            "issuer_path": issuer_path,
            "clients": [dict(c) for c in clients],
            "accounts": [dict(a) for a in accounts],
            "mode": mode,
        }
        if client_auth_methods is not None:
            self.config["client_auth_methods"] = list(client_auth_methods)
        self.start_timeout = start_timeout
        self.env = env
        self.issuer: str = ""
        self.port: int = 0
        self.base_url: str = ""
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> OIDCProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The ``node`` child process while the server runs."""
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self._proc is not None:
            raise OIDCProviderError("already started")
        ensure_dependencies()
        node = shutil.which("node")
        if not node:
            raise OIDCProviderError("node not found on PATH")

        self._tmpdir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
        tmp = Path(self._tmpdir.name)
        cfg_path = tmp / "config.json"
        cfg_path.write_text(json.dumps(self.config))
        stdout_path = tmp / "stdout.log"
        self._stderr_path = tmp / "stderr.log"

        env = dict(os.environ)
        env.pop("OIDC_TEST_IGNORE_STDIN", None)
        env.setdefault("NODE_NO_WARNINGS", "1")
        if self.env:
            env.update(self.env)

        started = time.monotonic()
        with open(stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [node, str(SERVER_SCRIPT), str(cfg_path)],
                cwd=SERVER_DIR,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env=env,
            )
        try:
            ready = self._wait_ready(stdout_path, started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self.issuer = ready["issuer"]
        self.port = int(ready["port"])
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, stdout_path: Path, started: float) -> dict[str, Any]:
        assert self._proc is not None
        deadline = started + self.start_timeout
        while True:
            text = stdout_path.read_text(errors="replace")
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        data = json.loads(line)
                    except ValueError:
                        continue
                    if data.get("ready"):
                        return data
            code = self._proc.poll()
            if code is not None:
                raise OIDCProviderError(
                    f"OIDC test server exited with code {code} before it was ready.\n"
                    f"stderr:\n{self.stderr()}\nstdout:\n{text[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise OIDCProviderError(
                    f"OIDC test server not ready within {self.start_timeout:.0f} s.\n"
                    f"stderr:\n{self.stderr()}\nstdout:\n{text[-2000:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if self._tmpdir is not None:
            self._last_stderr = self.stderr()
            self._tmpdir.cleanup()
            self._tmpdir = None

    def stderr(self) -> str:
        """What the server wrote on stderr so far (warnings, debug output)."""
        if self._tmpdir is None:
            return getattr(self, "_last_stderr", "")
        try:
            return self._stderr_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    # ------------------------------------------------------------ endpoints

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # ------------------------------------------------------------ control

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        if not self.running:
            raise OIDCProviderError("OIDC test server is not running")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}/__control/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise OIDCProviderError(
                f"{method} /__control/{path} failed: {exc.code} {detail}"
            ) from exc

    def set_mode(self, mode: str) -> None:
        """Switch the failure mode of the running server (see ``MODES``)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self._control("POST", "mode", {"mode": mode})
        self.config["mode"] = mode

    def get_mode(self) -> str:
        return self._control("GET", "mode")["mode"]

    def token_log(self) -> list[dict[str, Any]]:
        """Token requests served so far, oldest first. Each entry has
        ``client_id``, ``client_auth`` ("basic" or "body"), ``grant_type``,
        ``status``, ``error``, ``error_description``, ``mode``, ``nonce`` and
        ``sub`` (of the issued ID token, before any tampering) and
        ``code_verifier_sent``."""
        return self._control("GET", "log")["token_requests"]

    def clear_token_log(self) -> None:
        self._control("POST", "log/clear", {})

    def add_account(self, account: dict[str, Any]) -> None:
        """Add (or replace, by ``sub``) an account on the running server."""
        self._control("POST", "accounts", account)

    def add_client(self, client: dict[str, Any]) -> None:
        """Register a client on the running server (e.g. once the RP's port is known)."""
        self._control("POST", "clients", client)
