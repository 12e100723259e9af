"""The package's import arrows point down only, and no modules import each other in a cycle.

The layers, lowest first: core <- dynamics <- derivation <- blocks <- models <- interop <- weights
<- training <- cli. Two wings stand beside the chain: ``analysis`` reads core, dynamics,
derivation, blocks and models (never training); ``memory`` reads core, dynamics and derivation.
Every import of every module under ``hopfield/`` counts, read with ``ast`` without running it:
absolute (``hopfield.x``) and relative imports, at module level and inside functions. The package
``hopfield/__init__.py`` (which re-exports and loads the outer ring lazily), ``__main__.py`` and the
old-path finder ``_moved.py`` are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hopfield.derivation.plan import _strongly_connected

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hopfield"

CHAIN = ["core", "dynamics", "derivation", "blocks", "models", "interop", "weights", "training",
         "cli"]
ALLOWED = {layer: set(CHAIN[:i + 1]) for i, layer in enumerate(CHAIN)}
ALLOWED["analysis"] = {"core", "dynamics", "derivation", "blocks", "models", "analysis"}
ALLOWED["memory"] = {"core", "dynamics", "derivation", "memory"}
for _layer in CHAIN[CHAIN.index("blocks"):]:  # the wings are read from above what they read
    ALLOWED[_layer].add("memory")
for _layer in CHAIN[CHAIN.index("interop"):]:
    ALLOWED[_layer].add("analysis")

# modules that belong to a layer without carrying its name
OWNERS = {
    "hopfield._interop_layout": "interop",   # the checkpoint layouts interop.py converts
    "hopfield.integrity": "weights",         # checksums and safe reads, under the one loader
}
EXEMPT = {"hopfield", "hopfield.__main__", "hopfield._moved"}

# upward imports that exist today, each with the issue that removes it: (importer, imported)
KNOWN_UPWARD: set[tuple[str, str]] = set()
# cycles that exist today, each with the issue that removes it
KNOWN_CYCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str | None:
    """The layer of a module of the package, ``None`` for the exempt ones."""
    if module in EXEMPT:
        return None
    if module in OWNERS:
        return OWNERS[module]
    top = module.split(".")[1]
    if top in ALLOWED:
        return top
    raise AssertionError(f"{module} belongs to no layer: name its layer in OWNERS of "
                         f"tests/test_layers.py (or place the file in the layer's folder).")


def _resolve(name: str) -> str:
    """The module a dotted name ``hopfield.x.y...`` imports: its longest prefix that is a module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts)


def imports_of(module: str) -> list[tuple[str, int, str]]:
    """``(imported module, line, the name as written)`` for every import of ``hopfield`` code."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base = ".".join(base_parts[:len(base_parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [(base, alias.name) for alias in node.names]
        else:
            continue
        for base, attr in targets:
            if base != "hopfield" and not base.startswith("hopfield."):
                continue
            written = f"{base}.{attr}" if attr else base
            target = _resolve(written) if attr and f"{base}.{attr}" in MODULES else _resolve(base)
            if target == "hopfield" and not (attr or "").startswith("__"):
                target = f"<root: {written}>"  # the package itself, or an old path
            found.append((target, node.lineno, written))
    return found


def edges() -> list[tuple[str, str, int, str]]:
    return [(m, t, line, written) for m in MODULES if m not in EXEMPT
            for t, line, written in imports_of(m) if t != "hopfield"]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_the_package_root_or_an_old_path():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {written}" for m, t, line, written
           in edges() if t.startswith("<root")]
    assert not bad, ("import the module that defines a name, not the package root or an old "
                     "path (hopfield.train, hopfield.energy, ...):\n" + "\n".join(bad))


def test_arrows_point_down():
    bad = []
    for m, t, line, written in edges():
        if t.startswith("<root") or t in EXEMPT:
            continue
        if layer_of(t) not in ALLOWED[layer_of(m)] and (m, t) not in KNOWN_UPWARD:
            bad.append(f"{MODULES[m].relative_to(ROOT)}:{line}: {layer_of(m)} imports "
                       f"{layer_of(t)} ({written})")
    assert not bad, ("imports that point up (allowed: each layer reads the ones below it, see "
                     "tests/test_layers.py):\n" + "\n".join(bad))


def test_known_upward_imports_still_exist():
    """A known exception that was fixed must leave the list, so it cannot come back unseen."""
    present = {(m, t) for m, t, _, _ in edges()}
    assert not KNOWN_UPWARD - present, f"fixed, remove from KNOWN_UPWARD: {KNOWN_UPWARD - present}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (the planner's Tarjan, which finds the implicit groups of fast layers the same way)."""
    return [c for c in _strongly_connected(list(graph), graph)
            if len(c) > 1 or c[0] in graph[c[0]]]


def _module_cycles() -> list[list[str]]:
    graph = {m: set() for m in MODULES if m not in EXEMPT}
    for m, t, _, _ in edges():
        if t in graph:
            graph[m].add(t)
    return _cycles(graph)


def test_no_import_cycles():
    cycles = [c for c in _module_cycles() if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, "modules that import each other (directly or around a loop):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_known_cycles_still_exist():
    present = {frozenset(c) for c in _module_cycles()}
    fixed = [sorted(c) for c in KNOWN_CYCLES if c not in present]
    assert not fixed, f"fixed, remove from KNOWN_CYCLES: {fixed}"


def test_cycle_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(("importer", "imported", "ok"), [
    ("hopfield.core.graph", "hopfield.dynamics.steps", False),
    ("hopfield.models", "hopfield.interop", False),
    ("hopfield.analysis.record", "hopfield.training.data", False),
    ("hopfield.analysis.record", "hopfield.derivation.block", True),
    ("hopfield.training.trainer", "hopfield.models", True),
    ("hopfield.cli.energy", "hopfield.training.checkpoint", True),
])
def test_layer_rule(importer, imported, ok):
    assert (layer_of(imported) in ALLOWED[layer_of(importer)]) is ok
