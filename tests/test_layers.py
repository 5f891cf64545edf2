"""The architecture, kept: every module has a floor, imports only go down, and each name
is imported from the module that defines it.

Read from the source (``ast``), every import counts: at the top, in a function, under
``TYPE_CHECKING``. A module may import from its own floor or a lower one of its own
tower, or from the towers beneath its own; never up, never sideways between towers
(the server and the clients never import each other), and never in a circle. A new
module must be given a floor here: that is the moment to think where it belongs. And no
package re-exports what its modules define: an import names the room a name lives in.
docs/architecture.md draws the same map for people.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each tower's floors, bottom first: the modules on each (``*`` covers a folder).
TOWERS: dict[str, list[tuple[str, list[str]]]] = {
    "progress_protocol": [
        ("the words both sides share", ["progress_protocol", "progress_protocol.*"]),
    ],
    "progress_server": [
        (
            "pure words and rules",
            [
                "progress_server",
                "progress_server.calculation",
                "progress_server.limits",
                "progress_server.config",
                "progress_server.auth",
                "progress_server.redaction",
                "progress_server.tokens",
                "progress_server.users",
                "progress_server.presence",
            ],
        ),
        ("instruments", ["progress_server.metrics", "progress_server.logs"]),
        (
            "the I/O seam",
            [
                "progress_server.transport",
                "progress_server.transport.*",
                "progress_server.backends",
                "progress_server.backends.*",
                "progress_server.access",
            ],
        ),
        ("fan-out and actions", ["progress_server.hub", "progress_server.service"]),
        ("endpoints", ["progress_server.endpoints", "progress_server.endpoints.*"]),
        ("setup", ["progress_server.server", "progress_server.workers"]),
        ("command line", ["progress_server.cli", "progress_server.__main__"]),
    ],
    "progress_client": [
        (
            "pure words and rules",
            [
                "progress_client",
                "progress_client.wording",
                "progress_client.notifications",
                "progress_client.reconnect",
                "progress_client.failover",
            ],
        ),
        ("what happens, in words", ["progress_client.failures", "progress_client.events"]),
        ("the I/O seam", ["progress_client.connection"]),
        ("the client", ["progress_client.client"]),
        ("the options", ["progress_client.options"]),
        ("command line", ["progress_client.ctl"]),
    ],
    "progress_tui": [
        (
            "pure state, no Textual",
            [
                "progress_tui",
                "progress_tui.panel",
                "progress_tui.status",
                "progress_tui.wrapping",
                "progress_tui.mailbox",
                "progress_tui.ends",
                "progress_tui.settings",
            ],
        ),
        (
            "Textual's seams",
            [
                "progress_tui.messages",
                "progress_tui.toasts",
                "progress_tui.terminal",
                "progress_tui.themes",
            ],
        ),
        (
            "widgets and screens",
            [
                "progress_tui.widgets",
                "progress_tui.widgets.*",
                "progress_tui.screens",
                "progress_tui.screens.*",
            ],
        ),
        ("the app", ["progress_tui.app"]),
        ("command line", ["progress_tui.cli"]),
    ],
    "progress_bench": [
        ("the load and the peers", ["progress_bench", "progress_bench.*"]),
        ("command line", ["progress_bench.cli"]),
    ],
}

#: The towers each tower stands on.
BENEATH: dict[str, set[str]] = {
    "progress_protocol": set(),
    "progress_server": {"progress_protocol"},
    "progress_client": {"progress_protocol"},
    "progress_tui": {"progress_protocol", "progress_client"},
    "progress_bench": {"progress_protocol", "progress_server", "progress_client"},
}


def modules() -> Iterator[tuple[str, Path]]:
    for tower in TOWERS:
        for path in sorted((ROOT / tower).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def floor_of(module: str) -> tuple[str, int] | None:
    """The tower and floor of ``module``, or of the nearest package above it that has
    one (``from .backends import base`` names a package, then a module)."""
    tower = module.partition(".")[0]
    if tower not in TOWERS:
        return None
    # The most specific pattern wins: "progress_bench.cli" over "progress_bench.*".
    best: tuple[int, int] | None = None
    for floor, (_name, patterns) in enumerate(TOWERS[tower]):
        for pattern in patterns:
            if fnmatch.fnmatchcase(module, pattern):
                specific = len(pattern) - 2 * pattern.count("*")
                if best is None or specific > best[0]:
                    best = (specific, floor)
    return None if best is None else (tower, best[1])


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """The modules of our towers that ``module`` imports, with the line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # "from . import calculation" imports a module; "from .x import Name" a name.
            names = [f"{source}.{alias.name}" for alias in node.names]
            names = [name if _exists(name) else source for name in names]
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            # importlib.import_module("progress_x.y") or __import__(...): an import all the
            # same, which the floors must see.
            argument = node.args[0] if node.args else None
            if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                yield "<an import whose module is computed>", node.lineno
                continue
            names = [argument.value]
        else:
            continue
        for name in names:
            if name.partition(".")[0] in TOWERS:
                yield name, node.lineno


def _dynamic_import(node: ast.Call) -> bool:
    function = node.func
    if isinstance(function, ast.Name):
        return function.id in ("__import__", "import_module")
    return isinstance(function, ast.Attribute) and function.attr == "import_module"


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


