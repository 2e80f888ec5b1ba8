"""mypy is strict on the pure core: every module of the purity test is in the strict
override of pyproject.toml ([tool.mypy]), and every ``type: ignore`` names its code."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from tests.unit.test_purity import PURE_MODULES

ROOT = Path(__file__).resolve().parents[2]
STRICT_FLAGS = {
    "disallow_any_generics", "disallow_subclassing_any", "disallow_untyped_calls",
    "disallow_untyped_defs", "disallow_incomplete_defs", "check_untyped_defs",
    "disallow_untyped_decorators", "warn_return_any", "no_implicit_reexport",
    "strict_equality", "extra_checks",
}


def strict_patterns() -> list[str]:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    patterns: list[str] = []
    for override in mypy.get("overrides", []):
        if all(override.get(flag) is True for flag in STRICT_FLAGS):
            module = override["module"]
            patterns += [module] if isinstance(module, str) else module
    return patterns


def test_every_pure_module_is_type_checked_strictly() -> None:
    patterns = strict_patterns()

    loose = [m for m in PURE_MODULES if not any(fnmatch.fnmatchcase(m, p) for p in patterns)]

    assert loose == [], "add these to the strict [[tool.mypy.overrides]] in pyproject.toml"


def test_every_type_ignore_names_its_error_code() -> None:
    bare = re.compile(r"#\s*type:\s*ignore(?!\[)")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("autopilot", "agents", "tables", "tests", "bench", "scripts")
        for path in sorted((ROOT / top).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]

    assert found == []
