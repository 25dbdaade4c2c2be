"""On-the-fly sketch-based image retrieval: sketch data, progressive rendering, datasets, environments.

Importing the package registers the Gymnasium ids (names only); the rendering and sketch names below are
imported when first used, so that ``import sketch_env`` (and ``sketch-env --help``) stays fast.
"""

from importlib import import_module, metadata
from typing import Any

from sketch_env.envs.registration import register_envs
from sketch_env.errors import DataFormatError, SketchEnvError, SketchError, UnsafePickleError

try:
    __version__ = metadata.version("sketch-env")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

register_envs()  # the Gymnasium ids SketchEnv/OnTheFly-*: names only, nothing heavy is imported

#: name -> the module that defines it (imported on first access)
_LAZY = {"RenderConfig": "sketch_env.render", "render_progressive": "sketch_env.render",
         "render_progressive_batch": "sketch_env.render", "render_sketch": "sketch_env.render",
         "PointSchedule": "sketch_env.schedule", "StrokeSchedule": "sketch_env.schedule",
         "make_schedule": "sketch_env.schedule", "Sketch": "sketch_env.sketch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sketch_env' has no attribute {name!r}")


__all__ = [
    "DataFormatError",
    "PointSchedule",
    "RenderConfig",
    "Sketch",
    "SketchEnvError",
    "SketchError",
    "StrokeSchedule",
    "UnsafePickleError",
    "make_schedule",
    "render_progressive",
    "render_progressive_batch",
    "render_sketch",
]
