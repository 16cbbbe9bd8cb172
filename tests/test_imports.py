"""The package's import graph has no cycle: each module reads only from modules below it.

Parsed from the source (no import runs), module level only: an import inside a function (done
lazily, on purpose) is not an edge; a package's `__init__` is, since importing a module runs it.
"""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ae_lab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ae_lab modules that `name` imports at module level (`from pkg import mod` included)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    found = {m for m in found if m in modules}
    # Importing `a.b.c` first runs `a/__init__` and `a/b/__init__`; a module's own packages are
    # already running when it is imported, so they are not edges.
    own = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    parents = {m.rsplit(".", i)[0] for m in found for i in range(1, m.count(".") + 1)}
    return (found | parents) - own - {name}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: imported(ast.parse(path.read_text()), name, path.name == "__init__.py", set(paths))
        for name, path in paths.items()
    }


def test_no_import_cycle_among_ae_lab_modules():
    graph = import_graph()
    assert len(graph) > 15 and graph["ae_lab.training"]  # the parse found the package
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_train_py_imports_at_most_20_ae_lab_modules():
    """What `python train.py` loads of the package stays small (issue 17): a reader can follow it."""
    graph = import_graph()
    script = ast.parse((PACKAGE.parent / "train.py").read_text())
    todo = imported(script, "train", False, set(graph))
    closure: set[str] = set()
    while todo:
        name = todo.pop()
        closure.add(name)
        todo |= graph[name] - closure
    assert "ae_lab.training" in closure and len(closure) <= 20, sorted(closure)
