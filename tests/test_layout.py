"""The shape of the package: no module imports one that imports it back (at any depth, inside a
function or not), and the library never imports Prefect (flows and tasks wrap it)."""

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "mlproject"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of mlproject and the modules (of any package) it imports anywhere in its code."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "by_kind" not in p.parts}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
        graph[name] = found
    return graph


def test_no_module_of_mlproject_imports_itself_back():
    graph = imports()
    own = {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}
    cycles = []
    for start in own:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in own[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles: " + "; ".join(sorted(cycles)[:5])


def test_the_library_never_imports_prefect():
    users = sorted(name for name, found in imports().items() if any(m.split(".")[0] == "prefect" for m in found))
    assert not users, f"{users} import prefect; only flows/ and tasks/ may"
