"""On-the-fly sketch-based image retrieval: sketch data, progressive rendering, datasets, environments."""

from sketch_env.envs.registration import register_envs
from sketch_env.errors import DataFormatError, SketchEnvError, SketchError, UnsafePickleError
from sketch_env.render import RenderConfig, render_progressive, render_progressive_batch, render_sketch
from sketch_env.schedule import PointSchedule, StrokeSchedule, make_schedule
from sketch_env.sketch import Sketch

__version__ = "0.1.0"

register_envs()  # the Gymnasium ids SketchEnv/OnTheFly-*: names only, nothing heavy is imported

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
