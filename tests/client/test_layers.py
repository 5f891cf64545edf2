"""progress_client's imports flow one way, and each name is imported from its home."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The modules in the order they may import each other: each only from those before
#: it, never from its own rank (failures and events share one, apart).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("wording",),
    ("reconnect",),
    ("failover",),
    ("failures", "events"),
    ("connection",),
    ("client",),
    ("options",),
    ("ctl",),
)
RANK = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}


def imported(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of every ``from ... import`` in ``path``, anywhere in it (an
    import under ``if TYPE_CHECKING:`` or in a function counts)."""
    package = path.relative_to(ROOT).parent.parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, module, [alias.name for alias in node.names]


def defined(module: str) -> set[str]:
    """The names a module defines itself (not those it imports)."""
    tree = ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_module_has_its_layer() -> None:
    modules = {path.stem for path in (ROOT / "progress_client").glob("*.py")}
    assert modules - {"__init__"} == set(RANK)


def test_imports_flow_one_way() -> None:
    """No circle and no upward import inside progress_client: wording, reconnect and
    failover (pure), then failures and events, connection, client, options, ctl."""
    wrong = []
    for path in sorted((ROOT / "progress_client").glob("*.py")):
        for line, module, _ in imported(path):
            if not module.startswith("progress_client"):
                continue
            other = module.partition(".")[2]
            if path.stem == "__init__" or not other or RANK[other] >= RANK[path.stem]:
                wrong.append(f"{path.name}:{line} imports {module}")
    assert wrong == []


def test_each_name_is_imported_from_its_home() -> None:
    """No re-export hides where a name lives: whoever imports from progress_client
    (the TUI, the bench, the tests, docs/) names the module that defines it."""
    wrong = []
    for folder in ("progress_client", "progress_tui", "progress_bench", "tests", "docs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module, names in imported(path):
                if module == "progress_client":
                    wrong += [f"{path}:{line} {name} from the package" for name in names]
                elif module.startswith("progress_client."):
                    home = defined(module)
                    wrong += [
                        f"{path}:{line} {name} from {module}" for name in names if name not in home
                    ]
    assert wrong == []
