"""The guardrail rules an organization (or one project) sets: names, defaults and validation.

A policy row stores only the values it sets; what is not set comes from the organization's
row, then from the defaults here (policies.selectors). Every value that reaches a row has
passed `rules_clean`, which names the field of each problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from haao.errors import ApplicationError

# Paths agents may never change unless an admin removes them: the repository's own
# metadata, CI configuration (it runs with the CI's secrets), environment files and keys.
DEFAULT_DENIED_PATHS = (
    ".git/**", "**/.git/**",
    ".github/workflows/**", ".github/actions/**", ".gitlab-ci.yml", ".gitlab/**",
    ".circleci/**", ".travis.yml", "Jenkinsfile", "azure-pipelines.yml",
    "bitbucket-pipelines.yml", ".buildkite/**", ".ci/**",
    "**/.env", "**/.env.*", "**/*.pem", "**/*.key", "**/*.p12", "**/*.pfx", "**/*.jks",
    "**/*.keystore", "**/id_rsa*", "**/id_dsa*", "**/id_ecdsa*", "**/id_ed25519*",
    "**/.npmrc", "**/.pypirc", "**/.netrc",
)

# Programs a Definition-of-Done check may start (the first element of its argv).
DEFAULT_PROGRAMS = ("pytest", "python", "python3", "npm", "npx", "node", "make", "go", "cargo",
                    "ruff", "mypy", "tox")

# Interpreters and the options that make them run code given on the command line instead of
# a file: refused unless the policy's `inline_code` allows it.
INLINE_CODE_OPTIONS: dict[str, frozenset[str]] = {
    "python": frozenset({"-c"}), "node": frozenset({"-e", "--eval", "-p", "--print"}),
    "perl": frozenset({"-e", "-E"}), "ruby": frozenset({"-e"}), "php": frozenset({"-r"}),
    "deno": frozenset({"eval"}), "bun": frozenset({"-e", "--eval", "-p", "--print"}),
    "sh": frozenset({"-c"}), "bash": frozenset({"-c"}),
}


def inline_code_option(argv: Sequence[str]) -> str | None:
    """The option by which `argv` runs code typed on its command line, if it does:
    `python3.12 -c …` → "-c", `node --eval=…` → "--eval"; options combined with others
    (`python -Bc …`) count too."""
    if not argv:
        return None
    program = str(argv[0]).rsplit("/", 1)[-1]
    family = "python" if program.startswith("python") else program
    options = INLINE_CODE_OPTIONS.get(family)
    if options is None:
        return None
    for arg in map(str, argv[1:]):
        name = arg.split("=", 1)[0]
        if name in options:
            return name
        if family in ("python", "perl", "ruby", "sh", "bash") and arg.startswith("-") \
                and not arg.startswith("--") and any(f"-{c}" in options for c in arg[1:]):
            return next(f"-{c}" for c in arg[1:] if f"-{c}" in options)
        if not arg.startswith("-"):
            return None  # a script file: what follows is its own arguments
    return None


# Programs HAAO knows as test runners, build tools and linters; a policy may allow these,
# or a script inside the repository ("./scripts/check").
KNOWN_PROGRAMS = frozenset({
    *DEFAULT_PROGRAMS, "python3.11", "python3.12", "python3.13", "uv", "hatch", "nox",
    "poetry", "pdm", "coverage", "flake8", "pylint", "black", "isort", "bandit",
    "django-admin", "yarn", "pnpm", "bun", "deno", "jest", "vitest", "mocha", "tsc",
    "eslint", "prettier", "playwright", "gradle", "mvn", "ant", "sbt", "java", "javac",
    "kotlinc", "dotnet", "msbuild", "rustc", "cargo-nextest", "gofmt", "golangci-lint",
    "ruby", "rake", "bundle", "rspec", "php", "phpunit", "composer", "mix", "elixir",
    "swift", "xcodebuild", "cmake", "ctest", "ninja", "meson", "gcc", "g++", "clang",
    "clang++", "shellcheck", "bats", "terraform", "tflint", "helm", "kubeval",
})

# Programs that run whatever command they are given: allowing one allows everything.
ANY_COMMAND_PROGRAMS = frozenset({
    "sh", "bash", "zsh", "dash", "ksh", "fish", "env", "sudo", "su", "doas", "xargs",
    "nohup", "timeout", "nice", "exec", "eval", "busybox", "ssh", "curl", "wget",
})

MONEY_MAX = Decimal("1000000")
REASON_MIN = 10
TEXT_MAX = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PATTERNS_MAX = 200
PATTERN_LENGTH_MAX = 300
_PROGRAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class PolicyInvalid(ApplicationError):
    """A policy value is out of range or malformed; `details` maps each field to its errors."""

    code = "invalid_policy"


@dataclass(frozen=True)
class Rule:
    """One rule of a policy."""

    name: str
    label: str
    kind: str  # bool | int | money | paths | programs | choice | text
    default: Any
    help: str
    group: str
    minimum: int = 0
    maximum: int = 0
    choices: tuple[tuple[str, str], ...] = ()
    nullable: bool = False  # None means "no limit" (spend caps)
    unit: str = ""


RULES: tuple[Rule, ...] = (
    Rule("allowed_paths", "Paths agents may change", "paths", ("**",),
         "Glob patterns (* within a folder, ** across folders). A ticket may change only "
         "paths that both its own list and this one allow.", "Paths"),
    Rule("denied_paths", "Paths agents may never change", "paths", DEFAULT_DENIED_PATHS,
         "Glob patterns that win over every allow. A project adds to its organization's list.",
         "Paths"),
    Rule("max_changed_files", "Largest change: files", "int", 20,
         "Files one attempt may create, change or delete.", "Paths", 1, 1000),
    Rule("max_changed_lines", "Largest change: lines", "int", 2000,
         "Lines one attempt may add and remove, together.", "Paths", 1, 100_000),
    Rule("allowed_programs", "Programs checks may run", "programs", DEFAULT_PROGRAMS,
         "The first element of a Definition-of-Done command: a known tool, or a script in the "
         "repository such as ./scripts/check.", "Checks"),
    Rule("inline_code", "Inline code in checks", "bool", False,
         "Allow checks such as python -c '…' or node -e '…'. Off, an interpreter runs files "
         "of the repository (and the test runners do), never a program typed into the "
         "check.", "Checks"),
    Rule("sandbox_timeout_seconds", "Sandbox time limit", "int", 600,
         "Wall-clock seconds one check may run.", "Checks", 1, 3600, unit="s"),
    Rule("sandbox_memory_mb", "Sandbox memory limit", "int", 4096,
         "Address space of one check.", "Checks", 64, 65_536, unit="MB"),
    Rule("sandbox_max_processes", "Sandbox process limit", "int", 256,
         "Processes and threads one check may have at once.", "Checks", 4, 4096),
    Rule("sandbox_network", "Sandbox network", "bool", False,
         "Checks run without network unless this is on (with a stated reason).", "Checks"),
    Rule("sandbox_network_reason", "Why checks need the network", "text", "",
         "Required when the sandbox network is on; kept with the policy's history.", "Checks"),
    Rule("retry_budget", "Retry budget", "int", 3,
         "Tries a local coder gets after its first failed one.", "Routing", 0, 20),
    Rule("escalation_allowed", "Escalation to the cloud", "bool", True,
         "Hand a ticket to the Tech Lead when local attempts are spent.", "Routing"),
    Rule("max_cloud_attempts", "Tech Lead attempts", "int", 2,
         "Attempts the Tech Lead makes on an escalated ticket.", "Routing", 1, 10),
    Rule("wip_limit", "WIP limit", "int", 3,
         "Tickets of a project that may run at once.", "Routing", 1, 100),
    Rule("data_residency", "Data residency", "bool", False,
         "No cloud model is ever called: every model, the Tech Lead too, must be a "
         "self-hosted endpoint.", "Cloud"),
    Rule("ticket_cloud_cap_usd", "Cloud spend cap per ticket", "money", Decimal("5"),
         "USD; a cloud call that could go over it is refused before it is made.", "Cloud",
         nullable=True, unit="USD"),
    Rule("requirement_cloud_cap_usd", "Cloud spend cap per requirement", "money",
         Decimal("25"), "USD, over the requirement's decomposition and all its tickets.",
         "Cloud", nullable=True, unit="USD"),
    Rule("monthly_cloud_cap_usd", "Cloud spend cap per month", "money", None,
         "USD for the whole organization in a calendar month (UTC); empty for none.", "Cloud",
         nullable=True, unit="USD"),
    Rule("audit_mode", "Audit", "choice", "all",
         "Which work that passed the checks the Tech Lead audits.", "Audit",
         choices=(("all", "Every passing ticket"), ("sampled", "A sampled share"),
                  ("off", "None"))),
    Rule("audit_work", "Work audited", "choice", "local",
         "Whose passing work is audited: the local coders' (the Tech Lead does not audit "
         "its own escalated work), or all of it.", "Audit",
         choices=(("local", "Work of local coders"), ("all", "All work, the Tech Lead's too"))),
    Rule("audit_sample_percent", "Audit sample", "int", 20,
         "Share of passing tickets audited when the audit is sampled.", "Audit", 1, 100,
         unit="%"),
    Rule("max_audit_failures", "Failed audits before a block", "int", 3,
         "Failed audits after which a ticket is blocked for a person.", "Audit", 1, 20),
)
BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
# Lists a project adds to instead of replacing.
ADDITIVE = frozenset({"denied_paths"})


def defaults() -> dict[str, Any]:
    return {rule.name: _copy(rule.default) for rule in RULES}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --- Globs -------------------------------------------------------------------------------------

@cache
def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` and `?` stay within a folder; `**` spans folders (`a/**` is everything below a,
    `**/x` is x in any folder, the top one too)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def fold_path(path: str) -> str:
    """`path` (or a pattern) as a case-insensitive file system that drops trailing dots and
    spaces (Windows, macOS by default) would name it: each folder casefolded and stripped."""
    return "/".join(segment.rstrip(". ").casefold() for segment in path.split("/"))


def path_matches(path: str, patterns: Sequence[str], *, fold: bool = False) -> str | None:
    """The first pattern that matches `path`, or None; with `fold`, compared as `fold_path`
    names both (for paths that must never be changed: `SECRETS.txt.` is `secrets.txt`)."""
    subject = fold_path(path) if fold else path
    for pattern in patterns:
        if glob_regex(fold_path(pattern) if fold else pattern).fullmatch(subject):
            return pattern
    return None


def _pattern_error(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        return "must be a non-empty text"
    if _CONTROL.search(pattern) or "\n" in pattern or "\t" in pattern:
        return f"{pattern[:40]!r} contains a control character"
    if len(pattern) > PATTERN_LENGTH_MAX:
        return f"{pattern[:40]!r}… is longer than {PATTERN_LENGTH_MAX} characters"
    if pattern.startswith("/") or "\\" in pattern:
        return f"{pattern!r} must be relative to the repository root, with '/' between folders"
    segments = pattern.split("/")
    if ".." in segments or "." in segments or "" in segments:
        return f"{pattern!r} has an empty, '.' or '..' segment"
    if any(char in pattern for char in "[]{}!"):
        return f"{pattern!r} may use only '*', '**' and '?' as wildcards"
    if any("**" in segment and segment != "**" for segment in segments):
        return f"{pattern!r}: '**' must be a whole segment, as in 'src/**' or '**/*.py'"
    return ""


def program_error(program: Any) -> str:
    if not isinstance(program, str) or not program:
        return "must be a non-empty text"
    if program.startswith("./"):
        error = _pattern_error(program[2:])
        return error if error else ("" if not any(c in program for c in "*?") else
                                    f"{program!r}: a script is named without wildcards")
    if not _PROGRAM.fullmatch(program):
        return f"{program!r} is not a program name (a bare name such as 'pytest', or a " \
               "script in the repository such as './scripts/check')"
    if program in ANY_COMMAND_PROGRAMS:
        return f"{program!r} runs any command it is given; allowing it would allow everything"
    if program not in KNOWN_PROGRAMS:
        return f"{program!r} is not a program HAAO knows; name a test runner or build tool, " \
               "or a script in the repository such as './scripts/check'"
    return ""


# --- Validation --------------------------------------------------------------------------------

def _clean(rule: Rule, value: Any) -> tuple[Any, list[str]]:
    if value is None:
        return (None, []) if rule.nullable else (None, ["may not be empty"])
    if rule.kind == "bool":
        return (value, []) if isinstance(value, bool) else (None, ["must be true or false"])
    if rule.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, ["must be a whole number"]
        if not rule.minimum <= value <= rule.maximum:
            return None, [f"must be from {rule.minimum} to {rule.maximum}"]
        return value, []
    if rule.kind == "money":
        if isinstance(value, float) and not value.is_integer():  # 0.1 in JSON is not 0.1
            return None, ["must be a string or a whole number, such as \"12.50\" or 12 "
                          "(a number with a fraction is not exact)"]
        if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
            return None, ["must be an amount in USD, such as \"12.50\""]
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            return None, [f"{str(value)[:40]!r} is not an amount"]
        if not amount.is_finite() or amount < 0:
            return None, ["must be zero or more"]
        if amount > MONEY_MAX:
            return None, [f"must be at most {MONEY_MAX}"]
        if amount != amount.quantize(Decimal("0.01")):
            return None, ["has more than two decimal places"]
        return amount.quantize(Decimal("0.01")), []
    if rule.kind == "choice":
        names = [name for name, _ in rule.choices]
        if value not in names:
            return None, [f"must be one of {', '.join(names)}"]
        return value, []
    if rule.kind == "text":
        if not isinstance(value, str):
            return None, ["must be a text"]
        if len(value) > TEXT_MAX:
            return None, [f"must be at most {TEXT_MAX} characters"]
        if _CONTROL.search(value):
            return None, ["must not contain control characters"]
        return value.strip(), []
    # paths, programs: lists of texts
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return None, ["must be a list"]
    if len(value) > PATTERNS_MAX:
        return None, [f"may hold at most {PATTERNS_MAX} entries"]
    check = _pattern_error if rule.kind == "paths" else program_error
    errors = [f"entry {index + 1}: {error}" for index, item in enumerate(value)
              if (error := check(item))]
    return (list(dict.fromkeys(value)), []) if not errors else (None, errors)


def rules_clean(changes: Mapping[str, Any], *, current: Mapping[str, Any]) -> dict[str, Any]:
    """The changes, validated and normalised; raise PolicyInvalid naming every bad field.

    `current` is the effective policy the changes apply to (for rules that depend on each
    other: the network needs a reason).
    """
    if not isinstance(changes, Mapping):
        raise PolicyInvalid("The policy must be an object of rule names and values.",
                            details={"policy": ["must be an object"]})
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for name, value in changes.items():
        rule = BY_NAME.get(name)
        if rule is None:
            errors[str(name)[:100]] = [f"is not a policy rule; the rules are "
                                       f"{', '.join(BY_NAME)}"]
            continue
        cleaned[name], problems = _clean(rule, value)
        if problems:
            errors[name] = problems
    merged = {**current, **cleaned}
    if not errors and merged.get("sandbox_network") and \
            len(str(merged.get("sandbox_network_reason") or "").strip()) < REASON_MIN:
        errors["sandbox_network_reason"] = [
            f"state why checks need the network (at least {REASON_MIN} characters) before "
            "turning it on"]
    if errors:
        fields = ", ".join(errors)
        first = next(iter(errors.values()))[0]
        raise PolicyInvalid(f"The policy was not changed: {fields} {first}"
                            + (" (and more)" if len(errors) > 1 else "") + ".",
                            details=errors)
    return cleaned


_AMOUNT = r"^(?:[0-9]{1,6}(?:\.[0-9]{1,2})?|1000000(?:\.00?)?)$"
# Globs the schema promises are accepted: plain names (a leading dot too, as in .env),
# `*`, `**`, `*.ext` and `name*` segments. `_pattern_error` accepts a little more.
_NAME = r"\.?[A-Za-z0-9_-][A-Za-z0-9_.-]*\*?"
_SEGMENT = rf"(?:\*\*|\*|\*\.[A-Za-z0-9_.-]+|{_NAME})"
_GLOB = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
_SCRIPT = r"^\./[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$"


def rules_object_schema() -> dict[str, Any]:
    """The JSON Schema of a set of rule changes: known names only, each value's own schema,
    and the network turned on only with a reason of at least REASON_MIN characters."""
    reason = {"minLength": REASON_MIN, "pattern": rf"\S[\s\S]{{{REASON_MIN - 2},}}\S"}
    return {"type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {rule.name: json_schema(rule) for rule in RULES},
            "anyOf": [{"properties": {"sandbox_network": {"enum": [False]}}},
                      {"required": ["sandbox_network_reason"],
                       "properties": {"sandbox_network_reason": reason}}]}


def json_schema(rule: Rule) -> dict[str, Any]:
    """The JSON Schema of a rule's value, as far as one can say it (the API's contract);
    `_clean` stays the judge of glob syntax, program names and the network's reason."""
    schema: dict[str, Any]
    if rule.kind == "bool":
        schema = {"type": "boolean"}
    elif rule.kind == "int":
        schema = {"type": "integer", "minimum": rule.minimum, "maximum": rule.maximum}
    elif rule.kind == "money":
        schema = {"anyOf": [{"type": "string", "pattern": _AMOUNT},
                            {"type": "integer", "minimum": 0, "maximum": int(MONEY_MAX)}],
                  "description": "USD, e.g. \"12.50\"."}
    elif rule.kind == "choice":
        schema = {"type": "string", "enum": [name for name, _ in rule.choices]}
    elif rule.kind == "text":
        schema = {"type": "string", "maxLength": TEXT_MAX,
                  "pattern": "^[^\\x00-\\x08\\x0b-\\x1f\\x7f]*$"}
    else:  # paths, programs
        item: dict[str, Any] = {"type": "string", "maxLength": PATTERN_LENGTH_MAX}
        if rule.kind == "paths":
            item["pattern"] = _GLOB
        else:
            item["maxLength"] = PATTERN_LENGTH_MAX + len("./")
            allowed = sorted(KNOWN_PROGRAMS - ANY_COMMAND_PROGRAMS)
            item["anyOf"] = [{"enum": allowed}, {"pattern": _SCRIPT}]
        schema = {"type": "array", "maxItems": PATTERNS_MAX, "items": item}
    if rule.nullable:
        schema["nullable"] = True
    return schema


def to_json(name: str, value: Any) -> Any:
    """A rule's value as stored in a row's JSON (money as a string, never a float)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def from_json(name: str, value: Any) -> Any:
    rule = BY_NAME[name]
    if rule.kind == "money" and value is not None:
        return Decimal(str(value))
    return value
