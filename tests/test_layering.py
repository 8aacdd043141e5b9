"""The package's layers: no import cycle between its modules, and no module
importing from a layer above its own (README, "Layout")."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastsinkhorn"
#: Layers from the bottom up; a module may import from its own layer or lower ones.
LAYERS = [
    ("backends",),
    ("geometry", "core"),
    ("algorithms",),
    ("solvers",),
    ("pot", "distributed"),
    ("bregman", "lp", "utils", "unbalanced", "batch", "problems"),
    ("bench", "__main__", "__init__"),
]


def _module_name(path):
    parts = ("fastsinkhorn",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports():
    """Every module's package-internal imports (also those inside functions),
    each resolved to the module it loads."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import x`: x may be a module
                sub = f"{target}.{alias.name}"
                deps.add(sub if sub in modules else target)
        graph[name] = deps - {name}
    return graph


def _layer(module):
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_no_import_cycle():
    graph = _imports()
    # a package's __init__ re-exporting its own modules is not a dependency of theirs
    edges = {m: {d for d in deps if not (m != "fastsinkhorn" and d.startswith(m + ".") and
                                         graph.get(m) is not None)} for m, deps in graph.items()}
    done, path = set(), []

    def visit(m):
        if m in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for d in sorted(edges.get(m, ())):
            visit(d)
        path.pop()
        done.add(m)

    for m in sorted(edges):
        visit(m)


def test_no_module_imports_from_a_layer_above():
    upward = [(m, d) for m, deps in _imports().items() for d in deps
              if d != "fastsinkhorn" and _layer(d) > _layer(m)]
    assert upward == []


def test_the_layers_cover_every_top_level_module():
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.glob("*") if p.name != "__pycache__"}
    assert tops - {"kernels"} <= {name for names in LAYERS for name in names}
