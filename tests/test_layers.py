"""The import graph of ``src/aunet``, read with ``ast``: imports point down the layers of README's layout section, no
module imports itself back through others, imports sit at module tops, and only ``aunet.models`` and
``aunet.flops`` know which families exist (no ``isinstance`` on a family's class, no ``== "bpe"``; a results table
keyed by family label, ``"bpe" in rates``, is data, not a branch on a model)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "aunet"

# Lowest first; a module may import its own layer and the layers below it (README.md, "Layout").
LAYERS = [
    {"", "errors", "io", "yaml_loader", "config", "paths", "formatting"},
    {"splitting", "tokenizers"},
    {"presets", "models", "flops", "memory"},
    {"data"},
    {"training"},
    {"evaluation"},
    {"sweeps"},
    {"analysis"},
    {"bench"},
    {"cli", "__main__"},
]
# Where a function-level import of our own modules is allowed, and why (every other one sits at the top).
LAZY = {  # a module, or a package and everything under it ("pkg.*")
    "aunet.cli.*": "command modules import the library in run(), so `aunet --help` does not import torch or lm-eval",
    "aunet.evaluation.evaluate": "aunet.evaluation.lm imports lm-eval, which reads the offline settings set first",
    "aunet.models": "the package loads torch on first use, so a config error is reported before torch is imported",
}
FAMILY_CLASSES = {"AUNetConfig", "BPEConfig", "HNetConfig", "AUNet", "BPETransformer", "HNet"}
FAMILY_NAMES = {"aunet", "bpe", "hnet"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def imports(tree: ast.Module, known: set[str]) -> list[tuple[str, int, bool, bool]]:
    """``(imported module, line, at module level, under TYPE_CHECKING)`` for every import of our own modules;
    ``from aunet.x import y`` counts as an import of ``aunet.x.y`` when that is a module."""
    checking = _type_checking_lines(tree)
    top = {id(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                       for a in node.names]
        else:
            continue
        for target in targets:
            if target == "aunet" or target.startswith("aunet."):
                out.append((target, node.lineno, id(node) in top, node.lineno in checking))
    return out


def layer(module: str) -> int:
    unit = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_layers.py (add its package to LAYERS)")


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, bool, bool]]]:
    trees = modules()
    return {name: imports(tree, set(trees)) for name, tree in trees.items()}


def test_imports_point_down_the_layers(graph):
    wrong = [f"{source}:{line} imports {target}" for source, edges in graph.items()
             for target, line, _, _ in edges if layer(target) > layer(source)]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles(graph):
    edges = {s: {t for t, _, _, checking in e if not checking and t in graph and t != s} for s, e in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def _lazy_allowed(source: str, key: str) -> bool:
    return source == key or (key.endswith(".*") and source.startswith(key[:-1]))


def test_our_imports_sit_at_module_tops(graph):
    lazy = [f"{source}:{line} imports {target} inside a function" for source, edges in graph.items()
            for target, line, top, checking in edges
            if not (top or checking) and not any(_lazy_allowed(source, k) for k in LAZY)]
    assert not lazy, "move these to the top of their module, or add the module to LAZY with a reason:\n" + \
        "\n".join(lazy)


def _family_branches(name: str, tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node.args[1])
                     if isinstance(n, (ast.Name, ast.Attribute))}
            if names & FAMILY_CLASSES:
                found.append(f"{name}:{node.lineno}: isinstance on a family's class")
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            constants = {n.value for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)}
            if constants & FAMILY_NAMES:
                found.append(f"{name}:{node.lineno}: compares with a family's name")
        elif isinstance(node, ast.Attribute) and node.attr == "is_aunet":
            found.append(f"{name}:{node.lineno}: is_aunet")
        elif isinstance(node, ast.ImportFrom) and {a.name for a in node.names} & FAMILY_CLASSES:
            found.append(f"{name}:{node.lineno}: imports a family's class")
    return found


def test_only_models_and_flops_know_the_families():
    found = [hit for name, tree in modules().items()
             if not (name.startswith("aunet.models") or name == "aunet.flops")
             for hit in _family_branches(name, tree)]
    assert not found, "ask aunet.models.family_of(config) instead:\n" + "\n".join(found)


def test_the_checks_catch_what_they_look_for():
    tree = ast.parse("from aunet.models.config import BPEConfig\n"
                     "def f(c):\n"
                     "    from aunet.cli import main\n"
                     "    return isinstance(c, BPEConfig) or c.family == 'bpe'\n")
    assert len(_family_branches("x", tree)) == 3
    known = {"aunet.cli", "aunet.models.config"}
    assert [(t, top) for t, _, top, _ in imports(tree, known)] == [("aunet.models.config", True), ("aunet.cli", False)]
    assert layer("aunet.cli.main") > layer("aunet.models.config")
