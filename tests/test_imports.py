"""The package's import graph: no cycle, a small closure behind train.py, and the library below
the command line (it does not know the config).

Parsed from the source (no import runs), module level only: an import inside a function (done
lazily, on purpose) is not an edge; a package's `__init__` is, since importing a module runs it.
"""

import ast
import subprocess
import sys
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


def closure(graph: dict[str, set[str]], names: set[str]) -> set[str]:
    """`names` and every ae_lab module they import, directly or not."""
    todo, seen = set(names), set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= graph[name] - seen
    return seen


def test_train_py_imports_at_most_20_ae_lab_modules():
    """What `python train.py` loads of the package stays small: a reader can follow it."""
    graph = import_graph()
    script = ast.parse((PACKAGE.parent / "train.py").read_text())
    # main() imports the training code when it runs (`--help` answers before Lightning loads).
    main = next(n for n in script.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    script.body += main.body
    loaded = closure(graph, imported(script, "train", False, set(graph)))
    assert {"ae_lab.cli", "ae_lab.training", "ae_lab.checks", "ae_lab.module"} <= loaded
    assert len(loaded) <= 20, sorted(loaded)


LIBRARY = [
    "ae_lab.models",
    "ae_lab.losses",
    "ae_lab.scoring",
    "ae_lab.module",
    "ae_lab.batch",
    "ae_lab.callbacks",
    "ae_lab.logger",
    "ae_lab.data.datamodule",
]


def test_the_library_does_not_import_the_command_line():
    """Networks, losses, scoring, the module, the data and the media raise about their own
    arguments; only the command line (cli, training, checks) knows the config keys."""
    graph = import_graph()
    for name in LIBRARY:
        below = closure(graph, {name})
        assert not below & {"ae_lab.cli", "ae_lab.training", "ae_lab.checks"}, (name, below)


def test_the_analysis_and_the_notebook_helpers_keep_to_their_side():
    graph = import_graph()
    analysis = {m for m in graph if m.startswith("ae_lab.analysis")}
    assert not any(m.startswith("ae_lab.notebook") for m in closure(graph, analysis))
    # Knowing whether W&B is offline needs neither Lightning nor the media callback.
    assert "ae_lab.callbacks" not in closure(graph, {"ae_lab.analysis.runs"})


def test_reading_runs_imports_neither_lightning_nor_torch():
    code = (
        "import sys, ae_lab.analysis.runs, ae_lab.wandb_mode; "
        "print(sorted(m for m in ('lightning', 'torch', 'sklearn') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
