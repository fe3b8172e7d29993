"""The package's shape: one schema module every stage imports, no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "inspector"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """inspector modules imported at module level (imports inside functions are deliberate: lazy)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("inspector"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                out.add(candidate if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                        or (PACKAGE.parent / candidate.replace(".", "/")).is_dir() else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("inspector"))
    return out


GRAPH = {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_schema_is_a_leaf():
    assert GRAPH["inspector.schema"] == set()


def test_no_import_circles():
    def visit(module: str, path: tuple[str, ...]) -> None:
        for target in sorted(GRAPH.get(module, ())):
            if target in path:
                raise AssertionError(" -> ".join(path[path.index(target):] + (target,)))
            if target not in done:
                visit(target, path + (target,))
        done.add(module)

    done: set[str] = set()
    for module in sorted(GRAPH):
        visit(module, (module,))
