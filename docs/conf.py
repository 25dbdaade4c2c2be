"""Sphinx configuration of the sketch-env documentation (furo theme, MyST markdown, autodoc from the
docstrings, the CLI from its argparse parser). Build: ``python -m sphinx -W -b html docs docs/_build/html``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "sketch-env"
author = "the sketch-env developers"
copyright = "2026, the sketch-env developers"
try:
    from importlib.metadata import version as _version

    release = _version("sketch-env")
except Exception:  # a tree that is not installed
    release = "0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinxarg.ext"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "sketch-env"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# docstrings are written for readers of the code: cross-references that name private or third-party
# objects are not all resolvable, and a missing target is not an error of the documentation
nitpicky = False
suppress_warnings = ["myst.header", "myst.xref_missing", "ref.python", "docutils", "autodoc.import_object"]


def _benchmark_pages(app) -> None:
    """One page per benchmark report (``benchmarks/results/NAME/README.md``), included where it lies so its
    plots resolve, and the index of them."""
    out = Path(app.srcdir) / "results"
    out.mkdir(exist_ok=True)
    names = sorted(p.parent.name for p in (ROOT / "benchmarks" / "results").glob("*/README.md"))
    for name in names:
        page = out / f"{name}.md"
        text = (f"```{{include}} ../../benchmarks/results/{name}/README.md\n"
                ":relative-images:\n:relative-docs: ../\n```\n")
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
    index = ["# Benchmark reports", "",
             "Each report lives beside its data in `benchmarks/results/NAME/` and is written by the script "
             "`benchmarks/NAME.py` (the command is the first line of each).", "",
             "```{toctree}", ":maxdepth: 1", "", *[f"results/{n}" for n in names], "```", ""]
    (Path(app.srcdir) / "benchmarks.md").write_text("\n".join(index))


def setup(app):
    app.connect("builder-inited", _benchmark_pages)
