"""Decomposition: the Tech Lead proposes Atomic Tickets; HAAO injects the code and validates.

The model only chooses *which* lines a ticket needs (path and range); the content always comes
from the checkout, so a ticket never carries code the model invented. Invalid proposals are
sent back as an `is_error` tool result at most MAX_REPAIRS times, then refused as a whole.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agents.delivery.branches import work_base
from agents.models import CallRole, InferenceEndpoint
from agents.selectors import tech_lead_endpoint_of
from agents.techlead.client import (
    CallContext,
    InvalidAnswer,
    TechLeadClient,
    TechLeadError,
    block_dicts,
    tool_input,
)
from agents.techlead.prompts import (
    DECOMPOSE_INSTRUCTIONS,
    EPHEMERAL,
    MAX_DECLINED,
    propose_tickets_tool,
)
from agents.techlead.repo_map import repo_map
from agents.workspaces.git import file_lock, git
from agents.workspaces.remote import workspace_of
from agents.workspaces.repos import lock_for
from haao.audit import SYSTEM, Actor
from haao.errors import ApplicationError
from policies.selectors import policy_for
from tickets.models import Requirement, RequirementStatus
from tickets.services import requirement_fail, requirement_propose
from tickets.spec import SpecError, json_path, spec_clean, validate_spec

logger = logging.getLogger(__name__)

MAX_REPAIRS = 2
MAX_OUTPUT_TOKENS = 16_000
MAX_ERRORS_SHOWN = 50


class DecompositionFailed(ApplicationError):
    """The Tech Lead's proposal stayed invalid after every repair; nothing was stored."""

    code = "decomposition_failed"

    def __init__(self, message: str, errors: list[SpecError]) -> None:
        super().__init__(message, details={"errors": [e.as_dict() for e in errors]})
        self.errors = errors


def _read_lines(root: Path, path: str) -> list[str] | str:
    """The file's lines (with endings), or why it cannot be used as code context."""
    if "\0" in path or path.startswith("/") or "\\" in path or ".." in path.split("/"):
        return "must be a relative path inside the repository"
    target = (root / path)
    try:
        resolved = target.resolve(strict=True)
    except (OSError, RuntimeError):
        return "names a file that does not exist in the repository"
    if not resolved.is_relative_to(root.resolve()) or ".git" in Path(path).parts:
        return "must be a file inside the repository"
    if not resolved.is_file():
        return "names a file that does not exist in the repository"
    try:
        return resolved.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return "names a file that is not UTF-8 text"
    except OSError:
        return "names a file that cannot be read"


def inject_code(ticket: dict[str, Any], root: Path) -> list[SpecError]:
    """Fill each `code_context` entry with the real lines of the checkout; return what failed."""
    errors: list[SpecError] = []
    excerpts = ticket.get("code_context")
    if not isinstance(excerpts, list):
        return errors
    for index, excerpt in enumerate(excerpts):
        if not isinstance(excerpt, dict):
            continue
        excerpt.pop("content", None)  # never trust model-provided code
        path, start, end = excerpt.get("path"), excerpt.get("line_start"), excerpt.get("line_end")
        if not isinstance(path, str) or not isinstance(start, int | float) \
                or not isinstance(end, int | float) or not _whole(start) or not _whole(end):
            continue  # the schema reports the missing or mistyped field
        where = ("code_context", index)
        lines = _read_lines(root, path)
        if isinstance(lines, str):
            errors.append(SpecError(json_path((*where, "path")), lines))
            continue
        start, end = int(start), int(end)
        if start < 1 or start > end:
            continue  # the schema and spec rules report it
        if end > len(lines):
            errors.append(SpecError(json_path((*where, "line_end")),
                                    f"is past the end of {path} ({len(lines)} lines)"))
            continue
        excerpt["content"] = "".join(lines[start - 1:end])
    return errors


def _whole(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and float(value).is_integer())


def _prefixed(errors: list[SpecError], index: int) -> list[SpecError]:
    return [SpecError(f"$.tickets[{index}]{error.path[1:]}", error.message)
            for error in errors]


# The project's own test command joins every ticket's Definition of Done under this name.
PROJECT_TESTS = "project tests"
PROJECT_TESTS_TIMEOUT = 900


