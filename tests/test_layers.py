"""The package's dependency rule: tools -> driver -> stages -> store -> core -> (config, errors, parallel, log).

Every ``hpc_itc`` import inside the package (module level or inside a function) is read from the
source; a module may import only its own layer or the layers below, the modules form no import
circle, and the core imports neither mpi4py nor h5py and raises no InputError (it raises InvalidInput).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hpc_itc"
# lowest first; a module's layer is its first folder under hpc_itc/, or its own name at the top
LAYERS = {"base": 0, "core": 1, "store": 2, "stages": 3, "driver": 4, "tools": 5, "cli": 6, "__main__": 7}
BASE = {"__init__", "config", "errors", "parallel", "log"}
# (tomllib is allowed: core/phonons.py reads its vendored reference data; the input is config's alone)
FORBIDDEN_IN_CORE = ("mpi4py", "h5py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] in BASE:
        return "base"
    return parts[0]


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the file; ``from X import y`` counts y when X.y is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.append((base, node.lineno))
            for a in node.names:
                candidate = f"{base}.{a.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).is_file() or (PACKAGE.parent / candidate.replace(".", "/")).is_dir():
                    out.append((candidate, node.lineno))
    return out


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        graph[mod] = {m for m, _ in imports_of(path) if m.startswith("hpc_itc.") and m != mod}
    return graph


def test_every_module_has_a_layer():
    for mod in package_graph():
        assert layer_of(mod) in LAYERS, f"{mod}: not in a layer folder ({', '.join(LAYERS)})"


def test_no_upward_imports():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        mine = LAYERS[layer_of(mod)]
        for target, line in imports_of(path):
            if target.startswith("hpc_itc.") and target != "hpc_itc" and LAYERS[layer_of(target)] > mine:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {layer_of(mod)} imports {target} ({layer_of(target)})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_core_is_pure_numerics():
    bad = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for target, line in imports_of(path):
            if target.split(".")[0] in FORBIDDEN_IN_CORE:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}")
            if target == "hpc_itc.errors":
                text = path.read_text()
                if "InputError" in text:
                    bad.append(f"{path.relative_to(PACKAGE.parent)}: raises InputError (the core raises InvalidInput)")
    assert not bad, "\n".join(sorted(set(bad)))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circles():
    graph = package_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checks_can_fail():
    """The checker sees a circle and an upward import where there is one."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert LAYERS[layer_of("hpc_itc.tools.plot")] > LAYERS[layer_of("hpc_itc.store.transport")] > LAYERS[layer_of("hpc_itc.core.ldos")]
    assert layer_of("hpc_itc.config") == "base"
