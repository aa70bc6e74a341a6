"""Every environment variable HAAO reads is in .env.example and in the README's table, so
neither can fall behind the settings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# The typed readers of haao/settings/env.py: every public function but load_dotenv.
READERS = {node.name for node in ast.parse((ROOT / "haao/settings/env.py").read_text()).body
           if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
           and node.name != "load_dotenv"}


def variables_read() -> set[str]:
    """The names passed to the typed readers of haao/settings/env.py, and any os.environ
    lookup, anywhere in HAAO's code outside tests."""
    names: set[str] = set()
    for path in ROOT.glob("*/**/*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] not in {"haao", "accounts", "tickets", "agents", "policies"} \
                or "tests" in parts or "migrations" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            function = node.func
            if not isinstance(function, ast.Attribute):
                continue
            if isinstance(function.value, ast.Name) and function.value.id == "env" \
                    and function.attr in READERS:
                # env.optional(name, *aliases) reads each of them; the others, one name.
                read = node.args if function.attr == "optional" else node.args[:1]
                names.update(arg.value for arg in read if isinstance(arg, ast.Constant)
                             and isinstance(arg.value, str))
            elif function.attr == "getenv" or (function.attr == "get"
                                               and "environ" in ast.unparse(function.value)):
                names.add(first.value)
    return {name for name in names if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)}


# What the operating system, not HAAO's operator, sets.
NOT_CONFIGURATION = {"PATH", "HOME", "DJANGO_SETTINGS_MODULE"}


def test_the_settings_read_the_variables_this_test_expects() -> None:
    read = variables_read()
    assert {"SECRET_KEY", "DATABASE_URL", "HAAO_RESEND_AFTER_SECONDS", "PORT",
            "CLAUDE_API_KEY"} <= read


def test_every_variable_is_in_env_example() -> None:
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(),
                            re.M))
    missing = sorted(variables_read() - NOT_CONFIGURATION - listed)
    assert missing == [], f"Add to .env.example, with the default: {missing}"


def test_every_variable_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    missing = sorted(variables_read() - NOT_CONFIGURATION - documented)
    assert missing == [], f"Add to the README's configuration table: {missing}"
