"""The order of HAAO's parts (pyproject.toml, [tool.importlinter]) names every module."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.import_contracts import function_level_imports, uncovered

ROOT = Path(__file__).resolve().parent.parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}
PACKAGES = CONFIG["root_packages"]


def modules(package: str) -> list[str]:
    """Every module of `package` (tests and migrations included: the contracts skip them)."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_of_hao_has_a_place_in_the_order_of_its_parts() -> None:
    # The sample models are kept apart by their own contract (nothing of HAAO imports them).
    packages = {module for module in PACKAGES if module != "sample_models"}
    missing = uncovered([m for package in sorted(packages) for m in modules(package)
                         if m not in packages], CONTRACTS["layers"]["layers"])
    assert missing == [], ("Name these modules in a layer of pyproject.toml's "
                           f"[tool.importlinter] 'layers' contract: {missing}")


def test_every_module_of_the_loop_has_a_place_in_its_order() -> None:
    pages = uncovered(modules("agents"), CONTRACTS["layers"]["layers"][1:2])
    loop = [module for module in pages if module not in ("agents", "agents.delivery")]
    missing = uncovered(loop, CONTRACTS["agents"]["layers"])
    assert missing == [], ("Name these modules in a layer of pyproject.toml's 'agents' "
                           f"contract: {missing}")


@pytest.mark.parametrize("source", [
    "def f():\n    from agents.models import ModelCall\n",
    "class C:\n    def f(self):\n        import tickets.state\n",
    "async def f():\n    from haao import audit\n",
])
def test_an_import_of_hao_inside_a_function_is_found(tmp_path: Path, monkeypatch,
                                                      source: str) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("import os\nfrom tickets import models\n" + source)
    monkeypatch.setattr("tests.import_contracts.ROOT", tmp_path)
    found = function_level_imports("pkg.mod", {"agents", "tickets", "haao"})
    assert len(found) == 1 and found[0][0] >= 3


def test_app_ready_and_other_packages_inside_functions_are_not_counted(
        tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "apps.py").write_text(
        "class Config:\n    def ready(self):\n        from tickets import live\n"
        "def other():\n    import json\n    from django.conf import settings\n")
    monkeypatch.setattr("tests.import_contracts.ROOT", tmp_path)
    assert function_level_imports("pkg.apps", {"tickets"}) == []
