"""Hygiene of the tests and benchmarks themselves.

``agents/`` and ``tables/`` are installed as ``autopilot.agents`` and
``autopilot.tables`` (pyproject.toml ``package-dir``). With the repository root on
``sys.path`` they are importable under their directory names too, and ``import
agents.metrics`` then loads a *second copy* of the module: monkeypatching one copy does
not touch the other, and its tables and topics are other objects. Tests and benchmarks
therefore import the installed names only. The files are read with ``ast``, so imports
inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("tests", "bench")
#: Top-level directory names that are installed under ``autopilot.``.
SECOND_COPIES = {"agents": "autopilot.agents", "tables": "autopilot.tables"}


def second_copy_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of each absolute import of ``agents``/``tables`` in ``source``.

    Counts ``import agents…``, ``from agents… import …`` and
    ``importlib.import_module("agents…")`` wherever they are (module level, functions,
    classes); relative imports are not these packages and are ignored.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) == "import_module")):
            names = [node.args[0].value]
        # `names` is set only for Import, ImportFrom and Call nodes, which all have a
        # line; ast.AST itself declares none.
        found += [(getattr(node, "lineno", 0), name) for name in names
                  if name.split(".")[0] in SECOND_COPIES]
    return sorted(found)


def test_tests_and_benchmarks_import_agents_and_tables_only_under_autopilot() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {name!r}, a second copy of "
        f"{'autopilot.' + name!r}"
        for top in CHECKED
        for path in sorted((ROOT / top).rglob("*.py"))
        for line, name in second_copy_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_parser_sees_every_form_of_the_import() -> None:
    source = (
        "import agents\n"
        "import tables.baselines as b\n"
        "from agents import metrics\n"
        "import importlib\n"
        "def f():\n"
        "    from agents.metrics import process\n"
        "    return importlib.import_module('tables')\n"
        "from . import agents\n"
        "from autopilot.agents import metrics as agent\n"
        "import autopilot.tables\n"
        "import agentsmith\n"
    )
    assert second_copy_imports(source) == [
        (1, "agents"), (2, "tables.baselines"), (3, "agents"), (6, "agents.metrics"),
        (7, "tables"),
    ]
