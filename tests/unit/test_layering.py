"""Import layering: no cycle between our modules, and every import points down the layers.

Beside :mod:`tests.unit.test_purity` (the pure core needs no Faust and no network),
this test reads every module of the installed packages (``autopilot/``, ``agents/`` as
``autopilot.agents``, ``tables/`` as ``autopilot.tables`` and any other directory that
``pyproject.toml`` maps under ``[tool.setuptools.package-dir]``) with :mod:`ast`, without
importing them. Every import counts: at module level, inside functions (a lazy import
is still a dependency), under ``if TYPE_CHECKING:``, and ``importlib.import_module``
with a literal name.

Allowed layer order, lowest first (a module may import its own layer and the layers
below it, never one above; inside a layer the cycle check keeps imports one-way):

====  ============  ============================================================
rank  layer         modules
====  ============  ============================================================
0     core          ``autopilot.*`` not named below, ``autopilot.formats.*``, and the
                    web package's pure modules (``web.route``, ``web.schemas``,
                    ``web.openapi``): no Faust, no network (``test_purity.py``)
1     integrations  ``autopilot.integrations.*`` (Ollama, Slack, Redis clients) and
                    ``autopilot.web.middleware`` (the aiohttp guard the app installs)
2     app           ``autopilot.app`` (builds the ``faust.App``), ``autopilot.streams``
                    (the Faust topic objects), ``autopilot.broker`` (the local Kafka)
3     tables        ``autopilot.tables.*``
4     agents        ``autopilot.agents.*``: stream stages
5     web           ``autopilot.web.*`` (views, ingestion, probes, the route table)
6     entry         ``autopilot.cli``, ``autopilot.demo``, ``autopilot.__main__``: the
                    console script and its commands
====  ============  ============================================================

Importing a module also runs its parent packages' ``__init__``: for the cycle check
those count as imported too (except the importer's own parents, which Python loaded
before it); the layer check looks at the modules named in the imports.

So ``autopilot.app`` importing ``autopilot.cli`` (the old ``app`` ↔ ``cli`` ↔ ``demo``
cycle) fails twice: as a cycle and as an import from the entry layer into the app layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (module-name prefix, layer) — the longest matching prefix decides.
LAYER_RULES: tuple[tuple[str, str], ...] = (
    ("autopilot", "core"),
    ("autopilot.integrations", "integrations"),
    ("autopilot.web.middleware", "integrations"),
    ("autopilot.app", "app"),
    ("autopilot.streams", "app"),
    ("autopilot.broker", "app"),
    ("autopilot.tables", "tables"),
    ("autopilot.agents", "agents"),
    ("autopilot.web", "web"),
    # The web package's pure modules (the route table's types, schemas, OpenAPI).
    ("autopilot.web.route", "core"),
    ("autopilot.web.schemas", "core"),
    ("autopilot.web.openapi", "core"),
    ("autopilot.cli", "entry"),
    ("autopilot.demo", "entry"),
    ("autopilot.__main__", "entry"),
)
LAYERS = ("core", "integrations", "app", "tables", "agents", "web", "entry")

def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Package name → source directory, from ``pyproject.toml`` (``autopilot`` itself too)."""
    conf = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    mapped = conf.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    dirs = {"autopilot": root / "autopilot"}
    dirs.update({name: root / path for name, path in mapped.items() if name})
    return dirs


