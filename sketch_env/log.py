"""The package's messages (resuming, waiting for a lock, a run cut short, each evaluation's figures) go
through the standard :mod:`logging` module, on the ``sketch_env`` logger; results (tables) are printed.

A library user sees warnings (Python's default); ``sketch-env`` shows INFO too, ``-q`` only warnings and
errors, ``-v`` also DEBUG (:func:`configure_logging`). tqdm progress bars stay as they are.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "configure_logging"]

logger = logging.getLogger("sketch_env")


class _Stderr(logging.StreamHandler):
    """A handler that writes to the *current* ``sys.stderr`` (one redirected later, as by a test, included)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """Messages of the ``sketch_env`` logger to stderr, one line each: ``verbosity`` -1 (``-q``): warnings and
    errors; 0: and INFO; 1 (``-v``): and DEBUG."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG if verbosity > 0 else logging.WARNING)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