GRAPH = {module: list(imports_of(module, path)) for module, path in modules()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_module_has_a_floor(module: str) -> None:
    """A module no floor names is one nobody placed yet: give it one in TOWERS."""
    assert floor_of(module) is not None, f"{module} has no floor in tests/test_layers.py"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down(module: str) -> None:
    """A module imports from its floor or below, or from the towers beneath its own."""
    here = floor_of(module)
    assert here is not None
    tower, floor = here
    upward = []
    for name, line in GRAPH[module]:
        there = floor_of(name)
        assert there is not None, f"{module}:{line} imports {name}, which has no floor"
        if there[0] == tower:
            if there[1] > floor:
                upward.append(
                    f"line {line}: {name} is on floor {there[1]} "
                    f"({TOWERS[tower][there[1]][0]}), above {module}'s {floor} "
                    f"({TOWERS[tower][floor][0]})"
                )
        elif there[0] not in BENEATH[tower]:
            upward.append(f"line {line}: {name} is in {there[0]}, not beneath {tower}")
    assert not upward, f"{module} imports upward:\n" + "\n".join(upward)


#: What a floor of this name must not import: the pure ones do no I/O, and the TUI's
#: state is tested without a screen.
NOT_ON: dict[str, tuple[str, ...]] = {
    "pure words and rules": ("asyncio", "socket", "ssl", "textual", "redis", "websockets.asyncio"),
    "pure state, no Textual": ("textual",),
}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_pure_floors_do_no_io(module: str) -> None:
    """A module on a pure floor imports neither the event loop, sockets nor a UI."""
    here = floor_of(module)
    assert here is not None
    forbidden = NOT_ON.get(TOWERS[here[0]][here[1]][0], ())
    path = dict(modules())[module]
    found = [
        f"line {node.lineno}: {name}"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        for name in _external_names(node)
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    ]
    assert not found, f"{module} is on a pure floor but imports " + ", ".join(found)


def _external_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level and node.module:
        return [node.module]
    return []


@pytest.mark.parametrize(
    "package", sorted(module for module, path in modules() if path.name == "__init__.py")
)
def test_a_package_offers_nothing(package: str) -> None:
    """A package's ``__init__`` imports none of our modules to pass on, so every name is
    found where it is defined (progress_protocol's defines ``__version__`` itself)."""
    imports = sorted({line for _name, line in GRAPH[package]})
    assert not imports, f"{package} imports at lines {imports}: import from the module itself"


def test_no_circle() -> None:
    """No module reaches itself through its imports, whatever their floors."""
    edges = {
        module: {name for name, _line in found if name in GRAPH and name != module}
        for module, found in GRAPH.items()
    }
    state: dict[str, int] = {}
    path: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for name in sorted(edges[module]):
            if state.get(name) == 1:
                circles.append([*path[path.index(name) :], name])
            elif name not in state:
                visit(name)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not circles, "\n".join(" -> ".join(circle) for circle in circles)


def defined(module: str) -> set[str]:
    """The names ``module`` defines itself, at its top level (not those it imports), and
    its submodules if it is a package."""
    path = ROOT.joinpath(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names = (
        {child.stem for child in path.glob("*.py")}
        | {child.name for child in path.iterdir() if (child / "__init__.py").is_file()}
        if path.is_dir()
        else set()
    )
    body = list(ast.parse(source.read_text(), str(source)).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Try | ast.If):  # try: __version__ = ... except: ...
            body += node.body + node.orelse
            for handler in getattr(node, "handlers", []):
                body += handler.body
    return names


def test_each_name_is_imported_from_its_home() -> None:
    """Whoever imports one of our names (the packages, the tests, docs/) names the module
    that defines it, not a package or a module that only passes it on."""
    wrong = []
    for folder in (*TOWERS, "tests", "docs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom) or node.level:
                    continue  # a relative import stays inside its package: checked below
                module = node.module or ""
                if module.partition(".")[0] not in TOWERS:
                    continue
                home = defined(module)
                wrong += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {alias.name} from {module}"
                    for alias in node.names
                    if alias.name not in home
                ]
    for module, path in modules():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
                home = defined(source)
                wrong += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {alias.name} from {source}"
                    for alias in node.names
                    if alias.name not in home
                ]
    assert not wrong, "\n".join(wrong)


def test_every_module_is_on_the_map() -> None:
    """docs/architecture.md names every module in its package's section (a folder it
    names whole, ``peers/``, covers its modules)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    sections = {tower: text.partition(f"\n## {tower}")[2].partition("\n## ")[0] for tower in TOWERS}
    missing = []
    for module, path in modules():
        if path.name == "__init__.py":
            continue
        tower = module.partition(".")[0]
        relative = path.relative_to(ROOT / tower)
        names = [f"`{relative.as_posix()}`"] + [
            f"`{folder.as_posix()}/`" for folder in relative.parents if folder.name
        ]
        if not any(name in sections[tower] for name in names):
            missing.append(f"{tower}/{relative.as_posix()}")
    assert not missing, "not on the map in docs/architecture.md: " + ", ".join(missing)
