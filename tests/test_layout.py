"""The package layout (ARCHITECTURE.md): imports run one way, ``sketch_env`` <- ``embeddings`` <- ``agents`` <-
``benchmarks``, and no module imports another module's private (``_name``) names. Every ``import`` counts,
at module level and inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"sketch_env": 0, "embeddings": 1, "agents": 2, "benchmarks": 3}


def _imports(path: Path):
    """``(line, imported module, imported name or None)`` of every absolute import in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, node.module, alias.name


def _modules():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


def test_every_layer_is_scanned():
    found = {package for package, _ in _modules()}
    assert found == set(LAYERS)
    assert sum(1 for _ in _modules()) > 60


@pytest.mark.parametrize("package", list(LAYERS))
def test_no_import_runs_back_up(package):
    upward = []
    for owner, path in _modules():
        if owner != package:
            continue
        for line, module, name in _imports(path):
            top = module.split(".")[0]
            if top in LAYERS and LAYERS[top] > LAYERS[owner]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}{'.' + name if name else ''}")
    assert not upward, "imports that run back up a layer:\n" + "\n".join(upward)


def test_no_private_name_is_imported_from_another_module():
    private = []
    for _, path in _modules():
        module_of_file = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, module, name in _imports(path):
            leaf = module.split(".")[-1]
            if module.split(".")[0] not in LAYERS:
                continue
            dunder = bool(name) and name.startswith("__") and name.endswith("__")  # __version__ is public
            if (name and name.startswith("_") and not dunder and module != module_of_file) or (
                    leaf.startswith("_") and not leaf.startswith("__")):
                private.append(f"{path.relative_to(ROOT)}:{line} from {module} import {name}")
    assert not private, "private names imported across modules:\n" + "\n".join(private)


def test_the_checker_sees_a_violation(tmp_path):
    """The scan itself: an upward import inside a function and a private import are both found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agents.train import _thing\n    import benchmarks.common\n")
    found = list(_imports(bad))
    assert (2, "agents.train", "_thing") in found and (3, "benchmarks.common", None) in found
