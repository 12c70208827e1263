"""The modules of tfdip import each other one way only: the graph of their imports has no cycle.

Read from the sources with ``ast`` (every import statement, at module level or inside functions):
``import tfdip.a.b`` and ``from tfdip.a import b`` point at the module ``tfdip.a.b`` when it exists,
else at ``tfdip.a``; relative imports are resolved the same way. The implicit import of a parent
package by its submodules is not an edge (a package's ``__init__`` may gather its submodules).
"""
import ast
import pathlib

import tfdip

PACKAGE = pathlib.Path(tfdip.__file__).resolve().parent


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """``{module: {modules of tfdip it imports}}`` for every module of the package."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph):
    """One cycle as a list of modules ``[a, b, ..., a]``, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_reader_finds_edges_and_cycles():
    graph = import_graph()
    assert "tfdip.kernels.algebra" in graph["tfdip.kernels.network"]
    assert "tfdip.nets.skip_net" in graph["tfdip.nets.spec"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_tfdip_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)
