"""``sketch-env demo``: retrieve as you draw, in a browser. :mod:`agents.demo.core` ranks a drawn sketch's
strokes (no web dependency); :mod:`agents.demo.app` serves the page and its JSON API (the ``demo`` extra:
starlette, uvicorn)."""

from agents.demo.core import DEFAULT_MODEL, DemoInputError, DemoLimits, RetrievalDemo, parse_strokes

__all__ = ["DEFAULT_MODEL", "DemoInputError", "DemoLimits", "RetrievalDemo", "parse_strokes"]
