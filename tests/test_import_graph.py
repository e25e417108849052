"""The import graph of the library: grpo's layers, and the packages beside it (recipes, rewards, embedded_models).

Run: ``pytest tests/test_import_graph.py``.

- grpo/ imports only downward through its layers (:data:`LAYERS`), with no cycle;
- recipes/ is a layer above grpo: it imports only :data:`RECIPE_SURFACE` from grpo, and grpo imports recipes
  only inside a function of the CLI (the ``grpo recipe`` dispatch), never at module level;
- rewards/ imports nothing from grpo or recipes; embedded_models/ imports none of the other three;
- the four packages together have no cycle.

Every ``import`` / ``from ... import`` counts, at module level or inside a function: a function-level
import hides a cycle from Python's loader but not from the reader, and the planned move of grpo/ into
layer sub-packages needs the graph to be a DAG. Only the source is parsed (``ast``), nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_names(package: str) -> dict[str, Path]:
    """Every module of ``package`` (a directory under the repository root) by dotted name -> file."""
    names = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_names(path: Path, module: str) -> set[str]:
    """Absolute dotted names ``module`` imports anywhere in its source (relative imports resolved).

    ``from a.b import c`` gives both ``a.b`` and ``a.b.c`` (``c`` may be a submodule); the caller
    keeps the names that are modules.
    """
    return _names_in(ast.parse(path.read_text(), filename=str(path)), path, module)


def module_level_names(path: Path, module: str) -> set[str]:
    """Like :func:`imported_names`, but only the imports that run when the module is imported (not those inside a
    function or lambda body)."""
    names, todo = set(), list(ast.parse(path.read_text(), filename=str(path)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            tree = ast.Module(body=[node], type_ignores=[])
            names |= _names_in(tree, path, module)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return names


def _names_in(tree, path: Path, module: str) -> set[str]:
    """The dotted names the import statements of ``tree`` bring in (relative ones resolved against ``module``)."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + is_package]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(*packages: str, level=None) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (itself excluded), every import or (``level``:
    :func:`module_level_names`) only those that run at import time."""
    modules = {name: path for package in packages for name, path in module_names(package).items()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in (level or imported_names)(path, name):
            # `import grpo.a.b` loads grpo.a.b; keep the longest prefix that is one of our modules
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic (iterative depth-first search)."""
    state = {}  # absent: unvisited, 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, iterators = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            child = next(iterators[-1], None)
            if child is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                iterators.append(iter(sorted(graph.get(child, ()))))
    return None