def with_project_tests(ticket: dict[str, Any], test_command: list[str]) -> None:
    """Add the project's test command to the ticket's checks unless one runs it already."""
    checks = ticket.get("definition_of_done")
    if not test_command or not isinstance(checks, list):
        return
    if any(isinstance(c, dict) and c.get("command") == test_command for c in checks):
        return
    checks.append({"name": PROJECT_TESTS, "command": list(test_command),
                   "expected_exit_code": 0, "timeout_seconds": PROJECT_TESTS_TIMEOUT})


def check_proposal(data: Mapping[str, Any] | None, root: Path,
                   test_command: list[str] | None = None
                   ) -> tuple[list[dict[str, Any]], list[SpecError]]:
    """Clean tickets with their code injected and the project's test command among their
    checks, or every error with its JSON path."""
    if data is None:
        return [], [SpecError("$", "must be a call of the propose_tickets tool")]
    tickets = data.get("tickets")
    if not isinstance(tickets, list) or not tickets:
        return [], [SpecError("$.tickets", "must be a non-empty array of tickets")]
    errors: list[SpecError] = []
    if data.get("declined"):
        errors.append(SpecError("$.declined", "is only for a proposal with no tickets"))
    unknown = sorted(set(data) - {"tickets", "declined"})
    errors += [SpecError(json_path((name,)), "is not allowed (unknown property)")
               for name in unknown]
    candidates: list[dict[str, Any]] = []
    for index, raw in enumerate(tickets):
        if not isinstance(raw, dict):
            errors.append(SpecError(f"$.tickets[{index}]", "must be an object"))
            continue
        try:
            ticket = json.loads(json.dumps(raw))  # a private copy to fill in
        except (ValueError, RecursionError):
            errors.append(SpecError(f"$.tickets[{index}]", "cannot be serialized as JSON"))
            continue
        with_project_tests(ticket, test_command or [])
        ticket_errors = inject_code(ticket, root) + validate_spec(ticket)
        errors += _prefixed(ticket_errors, index)
        candidates.append(ticket)
    if errors:
        return [], errors
    return [spec_clean(ticket) for ticket in candidates], []


def declined(data: Mapping[str, Any] | None) -> str:
    """The Tech Lead's reason for proposing no tickets at all; "" for a proposal."""
    if data is None or data.get("tickets"):
        return ""
    reason = data.get("declined")
    return reason.strip()[:MAX_DECLINED] if isinstance(reason, str) else ""


def _error_report(errors: list[SpecError]) -> str:
    shown = "\n".join(f"- {e.path}: {e.message}" for e in errors[:MAX_ERRORS_SHOWN])
    more = (f"\n(and {len(errors) - MAX_ERRORS_SHOWN} more)"
            if len(errors) > MAX_ERRORS_SHOWN else "")
    return ("The proposal was rejected; nothing was stored. Fix every error below and call "
            f"propose_tickets again with the complete corrected proposal.\n{shown}{more}")


