"""The documentation cannot rot: every ```python block of the README and of the docs pages runs as written
(each page's blocks in order, in one fresh Python process, in an empty folder), and the docs site builds
with warnings as errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_code_block_runs(page, tmp_path, env_cache):
    script = "\n\n".join(f"# --- block {i + 1}\n{code}" for i, code in enumerate(_blocks(page)))
    (tmp_path / "page.py").write_text(script)
    res = subprocess.run([sys.executable, str(tmp_path / "page.py")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, f"{page.name}:\n{res.stderr[-3000:]}"


def test_the_docs_site_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("furo")
    res = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"),
                          str(tmp_path / "html")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "html" / "environments.html").exists() and (tmp_path / "html" / "cli.html").exists()
