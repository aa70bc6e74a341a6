"""Git workspaces for attempts: a bare clone per project, a worktree per attempt, safe edits.

See docs/workspaces.md for the layout on disk and the safety rules.
"""

from __future__ import annotations

from agents.workspaces.apply import (
    CHANGE_TOO_LARGE,
    DEFAULT_MAX_CHANGED_LINES,
    DEFAULT_MAX_FILE_BYTES,
    AppliedChange,
    EditNotApplicable,
    EditRefused,
    apply_edits,
    path_allowed,
)
from agents.workspaces.attempts import (
    MergeResult,
    NothingToCommit,
    attempt_branch,
    attempt_worktree,
    base_of,
    changed_paths,
    commit_attempt,
    diff_of,
    merge_into_integration,
)
from agents.workspaces.git import WorkspaceError
from agents.workspaces.repos import workspace_prepare

__all__ = [
    "CHANGE_TOO_LARGE",
    "DEFAULT_MAX_CHANGED_LINES",
    "DEFAULT_MAX_FILE_BYTES",
    "AppliedChange",
    "EditNotApplicable",
    "EditRefused",
    "MergeResult",
    "NothingToCommit",
    "WorkspaceError",
    "apply_edits",
    "attempt_branch",
    "attempt_worktree",
    "base_of",
    "changed_paths",
    "commit_attempt",
    "diff_of",
    "merge_into_integration",
    "path_allowed",
    "workspace_prepare",
]
