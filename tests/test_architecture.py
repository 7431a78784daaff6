"""The package's import graph: no circles, and no module importing from a layer above its own.

Layers, bottom-up (a module may import from its own layer and the ones below):
1. ground: errors, files, caches' root, hashing, image and video files, the processes of a launch;
2. models and poses: the networks, the pipeline and model folders' settings; pose detection and its keypoint types;
   the metrics;
3. what joins them: framing, the frame cache, the model store, the driving input, synthetic data;
4. the work: retarget, training, evaluation, the demo, the web app;
5. the command line.
Every function-level import counts too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "magicpose_cli"
LAYERS = [
    ["magicpose_cli", "errors", "files", "cache", "hashing", "images", "video", "encode", "distributed", "choices", "native_output", "threads"],
    ["models", "pose", "metrics"],
    ["framing", "frame_cache", "model_store", "motion_store", "plugin_store", "driving", "synthetic"],
    ["retarget", "training", "evaluation", "scoring", "evaluation_run", "demo", "ui", "comfyui"],
    ["cli", "__main__"],
]


def module_name(path: Path) -> str:
    parts = ["magicpose_cli", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(module: str) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file (``from x import y`` counts
    ``x.y`` when that is a module, else ``x``)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


def layer_of(module: str) -> int:
    """The layer of a module: that of its first part below the package (the package itself is ground)."""
    first = module.split(".")[1] if "." in module else "magicpose_cli"
    for index, names in enumerate(LAYERS):
        if first in names:
            return index
    raise AssertionError(f"{module} is in no layer: add {first!r} to LAYERS in {Path(__file__).name}")


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above_its_own(module):
    upward = sorted(name for name in GRAPH[module] if layer_of(name) > layer_of(module))
    assert not upward, f"{module} (layer {layer_of(module) + 1}) imports from higher layers: {upward}"


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                return path[path.index(name) :] + [name]
            if name not in state and (circle := visit(name, [*path, name])):
                return circle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


def test_the_import_graph_has_no_circle():
    assert find_circle(GRAPH) is None, " -> ".join(find_circle(GRAPH))


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_the_layer_check_sees_the_imports_it_must_see():
    """The graph reads both import forms and function-level imports (a test of the test)."""
    assert "magicpose_cli.models.settings" in GRAPH["magicpose_cli.model_store"]
    assert "magicpose_cli.retarget.options" in GRAPH["magicpose_cli.retarget.run"]
    assert "magicpose_cli.driving" in GRAPH["magicpose_cli.training.data"]  # imported inside a function


MAX_MODULE_LINES = 400
MAX_FUNCTION_BODY_LINES = 60


@pytest.mark.parametrize("module", sorted(MODULES))
def test_rooms_stay_small(module):
    """No module over 400 lines, no function body over 60 (from its docstring to its last line: a
    Typer command's signature is its table of options, not logic)."""
    source = MODULES[module].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{module} has {len(source.splitlines())} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.end_lineno - node.body[0].lineno + 1
            assert body <= MAX_FUNCTION_BODY_LINES, f"{module}.{node.name} has a body of {body} lines"
