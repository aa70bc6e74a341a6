"""A real git server over SSH for tests: Debian's sshd on 127.0.0.1 and a git-shell user.

Usage::

    with GitSSHServer() as server:                # needs root and openssh-server
        server.create_repo("acme/app", files={"README.md": "hi\\n"})
        server.authorize(public_key_line)         # "ssh-ed25519 AAAA... comment"
        server.host_key_line                      # "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
        server.url_for("acme/app")                # ssh://haaogit@127.0.0.1:PORT/tmp/.../app.git
        server.rotate_host_key()                  # restart with a new key: "host key changed"

The sshd runs in the foreground as a child of the test process with its own sshd_config,
host key, pid file and authorized_keys file, and is terminated by stop().
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.servers.git_http import branch_sha, commit_files, fill_bare, run_git

SSHD = "/usr/sbin/sshd"
GIT_SHELL = shutil.which("git-shell") or "/usr/bin/git-shell"
USER = "haaogit"
START_TIMEOUT = 10.0


class GitSSHUnavailable(RuntimeError):
    """This machine cannot run the SSH git server (no sshd, no git-shell, or not root)."""


def ssh_unavailable_reason() -> str | None:
    """Why GitSSHServer cannot start here, or None when it can."""
    if not Path(SSHD).exists():
        return "sshd is not installed (apt-get install openssh-server openssh-client)"
    if not Path(GIT_SHELL).exists():
        return "git-shell is not installed (it ships with Debian's git package)"
    if not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        return "the OpenSSH client is not installed (apt-get install openssh-client)"
    if os.geteuid() != 0:
        return "starting sshd for another user needs root (the CI container runs as root)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """The throw-away account sshd logs in as; created with git-shell as its shell if missing."""
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        home = f"/var/lib/{name}"
        # Another test process may create it at the same moment; then its account serves.
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir", home,
                        "--shell", GIT_SHELL, name], check=False, capture_output=True)
        account = pwd.getpwnam(name)
    # A locked password field ("!") makes sshd refuse even key logins when PAM is off.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    Path(account.pw_dir).mkdir(parents=True, exist_ok=True)
    os.chown(account.pw_dir, account.pw_uid, account.pw_gid)
    return account


def generate_key(path: Path, *, comment: str = "haao-test") -> str:
    """Write an ed25519 key pair at path (and path.pub); return the public key line."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, capture_output=True)
    return path.with_name(path.name + ".pub").read_text().strip()


class GitSSHServer:
    """sshd on a free high port of 127.0.0.1 serving bare repositories under its directory."""

    def __init__(self, root: Path | None = None, *, user: str = USER) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="git-ssh-")).resolve()
        self.user = user
        self.port = 0
        self.host_key_line = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._account: pwd.struct_passwd | None = None
        self.config = self.root / "sshd_config"
        self.authorized_keys = self.root / "authorized_keys"
        self.repos = self.root / "repos"
        self.log = self.root / "sshd.log"

    # Life cycle -------------------------------------------------------------------------

    def start(self) -> GitSSHServer:
        """Create the user, a host key and the configuration; start sshd and wait for it."""
        reason = ssh_unavailable_reason()
        if reason:
            raise GitSSHUnavailable(reason)
        if self._process is not None:
            return self
        self._account = ensure_user(self.user)
        # The user reads authorized_keys and the repositories through these directories.
        self.root.chmod(0o755)
        self.repos.mkdir(exist_ok=True)
        os.chown(self.repos, self._account.pw_uid, self._account.pw_gid)
        self.authorized_keys.touch()
        self.authorized_keys.chmod(0o644)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if not self.host_key_line:
            self._new_host_key()
        self._write_config()
        self._launch()
        return self

    def stop(self) -> None:
        """Terminate sshd; connections are refused afterwards."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        """Stop and delete the server's directory when it made its own."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> GitSSHServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def rotate_host_key(self) -> str:
        """Restart on the same port with a new host key; return the new known_hosts line."""
        self.stop()
        self._new_host_key()
        self._write_config()
        self._launch()
        return self.host_key_line

    # Access -----------------------------------------------------------------------------

    def authorize(self, public_key_line: str) -> None:
        """Let the holder of this public key ("ssh-ed25519 AAAA... comment") log in."""
        line = public_key_line.strip()
        if "\n" in line or not line:
            raise ValueError("one public key line, please")
        with self.authorized_keys.open("a") as keys:
            keys.write(line + "\n")

    def known_hosts(self, path: Path) -> Path:
        """Write a known_hosts file pinning the current host key; return its path."""
        path.write_text(self.host_key_line + "\n")
        return path

    def url_for(self, name: str) -> str:
        """ssh://USER@127.0.0.1:PORT/<absolute path of the bare repository>."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.repo_path(name)}"

    # Repositories -----------------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        path = (self.repos / f"{name}.git").resolve()
        if self.repos not in path.parents:
            raise ValueError(f"{name!r} is outside the server's directory")
        return path

    def create_repo(self, name: str, *, files: Mapping[str, str | bytes] | None = None,
                    source: Path | None = None, directory: Path | None = None,
                    branch: str = "main") -> Path:
        """A bare repository the SSH user owns: files (or directory's) on branch, or source."""
        path = fill_bare(self.repo_path(name), files=files, source=source,
                         directory=directory, branch=branch)
        self._give_to_user(path)
        return path

    def commit(self, name: str, *, branch: str = "main",
               files: Mapping[str, str | bytes | None],
               message: str = "Change from the team") -> str:
        """Commit on branch server-side, as if a teammate pushed; return the new sha."""
        path = self.repo_path(name)
        sha = commit_files(path, branch=branch, files=files, message=message)
        self._give_to_user(path)
        return sha

    def branch_sha(self, name: str, branch: str) -> str | None:
        return branch_sha(self.repo_path(name), branch)

    def read_file(self, name: str, *, branch: str, path: str) -> str:
        return run_git(["show", f"refs/heads/{branch}:{path}"], cwd=self.repo_path(name))

    # Internals --------------------------------------------------------------------------

    def _give_to_user(self, path: Path) -> None:
        account = self._account or ensure_user(self.user)
        for directory in [p for p in path.parents if self.repos in p.parents] + [path]:
            os.chown(directory, account.pw_uid, account.pw_gid)
        for dirpath, dirnames, filenames in os.walk(path):
            for entry in dirnames + filenames:
                os.chown(os.path.join(dirpath, entry), account.pw_uid, account.pw_gid)

    def _new_host_key(self) -> None:
        public = generate_key(self.root / "host_key", comment="").split()
        self.host_key_line = f"[127.0.0.1]:{self.port} {public[0]} {public[1]}"

    def _write_config(self) -> None:
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.root / 'host_key'}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            # The key file and repositories sit in a temporary directory root created.
            "StrictModes no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "",
        ]))

    def _launch(self) -> None:
        self.log.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = (self._process.stderr.read().decode(errors="replace")
                         if self._process.stderr else "")
                log = self.log.read_text() if self.log.exists() else ""
                self._process = None
                raise GitSSHUnavailable(f"sshd exited at start: {error}{log}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5) as probe:
                # sshd greets with its version first: then it accepts logins.
                probe.settimeout(2)
                if probe.recv(4).startswith(b"SSH-"):
                    return
            time.sleep(0.02)
        self.stop()
        raise GitSSHUnavailable(f"sshd did not listen on 127.0.0.1:{self.port} in time")
