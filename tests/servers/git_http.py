"""A real smart-HTTP git server on 127.0.0.1 for tests: `git http-backend` behind Basic auth.

Usage::

    with GitHTTPServer(user="team", password="s3cret") as server:
        server.create_repo("acme/app", files={"README.md": "hello\\n"})
        server.create_repo("acme/site", directory=Path("samples/site"))  # its files on main
        server.create_repo("acme/copy", source=Path("some/repo"))  # a repo with a main branch
        server.url_for("acme/app")            # http://127.0.0.1:PORT/acme/app.git
        server.authenticated_url("acme/app")  # http://team:s3cret@127.0.0.1:PORT/acme/app.git
        server.commit("acme/app", branch="main", files={"NEWS": "x\\n"})  # the team pushed
        server.protect("acme/app", "main")    # pushes to main are refused, like a protected branch
        server.stop()                         # the server is down: connections are refused
        server.start()                        # and back, on the same port

Every request runs `git http-backend` as a CGI program with GIT_PROJECT_ROOT set to the
server's directory; pushes are allowed because each authenticated request carries REMOTE_USER.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit

GIT = shutil.which("git") or "/usr/bin/git"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Server-side helpers run as the test process, whatever owns the repository (git_ssh chowns).
_GIT_CONFIG = ("-c", "safe.directory=*", "-c", "init.defaultBranch=main")


def run_git(args: list[str], *, cwd: Path | None = None, input_bytes: bytes | None = None,
            env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run git for the servers' own bookkeeping, with a fixed identity; return stdout."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C",
        "GIT_AUTHOR_NAME": "Team", "GIT_AUTHOR_EMAIL": "team@example.com",
        "GIT_COMMITTER_NAME": "Team", "GIT_COMMITTER_EMAIL": "team@example.com",
        **(env or {}),
    }
    result = subprocess.run([GIT, *_GIT_CONFIG, *args], cwd=cwd, env=environment,
                            input=input_bytes, capture_output=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode("utf-8", "replace")


def init_bare(path: Path) -> Path:
    """Create an empty bare repository at path whose HEAD is main."""
    path.parent.mkdir(parents=True, exist_ok=True)
    run_git(["init", "-q", "--bare", "--initial-branch=main", str(path)])
    run_git(["config", "http.receivepack", "true"], cwd=path)
    return path


def commit_files(repo: Path, *, branch: str, files: Mapping[str, str | bytes | None],
                 message: str = "Change from the team", start: str = "main") -> str:
    """Commit files (None deletes) on top of branch inside a bare repository; return the sha.

    A missing branch starts from `start`. Works without a work tree (plumbing only), so it
    plays "someone pushed meanwhile"."""
    old = branch_sha(repo, branch)
    parent = old or branch_sha(repo, start)
    with tempfile.TemporaryDirectory(prefix="git-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        run_git(["read-tree", parent or EMPTY_TREE], cwd=repo, env=env)
        for name, content in files.items():
            if content is None:
                run_git(["update-index", "--force-remove", "--", name], cwd=repo, env=env)
                continue
            data = content.encode() if isinstance(content, str) else content
            blob = run_git(["hash-object", "-w", "--stdin"], cwd=repo, input_bytes=data,
                           env=env).strip()
            run_git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{name}"],
                    cwd=repo, env=env)
        tree = run_git(["write-tree"], cwd=repo, env=env).strip()
    parents = ["-p", parent] if parent else []
    sha = run_git(["commit-tree", tree, *parents, "-m", message], cwd=repo).strip()
    run_git(["update-ref", f"refs/heads/{branch}", sha, old or ""], cwd=repo)
    return sha


def branch_sha(repo: Path, branch: str) -> str | None:
    """The commit a branch points at in repo, or None when it does not exist."""
    out = run_git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"],
                  cwd=repo, check=False).strip()
    return out or None


def files_in(directory: Path) -> dict[str, bytes]:
    """Every file under directory (a .git inside is left out), by its relative POSIX path."""
    return {item.relative_to(directory).as_posix(): item.read_bytes()
            for item in sorted(directory.rglob("*"))
            if item.is_file() and ".git" not in item.relative_to(directory).parts}


def fill_bare(path: Path, *, files: Mapping[str, str | bytes] | None = None,
              source: Path | None = None, directory: Path | None = None,
              branch: str = "main") -> Path:
    """A bare repository at path: files (or a directory's files) on branch, or a copy of source.

    source is an existing repository that has branch; all its branches are copied."""
    if directory is not None:
        files = files_in(directory)
    if source is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        run_git(["clone", "-q", "--bare", "--no-local", str(source), str(path)])
        run_git(["config", "http.receivepack", "true"], cwd=path)
        if branch_sha(path, branch) is None:
            raise RuntimeError(f"{source} has no branch {branch!r}")
        run_git(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], cwd=path)
        return path
    init_bare(path)
    run_git(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], cwd=path)
    commit_files(path, branch=branch, files=dict(files or {"README.md": "# Project\n"}),
                 message="Initial commit")
    return path


_PROTECT_HOOK = """#!/bin/sh
# Refuses updates of the branches listed in protected-branches, like a forge's branch protection.
while read old new ref; do
  if grep -qxF "$ref" "$GIT_DIR/protected-branches" 2>/dev/null; then
    echo "error: GH006: Protected branch update failed for $ref." >&2
    exit 1
  fi
done
exit 0
"""


def protect_branch(repo: Path, branch: str) -> None:
    """Make repo refuse every push that updates branch (a pre-receive hook)."""
    hooks = repo / "hooks"
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-receive"
    hook.write_text(_PROTECT_HOOK)
    hook.chmod(0o755)
    with (repo / "protected-branches").open("a") as listing:
        listing.write(f"refs/heads/{branch}\n")


@dataclass(frozen=True)
class GitRequest:
    """One request the server answered: what a test may assert on."""

    method: str
    path: str
    user: str
    status: int


class GitHTTPServer:
    """Serves the bare repositories under root over smart HTTP, Basic auth in front."""

    def __init__(self, root: Path | None = None, *, user: str = "haao",
                 password: str = "git-secret") -> None:  # noqa: S107 - a test server
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="git-http-")).resolve()
        self.user = user
        self.password = password
        self.requests: list[GitRequest] = []
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._lock = threading.Lock()

    # Life cycle -------------------------------------------------------------------------

    def start(self) -> GitHTTPServer:
        """Listen on 127.0.0.1 (a free port the first time, the same one after stop())."""
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"git-http-{self._port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients now get "connection refused", as from a server that is down."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def close(self) -> None:
        """Stop and delete the repositories when the server made its own directory."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> GitHTTPServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # Addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def url_for(self, name: str) -> str:
        """The clone URL of repository name (e.g. "acme/app"), without credentials."""
        return f"{self.base_url}/{name}.git"

    def authenticated_url(self, name: str, *, user: str | None = None,
                          password: str | None = None) -> str:
        """The clone URL with user:password@ in it (what a credential helper would supply)."""
        who = quote(user if user is not None else self.user, safe="")
        secret = quote(password if password is not None else self.password, safe="")
        return f"http://{who}:{secret}@127.0.0.1:{self._port}/{name}.git"

    # Repositories -----------------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        """Where the bare repository name lives on disk."""
        path = (self.root / f"{name}.git").resolve()
        if self.root not in path.parents:
            raise ValueError(f"{name!r} is outside the server's directory")
        return path

    def create_repo(self, name: str, *, files: Mapping[str, str | bytes] | None = None,
                    source: Path | None = None, directory: Path | None = None,
                    branch: str = "main") -> Path:
        """A bare repository holding files (or directory's files) on branch, or a copy of source."""
        return fill_bare(self.repo_path(name), files=files, source=source, directory=directory,
                         branch=branch)

    def commit(self, name: str, *, branch: str = "main",
               files: Mapping[str, str | bytes | None], message: str = "Change from the team",
               start: str = "main") -> str:
        """Commit on branch (a new one starts at `start`) as if a teammate pushed; return sha."""
        with self._lock:
            return commit_files(self.repo_path(name), branch=branch, files=files,
                                message=message, start=start)

    def branch_sha(self, name: str, branch: str) -> str | None:
        return branch_sha(self.repo_path(name), branch)

    def read_file(self, name: str, *, branch: str, path: str) -> str:
        """A file's content on a branch of the bare repository."""
        return run_git(["show", f"refs/heads/{branch}:{path}"], cwd=self.repo_path(name))

    def protect(self, name: str, branch: str) -> None:
        """Refuse pushes that update branch, like a protected branch on a forge."""
        protect_branch(self.repo_path(name), branch)

    def check_credentials(self, header: str | None) -> str | None:
        """The user name when header is valid Basic auth for this server, else None."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return user if ok_user and ok_password else None


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: GitHTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: the CGI output is streamed as is

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        state = self.server_state
        url = urlsplit(self.path)
        body = self._read_body()
        user = state.check_credentials(self.headers.get("Authorization"))
        if user is None:
            state.requests.append(GitRequest(self.command, url.path, "", 401))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"Authentication required\n")
            return
        status, headers, payload = self._backend(url.path, url.query, user, body)
        state.requests.append(GitRequest(self.command, url.path, user, status))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _backend(self, path: str, query: str, user: str,
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server_state.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        for key, value in self.headers.items():
            if key.lower() not in ("authorization", "content-type", "content-length"):
                env["HTTP_" + key.upper().replace("-", "_")] = value
        result = subprocess.run([GIT, "http-backend"], env=env, input=body,
                                capture_output=True, timeout=120, check=False)
        head, sep, payload = result.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = result.stdout.partition(b"\n\n")
        status = 200 if result.returncode == 0 else 500
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                with contextlib.suppress(ValueError):
                    status = int(value.strip().split()[0])
            elif key:
                headers.append((key.strip(), value.strip()))
        return status, headers, payload
