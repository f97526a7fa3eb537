"""The package's shape: imports run one way (core ← adapters ← tasks ← weights ← data/training ← cli).

Every import of ``src/perceiverio`` is parsed, at module level and inside functions, and resolved to the
subpackage it names; an import of a later layer from an earlier one, or a cycle between subpackages, fails.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import perceiverio

PACKAGE = Path(perceiverio.__file__).parent
# the layer of each first-level name under perceiverio (a subpackage or a top-level module)
# ("perceiverio": names taken from the facade ``perceiverio/__init__.py``, which imports everything)
LAYERS = {
    "tokenizer": 0,
    "files": 0,
    "core": 0,
    "adapters": 1,
    "tasks": 2,
    "weights": 3,
    "data": 4,
    "training": 4,
    "visual": 4,
    "cli": 5,
    "perceiverio": 6,
}


def _unit(module: str) -> str | None:
    """``perceiverio.tasks.language`` -> ``tasks``; ``perceiverio.SomeName`` -> ``perceiverio`` (the facade);
    ``perceiverio`` itself (``import perceiverio``, e.g. for ``__version__``) -> None."""
    parts = module.split(".")
    if parts[0] != "perceiverio" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in LAYERS or parts[1] == "__init__" or not parts[1][:1].isupper() else "perceiverio"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every perceiverio import in ``path``, wherever it stands in the file."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("perceiverio")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("perceiverio"):
                names = [f"{target}.{a.name}" for a in node.names] if target == "perceiverio" else [target]
                found += [(node.lineno, n) for n in names]
    return found


def _edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import across first-level units."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _unit(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if source is None or source == "__init__":
            continue
        for line, target in _imports(path):
            unit = _unit(target)
            if unit is not None and unit != source:
                edges.append((source, unit, f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"))
    return edges


def test_every_unit_has_a_layer():
    units = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")
    }
    assert units <= set(LAYERS), f"give these a layer in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_run_one_way():
    against = [where for source, target, where in _edges() if LAYERS.get(target, 0) > LAYERS.get(source, 0)]
    assert not against, "imports against core ← adapters ← tasks ← weights ← data/training ← cli:\n" + "\n".join(
        against
    )


def test_no_cycle_between_units():
    graph = defaultdict(set)
    for source, target, _ in _edges():
        graph[source].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(u for u in list(graph) if reaches(u, u, {u}))
    assert not cycles, f"import cycles through {cycles}"


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    """A wrong implementation that only read module-level imports would miss lazy ones."""
    fake = tmp_path / "perceiverio" / "core"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from ..weights import registry\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "perceiverio")
    assert _imports(fake / "x.py") == [(2, "perceiverio.weights")]
