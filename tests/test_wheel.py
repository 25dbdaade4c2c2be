"""The package installs like a package: a wheel built from the tree carries the package data (the
hyper-parameter files, the shipped checkpoints and their cards) and the ``sketch-env`` entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tree (setuptools writes build/ and egg-info beside the sources)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("sketch_env", "embeddings", "agents"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-w", str(out)], capture_output=True, text=True, timeout=600, cwd=src)
    assert res.returncode == 0, res.stderr[-2000:]
    (path,) = out.glob("sketch_env-*.whl")
    return path


def test_the_wheel_carries_the_package_data_and_the_entry_point(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [p.relative_to(ROOT).as_posix() for pattern in (
        "agents/hyperparams/*.yml", "agents/pretrained/*.zip", "agents/pretrained/*.json",
        "embeddings/pretrained/*.pt", "embeddings/pretrained/*.json", "embeddings/pretrained/README.md",
        "agents/demo/static/*")
        for p in ROOT.glob(pattern)]
    assert any(n.endswith(".pt") for n in expected) and any(n.endswith(".yml") for n in expected)
    assert "agents/demo/static/index.html" in expected
    missing = [n for n in expected if n not in names]
    assert not missing, f"not in the wheel: {missing}"
    for package in ("sketch_env/__init__.py", "embeddings/__init__.py", "agents/__init__.py"):
        assert package in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]  # only the three packages
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "sketch-env = agents.cli:main" in text
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    assert "Requires-Dist: platformdirs" in zipfile.ZipFile(wheel).read(meta).decode()
