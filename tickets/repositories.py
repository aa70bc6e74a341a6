"""What a project's repository location and branch names may be (checked when a project is
saved and again before git ever sees them), and what a clone URL says about its forge."""

from __future__ import annotations

import functools
import re
import subprocess
from urllib.parse import urlsplit

from haao.errors import ApplicationError
from haao.text import redact_userinfo

# user@host:path, git's scp-like form of an ssh URL.
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]")
_URL_SCHEMES = {"file", "http", "https", "ssh"}


class RepositoryRefused(ApplicationError):
    """The repository location is malformed or uses a transport HAAO does not allow."""

    code = "repository_refused"


def check_repository(repository: str) -> str:
    """Return repository if it is an absolute local path or an allowed URL, else raise."""
    if not isinstance(repository, str) or not repository.strip():
        raise RepositoryRefused("The repository location is empty.")
    shown = redact_userinfo(repository[:200])
    if any(char in repository for char in "\x00\n\r") or repository != repository.strip():
        raise RepositoryRefused(f"The repository location {shown!r} contains control "
                                "characters or surrounding spaces.")
    if repository.startswith("-"):
        raise RepositoryRefused(f"The repository location {shown!r} starts with '-'.")
    if "::" in repository.split("/", 1)[0]:
        raise RepositoryRefused(f"The repository location {shown!r} names a git remote helper "
                                "('<transport>::'); only local paths, file://, https:// and "
                                "ssh:// are allowed.")
    if repository.startswith("/"):
        return repository
    if _SCP_LIKE.match(repository):
        return repository
    parts = urlsplit(repository)
    if parts.scheme.lower() not in _URL_SCHEMES:
        raise RepositoryRefused(f"The repository location {shown!r} must be an absolute local "
                                "path or a file://, https://, http:// or ssh:// URL.")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise RepositoryRefused(f"The repository URL {shown!r} names no host.")
    return repository


def check_branch_name(name: str, *, what: str = "branch") -> str:
    """Return name if git accepts it as a branch name and it cannot read as an option."""
    if (not isinstance(name, str) or not name or name.startswith("-") or "\x00" in name
            or len(name) > 200):
        raise ApplicationError(f"The {what} name {str(name)[:80]!r} is not a valid branch name.",
                               code="invalid_branch")
    if not _git_accepts(name):
        raise ApplicationError(f"The {what} name {name[:80]!r} is not a valid branch name.",
                               code="invalid_branch")
    return name


@functools.lru_cache(maxsize=1024)
def _git_accepts(name: str) -> bool:
    """git's own verdict on a branch name; the same few names are checked for every step."""
    return subprocess.run(["git", "check-ref-format", f"refs/heads/{name}"],  # noqa: S603,S607
                          cwd="/", capture_output=True, timeout=10).returncode == 0


# Hosts whose forge is known without asking the admin.
_KNOWN_HOSTS = {
    "github.com": ("github", "https://api.github.com"),
    "www.github.com": ("github", "https://api.github.com"),
    "gitlab.com": ("gitlab", "https://gitlab.com/api/v4"),
}
_API_SUFFIX = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}
# git@host:owner/repo.git (scp-like); the path must not start with "/" or it is ssh://-less.
_FORGE_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\s][^\s]*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


def default_api_url(kind: str, host_base: str) -> str:
    """The REST API root of kind on a host, e.g. ("gitea", "https://git.example") -> …/api/v1."""
    base = host_base.rstrip("/")
    host = (urlsplit(base).hostname or "").lower()
    if host in _KNOWN_HOSTS and _KNOWN_HOSTS[host][0] == kind:
        return _KNOWN_HOSTS[host][1]
    return base + _API_SUFFIX.get(kind, "")


def forge_defaults(repository_url: str) -> tuple[str, str, str] | None:
    """(kind or "", API URL, "owner/repo") guessed from a clone URL; None when it is not one.

    Only github.com and gitlab.com are recognised; for other hosts the kind is "" and the API
    URL is the host's web root, for the admin to complete with default_api_url()."""
    url = repository_url.strip()
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http", "ssh", "git+ssh", "ssh+git", "git"):
            return None
        host, path = (parts.hostname or "").lower(), parts.path
        # An SSH or git:// port says nothing about where the web and API answer.
        web = scheme if scheme in ("https", "http") else "https"
        suffix = f":{port}" if port and web == scheme else ""
        host_base = f"{web}://{host}{suffix}"
    else:
        match = _FORGE_SCP_LIKE.match(url)
        if not match:
            return None
        host, path = match.group("host").lower(), match.group("path")
        host_base = f"https://{host}"
    path = path.strip("/")
    path = path.removesuffix(".git")
    segments = path.split("/")
    if not host or len(segments) < 2 or not all(
            _SEGMENT.match(segment) and segment not in (".", "..") for segment in segments):
        return None
    if host in _KNOWN_HOSTS:
        kind, api_url = _KNOWN_HOSTS[host]
        if kind == "github":
            segments = segments[:2]  # github.com/o/r/tree/main is still o/r
        return kind, api_url, "/".join(segments)
    return "", host_base, "/".join(segments)