def decomposition_request(*, requirement_text: str, title: str, map_text: str,
                          test_command: list[str] | None = None) -> dict[str, Any]:
    """The first request: tools + instructions + repository map (cached), then the requirement
    (and the project's test command, which every ticket's checks must include)."""
    asked = f"Requirement: {title}\n\n{requirement_text}"
    if test_command:
        asked += ("\n\nThe project's own test suite runs with "
                  f"{json.dumps(test_command)}; include it in every ticket's "
                  "definition_of_done (HAAO adds it where it is missing).")
    return {
        "max_tokens": MAX_OUTPUT_TOKENS,
        "tools": [propose_tickets_tool()],
        "tool_choice": {"type": "tool", "name": "propose_tickets"},
        "system": [
            {"type": "text", "text": DECOMPOSE_INSTRUCTIONS},
            {"type": "text", "text": f"Repository map (tracked files; Python symbols with "
                                     f"line ranges):\n\n{map_text}",
             "cache_control": dict(EPHEMERAL)},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": asked}]}],
    }


def decompose(*, requirement: Requirement, repo_path: Path | str,
              endpoint: InferenceEndpoint, client: TechLeadClient | None = None,
              idempotency_key: str | None = None) -> list[dict[str, Any]]:
    """Validated Atomic Tickets for the requirement, or DecompositionFailed; never invalid ones."""
    root = Path(repo_path)
    client = client or TechLeadClient(endpoint)
    context = CallContext(organization=requirement.organization, role=CallRole.DECOMPOSE,
                          key=idempotency_key or f"decompose:{requirement.pk}",
                          project=requirement.project, requirement=requirement)
    test_command = [str(arg) for arg in requirement.project.test_command or []]
    request = decomposition_request(requirement_text=requirement.text, title=requirement.title,
                                    map_text=repo_map(root), test_command=test_command)
    errors: list[SpecError] = []
    for round_number in range(MAX_REPAIRS + 1):
        try:
            message = client.create(context=context.for_round(f"r{round_number}"), **request)
        except InvalidAnswer as empty:
            # Nothing to answer to: ask the same question again (the round still counts).
            errors = [SpecError("$", empty.message)]
            continue
        tool_id, data = tool_input(message, "propose_tickets")
        reason = declined(data)
        if reason:
            # An answer, not a malformed proposal: no repair round would change it.
            raise DecompositionFailed(f"The Tech Lead declined this requirement: {reason}", [])
        tickets, errors = check_proposal(data, root, test_command)
        if not errors:
            return tickets
        logger.info("Decomposition of %s: round %d invalid (%d errors)", requirement.pk,
                    round_number, len(errors))
        report = _error_report(errors)
        reply: list[dict[str, Any]]
        if tool_id:
            reply = [{"type": "tool_result", "tool_use_id": tool_id, "is_error": True,
                      "content": report}]
        else:
            reply = [{"type": "text", "text": report}]
        request["messages"] = [*request["messages"],
                               {"role": "assistant", "content": block_dicts(message)},
                               {"role": "user", "content": reply}]
    first = errors[0]
    raise DecompositionFailed(
        f"The Tech Lead's tickets were still invalid after {MAX_REPAIRS} repairs: "
        f"{first.path} {first.message}"
        + (f" (and {len(errors) - 1} more)." if len(errors) > 1 else "."), errors)


@contextmanager
def project_checkout(project: Any) -> Iterator[Path]:
    """A temporary work tree of the code the project's next attempts start from (its
    integration branch, or for pull requests the team's default branch), fetched now.

    So the code injected into a ticket is the code its coder will edit.
    """

    repo = workspace_of(project, max_age=0)
    base = work_base(project=project, repo=repo)
    directory = Path(tempfile.mkdtemp(prefix="haao-decompose-")) / uuid.uuid4().hex[:8]
    with file_lock(lock_for(repo)):
        git(["worktree", "add", "--quiet", "--detach", str(directory), base], cwd=repo)
    try:
        yield directory
    finally:
        with file_lock(lock_for(repo)):
            git(["worktree", "remove", "--force", str(directory)], cwd=repo, check=False)
        shutil.rmtree(directory.parent, ignore_errors=True)


def decompose_requirement(*, requirement_id: Any, repo_path: Path | str | None = None,
                          client: TechLeadClient | None = None) -> Requirement | None:
    """Decompose a requirement and store the proposal, or mark it failed with the reason."""
    requirement = (Requirement.objects.select_related("project__organization", "organization")
                   .filter(pk=requirement_id).first())
    if requirement is None:
        logger.warning("Requirement %s to decompose does not exist.", requirement_id)
        return None
    if requirement.status != RequirementStatus.DECOMPOSING:
        return requirement  # delivered twice: the first delivery did the work

    actor: Actor = SYSTEM
    try:
        endpoint = client.endpoint if client else tech_lead_endpoint_of(
            organization=requirement.organization,
            self_hosted_only=policy_for(project=requirement.project).data_residency)
        actor = Actor.model(endpoint.model)
        if repo_path is not None:
            specs = decompose(requirement=requirement, repo_path=repo_path, endpoint=endpoint,
                              client=client)
        else:
            with project_checkout(requirement.project) as checkout:
                specs = decompose(requirement=requirement, repo_path=checkout,
                                  endpoint=endpoint, client=client)
        requirement_propose(requirement=requirement, specs=specs, actor=actor)
    except (TechLeadError, ApplicationError) as error:
        logger.warning("Decomposition of %s failed: %s", requirement.key, error.message)
        requirement_fail(requirement=requirement, reason=error.message, actor=actor)
    except OSError as error:
        requirement_fail(requirement=requirement,
                         reason=f"The project's checkout could not be read: {error}",
                         actor=actor)
    requirement.refresh_from_db()
    return requirement


__all__ = ["DecompositionFailed", "check_proposal", "decompose", "decompose_requirement",
           "inject_code"]