def module_files(dirs: Mapping[str, Path]) -> dict[str, Path]:
    """Every module name → its file, for the package directories ``dirs``."""
    out: dict[str, Path] = {}
    for package, directory in dirs.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            # A sub-directory mapped elsewhere (agents/ → autopilot.agents) wins.
            out.setdefault(name, path)
    return out


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of everything ``source`` imports, anywhere in the file.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule); the
    caller keeps the names that are modules.
    """
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def resolve(name: str, modules: Iterable[str]) -> str | None:
    """The module ``name`` loads: itself, else its longest prefix that is one of ours."""
    known = set(modules)
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path = ROOT, *, parents: bool = True) -> dict[str, set[str]]:
    """Module → the modules of ours it imports (self-imports left out); with ``parents``
    also the parent packages of each, whose ``__init__`` the import runs."""
    files = module_files(package_dirs(root))
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(path.read_text(encoding="utf-8"), module,
                                   path.name == "__init__.py"):
            target = resolve(name, files)
            if target is None:
                continue
            targets.add(target)
            if parents:  # importing a.b.c runs a/__init__ and a/b/__init__ first
                parts = target.split(".")
                targets.update(".".join(parts[:i]) for i in range(1, len(parts)))
        # A module's own parent packages were loaded before it; and no self-edges.
        parts = module.split(".")
        targets -= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str) -> str:
    """The layer of ``module`` (longest matching prefix of :data:`LAYER_RULES`)."""
    best = ("", "core")
    for prefix, layer in LAYER_RULES:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[0]):
            best = (prefix, layer)
    return best[1]


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    """Every ``(importer, imported)`` where the imported module sits in a higher layer."""
    return sorted(
        (src, dst)
        for src, targets in graph.items()
        for dst in targets
        if LAYERS.index(layer_of(dst)) > LAYERS.index(layer_of(src))
    )


# ----------------------------------------------------------------------- the real code


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_covers_every_package_and_sees_lazy_imports(
        graph: dict[str, set[str]]) -> None:
    assert {"autopilot.app", "autopilot.detection", "autopilot.agents.metrics",
            "autopilot.tables", "autopilot.cli"} <= set(graph)
    # run_backtest_command imports the backtest module inside the function.
    assert "autopilot.backtest" in graph["autopilot.cli"]


def test_no_import_cycle_between_our_modules(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_every_import_points_down_the_layers() -> None:
    assert upward_imports(import_graph(parents=False)) == []


def test_the_app_does_not_import_the_console_script() -> None:
    imported = import_graph()["autopilot.app"]

    assert not imported & {"autopilot.cli", "autopilot.demo", "autopilot.__main__"}


def test_topic_names_need_no_faust() -> None:
    code = ("import sys, autopilot.topics as t; "
            "print(t.topic_name(t.METRICS, 'x'), 'faust' in sys.modules)")

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)

    assert out.stdout.split() == ["x.metrics", "False"]


# ------------------------------------------------------------- the checks can fail


def test_a_synthetic_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}

    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_app_importing_the_cli_again_fails_both_checks() -> None:
    graph = {"autopilot.app": {"autopilot.settings", "autopilot.cli"},
             "autopilot.cli": {"autopilot.app"},
             "autopilot.settings": set()}

    assert cycles(graph) == [["autopilot.app", "autopilot.cli"]]
    assert upward_imports(graph) == [("autopilot.app", "autopilot.cli")]


def test_the_core_importing_an_agent_is_upward() -> None:
    assert upward_imports({"autopilot.detection": {"autopilot.agents.metrics"}}) == [
        ("autopilot.detection", "autopilot.agents.metrics")
    ]


def test_the_parser_counts_lazy_relative_and_importlib_imports(tmp_path: Path) -> None:
    source = (
        "import autopilot.models\n"
        "from . import replay\n"
        "def f():\n"
        "    from autopilot import cli\n"
        "    import importlib\n"
        "    importlib.import_module('autopilot.demo')\n"
    )
    names = imported_names(source, "autopilot.correlation", is_package=False)
    modules = ["autopilot", "autopilot.models", "autopilot.replay", "autopilot.cli",
               "autopilot.demo", "autopilot.correlation"]

    resolved = {resolve(n, modules) for n in names} - {None}

    assert {"autopilot.models", "autopilot.replay", "autopilot.cli",
            "autopilot.demo"} <= resolved


def test_modules_map_to_their_installed_names(tmp_path: Path) -> None:
    (tmp_path / "autopilot").mkdir()
    (tmp_path / "autopilot" / "__init__.py").write_text("")
    (tmp_path / "autopilot" / "app.py").write_text("import autopilot.agents.x\n")
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "__init__.py").write_text("")
    (tmp_path / "agents" / "x.py").write_text("from autopilot.app import app\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.package-dir]\n"autopilot" = "autopilot"\n'
        '"autopilot.agents" = "agents"\n'
    )

    graph = import_graph(tmp_path)

    assert graph["autopilot.app"] == {"autopilot.agents", "autopilot.agents.x"}
    assert graph["autopilot.agents.x"] == {"autopilot.app"}
    assert cycles(graph) == [["autopilot.agents.x", "autopilot.app"]]
