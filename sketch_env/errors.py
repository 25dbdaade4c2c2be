"""The project's own exceptions: every loader and parser failure surfaces as one of these,
naming the file, the item inside it and what is wrong."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SketchEnvError", "SketchError", "DataFormatError", "UnsafePickleError"]


class SketchEnvError(Exception):
    """Base class of the errors this package raises on bad input."""


class ArgumentError(SketchEnvError, ValueError, TypeError):
    """An argument (an env option, an action, a parameter of a function) of the wrong type or out of range.

    Both a ValueError and a TypeError, so code that catches either keeps working."""


class ConfigError(ArgumentError):
    """An option of a run configuration (a command's flags) with a value of the wrong type or out of range."""


class SketchError(SketchEnvError, ValueError):
    """A sketch whose points or strokes cannot be used (NaN/inf coordinates, no points, bad layout)."""


class DataFormatError(SketchEnvError, ValueError):
    """A data file that does not follow its published format.

    The message always names the file, the item inside it (a key, a line, a path element) when there
    is one, and what is wrong.
    """

    def __init__(self, path: str | Path, problem: str, item: str | None = None) -> None:
        self.path = str(path)
        self.item = item
        self.problem = problem
        where = f"{self.path}" + (f" [{item}]" if item is not None else "")
        super().__init__(f"{where}: {problem}")


class UnsafePickleError(DataFormatError):
    """A pickle that asks for something other than NumPy arrays and plain containers."""
