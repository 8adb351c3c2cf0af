"""The server's layers as DESIGN.md draws them, checked on the import statements of its
source: no import circle anywhere, domains above the shared modules, and no domain reaching
into another except through the ones listed."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "trackline_server"
DOMAINS = {"tracking", "metrics", "search", "transport", "registry", "artifacts", "projects"}
# Which domain may import which (besides the shared modules below every domain).
ALLOWED = {
    "tracking": {"metrics", "search", "transport"},
    "metrics": {"transport"},
    "registry": {"tracking", "search", "transport"},
    "artifacts": {"tracking", "transport"},
    "projects": {"tracking", "transport"},
    "search": set(),
    "transport": set(),
}
# The process wiring and the command line sit above everything.
TOP = {"app", "__main__", "config", "migrate"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["trackline_server", *parts])


def imports() -> dict[str, set[str]]:
    """Module -> the trackline_server modules it imports (at any place in the file)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in modules else base)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "trackline_server"


def test_no_import_circle() -> None:
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            # A package importing its own modules from __init__ is not a circle.
            if len(component) > 1 and not all(
                c == component[0].rpartition(".")[0] or c.startswith(component[0])
                for c in component
            ):
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_shared_modules_import_no_domain() -> None:
    for module, targets in imports().items():
        here = layer(module)
        if here in DOMAINS or here in TOP:
            continue
        reached = {layer(t) for t in targets} & DOMAINS
        # The shared modules may use the edge's helpers for refusing calls (auth, budget).
        assert reached <= {"transport"}, f"{module} imports {reached}"


def test_domains_import_only_what_they_may() -> None:
    for module, targets in imports().items():
        here = layer(module)
        if here not in DOMAINS:
            continue
        reached = {layer(t) for t in targets} & DOMAINS - {here}
        assert reached <= ALLOWED[here], f"{module} imports {reached - ALLOWED[here]}"
