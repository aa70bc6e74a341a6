"""An import-linter contract of HAAO's own: no import of HAAO's modules inside a function.

An import inside a function hides a dependency from the reader (and used to hide cycles
between the apps). An app's `AppConfig.ready()` is Django's place for them (models are not
loaded when apps.py is imported); the few others that must stay are listed in pyproject.toml
with their reason:

    [[tool.importlinter.contracts]]
    type = "function_level_imports"
    allowed = ["haao.ssrf -> accounts.models"]
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output

ROOT = Path(__file__).resolve().parent.parent


def function_level_imports(module: str, roots: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) of each import of `roots` made inside a function of `module`."""
    base = ROOT.joinpath(*module.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef) and child.name == "ready" \
                    and module.endswith(".apps"):
                continue  # AppConfig.ready(): where Django wants them
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if in_function and isinstance(child, ast.ImportFrom) and child.level == 0:
                targets = [child.module or ""]
            elif in_function and isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            else:
                targets = []
            found.extend((child.lineno, target) for target in targets
                         if target.split(".")[0] in roots)
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _excluded(module: str) -> bool:
    parts = module.split(".")
    return "tests" in parts or "migrations" in parts


class FunctionLevelImportContract(Contract):
    """Kept when no module of the root packages imports one of them inside a function, except
    the imports listed in `allowed` ("importer -> imported", exact module names)."""

    allowed = fields.ListField(subfield=fields.StringField(), required=False, default=[])

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        roots = set(self.session_options["root_packages"])
        allowed = {tuple(part.strip() for part in item.split("->")) for item in self.allowed}
        found = []
        used = set()
        for module in sorted(graph.modules):
            if module.split(".")[0] not in roots or _excluded(module):
                continue
            for line, imported in function_level_imports(module, roots):
                if (module, imported) in allowed:
                    used.add((module, imported))
                else:
                    found.append({"importer": module, "imported": imported, "line": line})
        stale = sorted(f"{a} -> {b}" for a, b in allowed - used)
        return ContractCheck(kept=not found and not stale,
                             metadata={"found": found, "stale": stale})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["found"]:
            output.print_error(f"{item['importer']} imports {item['imported']} inside a "
                               f"function (l.{item['line']}): import it at the top, or list it "
                               "in `allowed` with the reason.")
            output.new_line()
        for item in check.metadata["stale"]:
            output.print_error(f"`allowed` lists {item}, which no function imports any more: "
                               "remove it.")
            output.new_line()


def layer_modules(layers: list[str]) -> set[str]:
    """Every module a layers contract names."""
    return {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")
            if name.strip()}


def uncovered(modules: Any, layers: list[str]) -> list[str]:
    """The modules of `modules` that no layer names, itself or through a package above it (a
    package whose modules sit in several layers is covered by them)."""
    named = layer_modules(layers)
    return sorted(module for module in modules if not _excluded(module)
                  and not any(module == name or module.startswith(name + ".")
                              or name.startswith(module + ".") for name in named))