def test_find_cycle_reports_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_relative_imports_resolve(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from . import sibling\nfrom .other import thing\nfrom ..up import x\n")
    assert {"pkg.sub.sibling", "pkg.sub.other", "pkg.up"} <= imported_names(source, "pkg.sub.mod")
    init = tmp_path / "__init__.py"
    init.write_text("from .child import y\n")
    assert "pkg.sub.child" in imported_names(init, "pkg.sub")


def test_grpo_modules_import_each_other_without_cycles():
    graph = import_graph("grpo")
    # the walk sees top-level imports
    assert {"grpo.generation.inference_copy", "grpo.generation.rollout"} <= graph["grpo.generation.vllm_engine"]
    assert "grpo.common.placement" in graph["grpo.modeling.models"]  # ... and function-level ones
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among grpo modules: " + " -> ".join(cycle)


# What recipes/ may import from grpo: a small public surface (errors, console, checkpoint writing, config parsing and
# help, data loading, model loading, tracking, the model-card layout). Anything else is grpo's own business.
RECIPE_SURFACE = frozenset({
    "grpo.common.errors", "grpo.common.console", "grpo.common.checkpoint_io", "grpo.config.parser", "grpo.config.help",
    "grpo.data.loaders", "grpo.modeling.models", "grpo.runs.tracking", "grpo.runs.model_card",
})
PACKAGES = ("grpo", "recipes", "rewards", "embedded_models")


def _top(module: str) -> str:
    return module.split(".")[0]


def test_recipes_import_only_the_public_surface_of_grpo():
    graph = import_graph(*PACKAGES)
    assert "grpo.common.errors" in graph["recipes"]  # the walk sees recipes' imports of grpo
    used = {t for source, targets in graph.items() if _top(source) == "recipes" for t in targets if _top(t) == "grpo"}
    assert used - RECIPE_SURFACE == set(), "recipes import grpo modules outside RECIPE_SURFACE"


def test_grpo_imports_recipes_only_inside_cli_functions():
    at_import = import_graph(*PACKAGES, level=module_level_names)
    assert {s for s, t in at_import.items() if _top(s) == "grpo" and any(_top(x) == "recipes" for x in t)} == set()
    anywhere = import_graph(*PACKAGES)
    assert "recipes" in anywhere["grpo.cli.commands"]  # the dispatch of `grpo recipe`, inside its function
    outside_cli = sorted(s for s, t in anywhere.items() if _top(s) == "grpo" and not s.startswith("grpo.cli.")
                         and any(_top(x) == "recipes" for x in t))
    assert outside_cli == []


def test_module_level_names_skip_function_bodies(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("import a\ntry:\n    import b\nexcept ImportError:\n    pass\ndef f():\n    import c\n")
    assert module_level_names(source, "mod") == {"a", "b"}
    assert imported_names(source, "mod") == {"a", "b", "c"}


def test_side_packages_stay_independent():
    graph = import_graph(*PACKAGES)
    allowed = {"rewards": {"rewards", "embedded_models"}, "embedded_models": {"embedded_models"}}
    bad = sorted(f"{s} -> {t}" for s, targets in graph.items() if _top(s) in allowed
                 for t in targets if _top(t) not in allowed[_top(s)])
    assert bad == []


def test_the_four_packages_have_no_cycle():
    cycle = find_cycle(import_graph(*PACKAGES))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_rewards_imports_nothing_from_grpo():
    """STYLE 2.1: ``rewards/`` imports neither torch nor ``grpo`` (the import test in test_rewards_model.py checks
    what loads at run time; this one checks the source, function-level imports included)."""
    offenders = {}
    for name, path in module_names("rewards").items():
        bad = sorted(n for n in imported_names(path, name) if n == "grpo" or n.startswith("grpo."))
        if bad:
            offenders[name] = bad
    assert offenders == {}


# The layers of grpo/, lowest first: a module may import its own layer and the ones below, never one above
# (README "Layout"). grpo/__init__.py sits outside the layers and imports nothing.
LAYERS = ["common", "maths", "modeling", "data", "config", "generation", "evaluation", "runs", "training", "cli"]


def layer_of(module: str) -> str | None:
    """``grpo.training.native`` -> ``training``; None for ``grpo`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """The edges of ``graph`` (module -> imported modules) that go from a layer to a higher one."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(f"{source} -> {target}" for source, targets in graph.items() if layer_of(source)
                  for target in targets if layer_of(target) and rank[layer_of(target)] > rank[layer_of(source)])


def test_every_grpo_module_sits_in_a_layer():
    stray = sorted(name for name in module_names("grpo") if name != "grpo" and layer_of(name) not in LAYERS)
    assert stray == [], f"modules outside the layer packages {LAYERS}: {stray}"
    assert import_graph("grpo")["grpo"] == set(), "grpo/__init__.py imports nothing: `import grpo` stays cheap"


def test_upward_imports_are_found():
    graph = {"grpo.common.errors": set(), "grpo.cli.commands": {"grpo.common.errors", "grpo.training.native"},
             "grpo.training.native": {"grpo.cli.config"}, "grpo.cli.config": set()}
    assert upward_imports(graph) == ["grpo.training.native -> grpo.cli.config"]


def test_grpo_imports_only_go_down_the_layers():
    assert upward_imports(import_graph("grpo")) == []
