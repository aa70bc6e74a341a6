"""The rules of a project's repository settings, in one place.

`project_settings_clean` decides for the API's serializer and the portal's settings form
alike; tickets.services.projects applies what it returns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from haao import text
from haao.errors import ApplicationError
from haao.ssrf import UnsafeEndpointURL, allowlisted, check_endpoint_url
from haao.text import redact_userinfo
from tickets.models import DeliveryMode, ForgeKind, Project, RepositoryAuth
from tickets.repositories import (
    RepositoryRefused,
    check_branch_name,
    check_repository,
    forge_defaults,
)

ARGV_MAX_ITEMS = 64
ARGV_MAX_LENGTH = 1000
MAX_TOKEN = 4096
ARGV_EXAMPLE = '["pytest", "-q"]'
# The settings a person edits, by their API name; `repository_url` is the model's `repository`.
SETTINGS = ("name", "description", "repository_url", "default_branch", "setup_command",
            "test_command", "auth_method", "token_username", "delivery", "forge",
            "forge_api_url", "intake_label")
MODEL_FIELD = {"repository_url": "repository"}
# Hosts whose forge is known without asking; agents.forges knows more once it is there.
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^:].*)$")


def revealed(value: Any) -> str:
    """The plain text of an encrypted field (haao.crypto.Secret, or None when empty)."""
    return value.reveal() if hasattr(value, "reveal") else (value or "")


def _invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(message, details={field: [message]})


def clean_argv(value: Any, *, field: str) -> list[str]:
    """An argv list: non-empty strings without NUL, at most 64 of at most 1000 characters."""
    if isinstance(value, str):
        raise _invalid(field, f"{field} must be an argv list like {ARGV_EXAMPLE}, not a shell "
                              "string: HAAO runs it without a shell.")
    if not isinstance(value, list):
        raise _invalid(field, f"{field} must be an argv list like {ARGV_EXAMPLE}.")
    if len(value) > ARGV_MAX_ITEMS:
        raise _invalid(field, f"{field} may have at most {ARGV_MAX_ITEMS} arguments.")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise _invalid(field, f"{field}: argument {index + 1} must be a non-empty string.")
        if "\x00" in item:
            raise _invalid(field, f"{field}: argument {index + 1} contains a NUL byte.")
        if not text.is_encodable(item):
            raise _invalid(field, f"{field}: argument {index + 1} "
                                  f"{text.UNPAIRED_SURROGATE}.")
        if len(item) > ARGV_MAX_LENGTH:
            raise _invalid(field, f"{field}: argument {index + 1} is longer than "
                                  f"{ARGV_MAX_LENGTH} characters.")
    return list(value)


def local_repository_roots() -> list[Path]:
    """The directories local repositories may lie in (HAAO_LOCAL_REPOSITORIES), resolved."""
    return [Path(os.path.realpath(root)) for root in settings.HAAO_LOCAL_REPOSITORIES if root]


def local_repository_path(url: str) -> Path | None:
    """The path of a local repository (an absolute path or file://), or None for a remote."""
    if url.startswith("/"):
        return Path(url)
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise _invalid("repository_url", "A file:// URL names a path on this server; "
                                             "use file:///path/to/repo.")
        return Path(unquote(parts.path))
    return None


def repository_host(url: str) -> tuple[str, int]:
    """The host and port HAAO would contact for a remote repository URL."""
    match = _SCP_LIKE.match(url)
    if match:
        return match["host"].lower(), 22
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise _invalid("repository_url", "The repository URL has an invalid port.") from None
    scheme = parts.scheme.lower()
    return (parts.hostname or "").rstrip("."), port or {"ssh": 22, "http": 80}.get(scheme, 443)


def forge_detect(url: str) -> str:
    """The forge a repository URL lives on when its host says so (github, gitlab), else ""."""
    if not url or local_repository_path(url) is not None:
        return ""
    found = forge_defaults(url)
    return found[0] if found else ""


def clean_repository_url(url: Any) -> str:
    """A repository location HAAO may use: no credentials, a public host or an allowed path."""
    field = "repository_url"
    if not isinstance(url, str):
        raise _invalid(field, "Expected a string.")
    if url == "":
        return url
    if len(url) > Project._meta.get_field("repository").max_length:  # type: ignore[operator]
        raise _invalid(field, "The repository URL is too long.")
    scheme = url.split(":", 1)[0].lower()
    user, at, _ = url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")
    if at and scheme in ("http", "https"):
        raise _invalid(field, "The repository URL may not contain a user name or token: put "
                              "the token in the `token` field (and its user in "
                              "`token_username`), or use an SSH deploy key.")
    if at and scheme == "ssh" and ":" in user:
        raise _invalid(field, "The repository URL may not contain a password: use an SSH "
                              "deploy key.")
    try:
        check_repository(url)
    except RepositoryRefused as error:
        raise _invalid(field, redact_userinfo(error.message)) from None
    local = local_repository_path(url)
    if local is not None:
        resolved = Path(os.path.realpath(local))
        roots = local_repository_roots()
        if not any(resolved == root or root in resolved.parents for root in roots):
            raise _invalid(field, "A local repository must lie inside a directory the platform "
                                  "operator lists in HAAO_LOCAL_REPOSITORIES.")
        return url
    host, port = repository_host(url)
    if not host:
        raise _invalid(field, "The repository URL names no host.")
    shown = f"[{host}]" if ":" in host else host
    try:
        check_endpoint_url(f"https://{shown}:{port}/")
    except UnsafeEndpointURL as error:
        raise _invalid(field, error.message) from None
    # Plain http would send the token readable by anyone on the way: only to a host the
    # operator named (a forge on the company's own network, say).
    if scheme == "http" and not allowlisted(host, port):
        raise _invalid(field, "Use https:// (or ssh): plain http:// is allowed only for hosts "
                              "the platform operator lists in HAAO_ENDPOINT_ALLOWLIST.")
    return url


def _clean_text(values: Mapping[str, Any], field: str, *, single_line: bool = True) -> None:
    value = values.get(field)
    if value is None:
        return
    if not isinstance(value, str):
        raise _invalid(field, "Expected a string.")
    if "\x00" in value or (single_line and any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
        raise _invalid(field, f"{field} contains control characters.")


def clean_token(token: Any) -> str:
    """A token as stored: no spaces or control characters; blank means none given."""
    if token is None or token == "":
        return ""
    if not isinstance(token, str):
        raise _invalid("token", "Expected a string.")
    token = token.strip()
    if len(token) > MAX_TOKEN:
        raise _invalid("token", f"Use at most {MAX_TOKEN} characters.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        raise _invalid("token", "A token has no spaces or control characters.")
    return token


def _choice(values: Mapping[str, Any], field: str, choices: list[str]) -> None:
    value = values.get(field)
    if value is not None and (not isinstance(value, str) or value not in choices):
        shown = ", ".join(c or "(blank)" for c in choices)
        raise _invalid(field, f"{field} must be one of: {shown}.")


def project_settings_clean(values: Mapping[str, Any], *,
                           current: Project | None = None) -> dict[str, Any]:
    """Check `values` (API names, any subset of SETTINGS) against `current` (None: a new one).

    Returns the model fields to set; raises ApplicationError naming the first bad field."""

    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise _invalid(unknown[0][:50], "This field is not accepted here.")
    for field in ("name", "repository_url", "default_branch", "token_username", "forge_api_url",
                  "intake_label"):
        _clean_text(values, field)
    _clean_text(values, "description", single_line=False)
    _choice(values, "auth_method", list(RepositoryAuth.values))
    _choice(values, "delivery", list(DeliveryMode.values))
    _choice(values, "forge", ["", *ForgeKind.values])
    clean: dict[str, Any] = {}
    for field in ("name", "description", "token_username", "intake_label", "auth_method",
                  "delivery", "forge"):
        if field in values:
            clean[field] = values[field]
    for field in ("setup_command", "test_command"):
        if field in values:
            clean[field] = clean_argv(values[field], field=field)
    if "default_branch" in values:
        try:
            clean["default_branch"] = check_branch_name(values["default_branch"],
                                                        what="default branch")
        except ApplicationError as error:
            raise _invalid("default_branch", error.message) from None
    if "token_username" in clean and ":" in clean["token_username"]:
        raise _invalid("token_username", "A user name cannot contain ':'.")
    url_changed = False
    if "repository_url" in values:
        clean["repository"] = clean_repository_url(values["repository_url"])
        url_changed = current is None or clean["repository"] != current.repository
    if values.get("forge_api_url"):
        try:
            check_endpoint_url(values["forge_api_url"])
        except UnsafeEndpointURL as error:
            raise _invalid("forge_api_url", error.message) from None
        clean["forge_api_url"] = values["forge_api_url"]
    elif "forge_api_url" in values:
        clean["forge_api_url"] = ""
    repository = clean.get("repository", current.repository if current else "")
    if "forge" not in clean and url_changed:
        clean["forge"] = forge_detect(repository)
    forge = clean.get("forge", current.forge if current else "")
    if "delivery" not in clean and current is None:
        if not repository or local_repository_path(repository) is not None:
            clean["delivery"] = DeliveryMode.NONE
        else:
            clean["delivery"] = DeliveryMode.PULL_REQUEST if forge else DeliveryMode.BRANCH
    delivery = clean.get("delivery", current.delivery if current else DeliveryMode.NONE)
    if delivery == DeliveryMode.PULL_REQUEST and not forge:
        raise _invalid("forge", "Pull requests need to know the forge (github, gitlab or "
                                "gitea): HAAO could not tell it from the repository's host.")
    if delivery != DeliveryMode.NONE and not repository:
        raise _invalid("delivery", "Delivery needs a repository URL.")
    return clean


def project_public(project: Project) -> dict[str, Any]:
    """What the audit log may say about a project's settings: everything but the secrets."""
    return {
        "name": project.name, "description": project.description[:200],
        "repository_url": redact_userinfo(project.repository),
        "default_branch": project.default_branch,
        "setup_command": project.setup_command, "test_command": project.test_command,
        "auth_method": project.auth_method, "token_username": project.token_username,
        "delivery": project.delivery, "forge": project.forge,
        "forge_api_url": redact_userinfo(project.forge_api_url),
        "intake_label": project.intake_label,
        "has_token": bool(project.token),
    }


def full_clean(project: Project) -> None:
    """The model's own checks, reported on the API name of the first bad field."""
    try:
        project.full_clean(exclude=["organization"])
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        name = {v: k for k, v in MODEL_FIELD.items()}.get(field, field)
        raise _invalid(name, f"{name}: {' '.join(messages)}") from None
